//! The pool of upstream actors, and the admission control in front of it.
//!
//! Actor mailboxes do not bound their queues (STACK.md trap 7), so the pool
//! counts calls in progress and refuses at once, with 503 and `Retry-After`,
//! past `MAX_IN_FLIGHT`: a client learns to back off in microseconds instead of
//! waiting behind a queue that only grows.

use super::actor::{Generate, UpstreamActor};
use super::call::{CallOutcome, GenerateCall, UpstreamContext};
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
struct Permit<'a>(&'a AtomicUsize);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
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

    fn admit(&self) -> Option<Permit<'_>> {
        let inner = &*self.inner;
        let previous = inner.in_flight.fetch_add(1, Ordering::AcqRel);
        let permit = Permit(&inner.in_flight);
        (previous < inner.max_in_flight).then_some(permit)
    }

    /// Makes a generateContent call on the next actor, or refuses at once when
    /// the pool is full. Dropping the returned future cancels the call.
    pub async fn generate(&self, call: GenerateCall) -> CallOutcome {
        let Some(_permit) = self.admit() else {
            return CallOutcome::refused(
                ApiError::new(
                    ErrorCode::UpstreamUnavailable,
                    "the service is at capacity; retry shortly",
                )
                .with_retry_after(FULL_RETRY_AFTER_SECS),
            );
        };
        let index = self.inner.next.fetch_add(1, Ordering::Relaxed) % self.inner.actors.len();
        // Held until this future completes or is dropped; dropping it tells the actor to stop.
        let (_cancel_on_drop, cancelled) = oneshot::channel::<()>();
        match self.inner.actors[index]
            .send(Generate { call, cancelled })
            .await
        {
            Ok(outcome) => outcome,
            Err(error) => {
                log::error!("upstream actor {index} is gone: {error}");
                CallOutcome::refused(ApiError::new(
                    ErrorCode::InternalError,
                    "the upstream worker stopped unexpectedly",
                ))
            }
        }
    }

    /// Stops the actors' threads (after the HTTP server has drained).
    pub fn stop(&self) {
        for arbiter in &self.inner.arbiters {
            arbiter.stop();
        }
    }
}
