//! The pool of upstream actors, and the admission control in front of it.
//!
//! Actor mailboxes do not bound their queues, so the pool
//! counts calls in progress and refuses at once, with 503 and `Retry-After`,
//! past `MAX_IN_FLIGHT`: a client learns to back off in microseconds instead of
//! waiting behind a queue that only grows.

use super::actor::{Call, UpstreamActor};
use super::pipeline::{CallOutcome, UpstreamCall, UpstreamContext};
use crate::errors::{ApiError, ErrorCode};
use actix::prelude::*;
use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

thread_local! {
    /// The upstream actor of this HTTP worker's thread, when it has one: a
    /// message to it never crosses threads, which on a busy core saves the
    /// context switches a hop to a dedicated thread costs.
    static WORKER_ACTOR: RefCell<Option<Addr<UpstreamActor>>> = const { RefCell::new(None) };
}

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
}

/// One admitted call; releases its place when dropped, however the call ends.
/// A stream keeps its permit until the stream ends.
pub struct Permit(Arc<PoolInner>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl UpstreamPool {
    /// Starts `actors` dedicated upstream actors, each on an arbiter (thread)
    /// of its own, used in turn. With none, each HTTP worker starts its own
    /// actor on its own thread ([`UpstreamPool::start_worker_actor`]), the
    /// default: it saves two thread hops per call (see README, Benchmarks).
    pub fn start(
        context: Arc<UpstreamContext>,
        actors: usize,
        max_in_flight: usize,
        connect_timeout: Duration,
    ) -> UpstreamPool {
        let mut addrs = Vec::with_capacity(actors);
        let mut arbiters = Vec::with_capacity(actors);
        for _ in 0..actors {
            let arbiter = Arbiter::new().handle();
            let ctx = context.clone();
            addrs.push(UpstreamActor::start_in_arbiter(&arbiter, move |_| {
                UpstreamActor::new(ctx, connect_timeout)
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
            }),
        }
    }

    pub fn context(&self) -> &UpstreamContext {
        &self.inner.context
    }

    /// A place in the pool, or the 503 that says the pool is full.
    fn admit(&self) -> Result<Permit, ApiError> {
        let previous = self.inner.in_flight.fetch_add(1, Ordering::AcqRel);
        let permit = Permit(self.inner.clone());
        if previous < self.inner.max_in_flight {
            Ok(permit)
        } else {
            Err(ApiError::new(
                ErrorCode::UpstreamUnavailable,
                "the service is at capacity; retry shortly",
            )
            .with_retry_after(FULL_RETRY_AFTER_SECS))
        }
    }

    /// Starts an upstream actor on the calling thread (an HTTP worker, from
    /// the App factory); that worker's handlers use it instead of the pool.
    pub fn start_worker_actor(&self, connect_timeout: Duration) {
        let context = self.inner.context.clone();
        let addr = UpstreamActor::new(context, connect_timeout).start();
        WORKER_ACTOR.with(|slot| *slot.borrow_mut() = Some(addr));
    }

    /// The dedicated actors in turn when there are some, else this worker's.
    fn next_actor(&self) -> Option<(usize, Addr<UpstreamActor>)> {
        let actors = &self.inner.actors;
        if actors.is_empty() {
            return WORKER_ACTOR
                .with(|slot| slot.borrow().clone())
                .map(|local| (0, local));
        }
        let index = self.inner.next.fetch_add(1, Ordering::Relaxed) % actors.len();
        Some((index, actors[index].clone()))
    }

    /// Makes a call on the next actor, or refuses at once with 503 when the
    /// pool is full. A stream keeps its place in the pool until it ends.
    /// Dropping the returned future cancels the call.
    pub async fn call(&self, call: UpstreamCall) -> CallOutcome {
        let permit = match self.admit() {
            Ok(permit) => permit,
            Err(full) => return CallOutcome::refused(full),
        };
        let Some((index, actor)) = self.next_actor() else {
            return no_actor();
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
        sent.unwrap_or_else(|error| actor_gone(index, error))
    }

    /// Stops the actors' threads (after the HTTP server has drained).
    pub fn stop(&self) {
        for arbiter in &self.inner.arbiters {
            arbiter.stop();
        }
    }
}

fn actor_gone(index: usize, error: MailboxError) -> CallOutcome {
    log::error!("upstream actor {index} is gone: {error}");
    CallOutcome::refused(ApiError::new(
        ErrorCode::InternalError,
        "the upstream worker stopped unexpectedly",
    ))
}

/// A call made off the HTTP workers with no dedicated actors: a wiring bug.
fn no_actor() -> CallOutcome {
    log::error!("no upstream actor on this thread");
    CallOutcome::refused(ApiError::new(
        ErrorCode::InternalError,
        "no upstream worker is available",
    ))
}
