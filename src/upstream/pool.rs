//! The pool of upstream actors, and the admission control in front of it.
//!
//! Actor mailboxes do not bound their queues (STACK.md trap 7), so the pool
//! counts calls in progress and refuses at once, with 503 and `Retry-After`,
//! past `MAX_IN_FLIGHT`: a client learns to back off in microseconds instead of
//! waiting behind a queue that only grows.

use super::actor::{Forward, Generate, UpstreamActor};
use super::call::{CallOutcome, GenerateCall, UpstreamContext};
use super::forward::{ForwardCall, ForwardReply};
use crate::errors::{ApiError, ErrorCode};
use actix::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
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
    /// Starts `actors` upstream actors, each on an arbiter (thread) of its own.
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
    pub fn admit(&self) -> Result<Permit, ApiError> {
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

    fn next_actor(&self) -> (usize, &Addr<UpstreamActor>) {
        let index = self.inner.next.fetch_add(1, Ordering::Relaxed) % self.inner.actors.len();
        (index, &self.inner.actors[index])
    }

    /// Makes a generateContent call on the next actor, or refuses at once when
    /// the pool is full. Dropping the returned future cancels the call.
    pub async fn generate(&self, call: GenerateCall) -> CallOutcome {
        let _permit = match self.admit() {
            Ok(permit) => permit,
            Err(full) => return CallOutcome::refused(full),
        };
        let (index, actor) = self.next_actor();
        // Held until this future completes or is dropped; dropping it tells the actor to stop.
        let (_cancel_on_drop, cancelled) = oneshot::channel::<()>();
        let sent = actor.send(Generate { call, cancelled }).await;
        sent.unwrap_or_else(|error| actor_gone(index, error))
    }

    /// Makes a pass-through call on the next actor under `permit` (which the
    /// caller keeps for as long as a streamed body flows). Dropping the
    /// returned future cancels the call.
    pub async fn forward(&self, call: ForwardCall) -> CallOutcome<ForwardReply> {
        let (index, actor) = self.next_actor();
        let (_cancel_on_drop, cancelled) = oneshot::channel::<()>();
        let sent = actor.send(Forward { call, cancelled }).await;
        sent.unwrap_or_else(|error| actor_gone(index, error))
    }

    /// Stops the actors' threads (after the HTTP server has drained).
    pub fn stop(&self) {
        for arbiter in &self.inner.arbiters {
            arbiter.stop();
        }
    }
}

fn actor_gone<T>(index: usize, error: MailboxError) -> CallOutcome<T> {
    log::error!("upstream actor {index} is gone: {error}");
    CallOutcome::refused(ApiError::new(
        ErrorCode::InternalError,
        "the upstream worker stopped unexpectedly",
    ))
}
