//! The pool of upstream actors, and the admission control in front of it.
//!
//! Actor mailboxes do not bound their queues, so the pool
//! counts calls in progress and refuses at once, with 503 and `Retry-After`,
//! past `MAX_IN_FLIGHT`: a client learns to back off in microseconds instead of
//! waiting behind a queue that only grows.

use super::actor::{Call, Live, Upload, UpstreamActor};
use super::client::UpstreamConnect;
use super::live::{LiveCall, LiveOutcome};
use super::pipeline::{CallOutcome, UpstreamCall, UpstreamContext};
use super::upload::{UploadCall, UploadReply};
use crate::errors::{ApiError, ErrorCode};
use actix::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::oneshot;

/// `Retry-After` when the pool is full: load sheds in about a second.
const FULL_RETRY_AFTER_SECS: u64 = 1;

#[derive(Clone)]
pub struct UpstreamPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    actors: Vec<Addr<UpstreamActor>>,
    arbiters: Vec<ArbiterHandle>,
    next: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: usize,
    context: Arc<UpstreamContext>,
    connect: UpstreamConnect,
}

/// One admitted call; releases its place when dropped, however the call ends.
/// A stream keeps its permit until the stream ends.
pub struct Permit(Arc<PoolInner>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
impl Permit {
    /// A place in a pool of no actors, for tests that run the pipeline themselves.
    pub(crate) fn for_tests(context: Arc<UpstreamContext>) -> Permit {
        Permit(Arc::new(PoolInner {
            actors: Vec::new(),
            arbiters: Vec::new(),
            next: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(1),
            max_in_flight: 1,
            context,
            connect: super::client::UpstreamConnect::new(std::time::Duration::from_secs(1), &[]),
        }))
    }
}

impl UpstreamPool {
    /// Starts `actors` dedicated upstream actors, each on an arbiter (thread)
    /// of its own, used in turn. With none, each HTTP worker starts its own
    /// actor on its own thread ([`UpstreamPool::for_this_worker`]), the
    /// default: it saves two thread hops per call (docs/operations.md#benchmarks).
    pub fn start(
        context: Arc<UpstreamContext>,
        actors: usize,
        max_in_flight: usize,
        connect: UpstreamConnect,
    ) -> UpstreamPool {
        let mut addrs = Vec::with_capacity(actors);
        let mut arbiters = Vec::with_capacity(actors);
        for _ in 0..actors {
            let arbiter = Arbiter::new().handle();
            let ctx = context.clone();
            let connect = connect.clone();
            addrs.push(UpstreamActor::start_in_arbiter(&arbiter, move |_| {
                UpstreamActor::new(ctx, &connect)
            }));
            arbiters.push(arbiter);
        }
        UpstreamPool {
            inner: Arc::new(PoolInner {
                actors: addrs,
                arbiters,
                next: AtomicUsize::new(0),
                in_flight: AtomicUsize::new(0),
                max_in_flight,
                context,
                connect,
            }),
        }
    }

    pub fn context(&self) -> &Arc<UpstreamContext> {
        &self.inner.context
    }

    /// The calling HTTP worker's way to Gemini (call from the App factory):
    /// the dedicated actors when there are some, else an actor started now on
    /// this worker's thread, so a call never crosses threads — which on a busy
    /// core saves the context switches a hop to another thread costs.
    pub fn for_this_worker(&self) -> Upstream {
        let local =
            self.inner.actors.is_empty().then(|| {
                UpstreamActor::new(self.inner.context.clone(), &self.inner.connect).start()
            });
        Upstream {
            pool: self.inner.clone(),
            local,
        }
    }

    /// Stops the actors' threads (after the HTTP server has drained).
    pub fn stop(&self) {
        for arbiter in &self.inner.arbiters {
            arbiter.stop();
        }
    }
}

/// One HTTP worker's handle on the pool: its own actor, or the dedicated ones.
pub struct Upstream {
    pool: Arc<PoolInner>,
    local: Option<Addr<UpstreamActor>>,
}

impl Upstream {
    pub fn context(&self) -> &UpstreamContext {
        &self.pool.context
    }

    /// A place in the pool, or the 503 that says the pool is full.
    fn admit(&self) -> Result<Permit, ApiError> {
        let previous = self.pool.in_flight.fetch_add(1, Ordering::AcqRel);
        let permit = Permit(self.pool.clone());
        if previous < self.pool.max_in_flight {
            Ok(permit)
        } else {
            Err(ApiError::new(
                ErrorCode::UpstreamUnavailable,
                "the service is at capacity; retry shortly",
            )
            .with_retry_after(FULL_RETRY_AFTER_SECS))
        }
    }

    /// This worker's actor, or the dedicated actors in turn.
    fn next_actor(&self) -> Option<(usize, Addr<UpstreamActor>)> {
        if let Some(local) = &self.local {
            return Some((0, local.clone()));
        }
        let actors = &self.pool.actors;
        let index = self.pool.next.fetch_add(1, Ordering::Relaxed) % actors.len().max(1);
        actors.get(index).map(|actor| (index, actor.clone()))
    }

    /// Makes a call on an actor, or refuses at once with 503 when the pool is
    /// full. A stream keeps its place in the pool until it ends. Dropping the
    /// returned future cancels the call.
    pub fn call(&self, call: UpstreamCall) -> impl std::future::Future<Output = CallOutcome> + '_ {
        // Boxed once here: the call travels through the handler's future, the
        // actor's message and the pipeline's future, and every call in flight
        // would otherwise hold a copy of it at each step.
        self.call_boxed(Box::new(call))
    }

    async fn call_boxed(&self, call: Box<UpstreamCall>) -> CallOutcome {
        let permit = match self.admit() {
            Ok(permit) => permit,
            Err(full) => return CallOutcome::refused(full),
        };
        let Some((index, actor)) = self.next_actor() else {
            // `for_this_worker` always gives a worker an actor.
            return CallOutcome::refused(ApiError::new(
                ErrorCode::InternalError,
                "no upstream worker is available",
            ));
        };
        // Held until this future completes or is dropped; dropping it tells the actor to stop.
        let (_cancel_on_drop, cancelled) = oneshot::channel::<()>();
        let sent = actor
            .send(Call {
                call,
                permit,
                cancelled,
            })
            .await;
        sent.map_or_else(|error| actor_gone(index, error), |outcome| *outcome)
    }
}

impl Upstream {
    /// Relays a Live API session on an actor until it ends. The session holds
    /// a place in the pool all along, like a stream.
    pub async fn live(&self, call: LiveCall) -> Result<LiveOutcome, ApiError> {
        let permit = self.admit()?;
        let Some((index, actor)) = self.next_actor() else {
            return Err(ApiError::new(
                ErrorCode::InternalError,
                "no upstream worker is available",
            ));
        };
        actor.send(Live { call, permit }).await.map_err(|error| {
            log::error!("upstream actor {index} is gone: {error}");
            ApiError::new(
                ErrorCode::InternalError,
                "the upstream worker stopped unexpectedly",
            )
        })
    }

    /// Passes one upload request to Gemini on an actor; it holds a place in
    /// the pool while its body flows.
    pub async fn upload(&self, call: UploadCall) -> Result<UploadReply, ApiError> {
        let permit = self.admit()?;
        let Some((index, actor)) = self.next_actor() else {
            return Err(ApiError::new(
                ErrorCode::InternalError,
                "no upstream worker is available",
            ));
        };
        actor.send(Upload { call, permit }).await.map_err(|error| {
            log::error!("upstream actor {index} is gone: {error}");
            ApiError::new(
                ErrorCode::InternalError,
                "the upstream worker stopped unexpectedly",
            )
        })?
    }

    /// Whether the pool has a place now, without taking it: a Live session
    /// is refused before its upgrade when it would be refused after.
    pub fn has_room(&self) -> Result<(), ApiError> {
        self.admit().map(drop)
    }
}

fn actor_gone(index: usize, error: MailboxError) -> CallOutcome {
    log::error!("upstream actor {index} is gone: {error}");
    CallOutcome::refused(ApiError::new(
        ErrorCode::InternalError,
        "the upstream worker stopped unexpectedly",
    ))
}
