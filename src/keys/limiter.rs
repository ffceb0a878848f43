//! One client's token bucket (governor's GCRA) and the numbers the
//! `RateLimit-*` and `Retry-After` headers report from it.

use super::policy::Limits;
use crate::errors::whole_seconds_up;
use governor::clock::{Clock, Reference};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

type Bucket<C> = RateLimiter<NotKeyed, TrackedState, C, StateInformationMiddleware>;

/// Governor's in-memory bucket state that also shares the value it last stored:
/// GCRA's theoretical arrival time, which is the moment the bucket is full
/// again. Governor reports only whole remaining tokens, and a time derived from
/// those is up to one refill interval late.
#[derive(Default)]
struct TrackedState {
    inner: InMemoryState,
    /// Nanoseconds from the bucket's start until it is full again.
    full_at: Arc<AtomicU64>,
}

impl StateStore for TrackedState {
    type Key = NotKeyed;

    fn measure_and_replace<T, F, E>(&self, key: &NotKeyed, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.inner.measure_and_replace(key, |tat| {
            // A refused cell returns early here and leaves the state unchanged.
            let (outcome, next) = f(tat)?;
            self.full_at.store(next.as_u64(), Ordering::Relaxed);
            Ok((outcome, next))
        })
    }
}

/// What a client may still send, as the `RateLimit-*` headers say it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitSnapshot {
    /// The bucket's size (the client's burst).
    pub limit: u32,
    /// Requests the client may send right now.
    pub remaining: u32,
    /// Whole seconds until the bucket is full again.
    pub reset_secs: u64,
}

impl RateLimitSnapshot {
    /// A bucket with `limits` that is full again after `until_full`, without
    /// taking a token (`GET /usage`; either backend).
    pub fn of_bucket(limits: Limits, until_full: Duration) -> RateLimitSnapshot {
        let burst = limits.burst.get();
        let interval = Duration::from_secs(60) / limits.requests_per_minute.get();
        // Tokens missing from a full bucket: the time it needs to refill, in intervals, rounded up.
        let missing = until_full.as_nanos().div_ceil(interval.as_nanos().max(1));
        RateLimitSnapshot {
            limit: burst,
            remaining: burst.saturating_sub(u32::try_from(missing).unwrap_or(u32::MAX)),
            reset_secs: whole_seconds_up(until_full),
        }
    }
}

/// The outcome of taking one token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed(RateLimitSnapshot),
    /// Refused; `retry_after_secs` is when one token will be back (rounded up).
    Limited {
        snapshot: RateLimitSnapshot,
        retry_after_secs: u64,
    },
}

pub struct ClientLimiter<C: Clock + Clone> {
    limits: Limits,
    bucket: Bucket<C>,
    clock: C,
    /// Read just before governor reads its own start, to which `full_at` is
    /// relative; being nanoseconds earlier makes `until_full` that much shorter.
    start: C::Instant,
    full_at: Arc<AtomicU64>,
}

impl<C: Clock + Clone> ClientLimiter<C> {
    pub fn new(limits: Limits, clock: C) -> Self {
        let quota = Quota::per_minute(limits.requests_per_minute).allow_burst(limits.burst);
        let state = TrackedState::default();
        let full_at = state.full_at.clone();
        let start = clock.now();
        let bucket = Bucket::new(quota, state, clock.clone());
        ClientLimiter {
            limits,
            bucket,
            clock,
            start,
            full_at,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Time from now until the bucket is full again.
    fn until_full(&self) -> Duration {
        let full_at = Nanos::from(self.full_at.load(Ordering::Relaxed));
        let elapsed = self.clock.now().duration_since(self.start);
        full_at.saturating_sub(elapsed).into()
    }

    /// The bucket now, without taking a token.
    pub fn peek(&self) -> RateLimitSnapshot {
        RateLimitSnapshot::of_bucket(self.limits, self.until_full())
    }

    /// Takes one token if there is one.
    pub fn take(&self) -> Decision {
        let burst = self.limits.burst.get();
        match self.bucket.check() {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                Decision::Allowed(RateLimitSnapshot {
                    limit: burst,
                    remaining,
                    reset_secs: whole_seconds_up(self.until_full()),
                })
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Decision::Limited {
                    snapshot: RateLimitSnapshot {
                        limit: burst,
                        remaining: 0,
                        reset_secs: whole_seconds_up(self.until_full()),
                    },
                    retry_after_secs: whole_seconds_up(wait).max(1),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::num::NonZeroU32;

    fn limiter(rpm: u32, burst: u32) -> (ClientLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let limits = Limits {
            requests_per_minute: NonZeroU32::new(rpm).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
        };
        (ClientLimiter::new(limits, clock.clone()), clock)
    }

    #[test]
    fn a_full_bucket_admits_exactly_the_burst() {
        let (limiter, _) = limiter(60, 3);
        let remaining: Vec<u32> = (0..3)
            .map(|_| match limiter.take() {
                Decision::Allowed(s) => s.remaining,
                other => panic!("refused early: {other:?}"),
            })
            .collect();
        assert_eq!(remaining, [2, 1, 0]);
        match limiter.take() {
            Decision::Limited {
                retry_after_secs,
                snapshot,
            } => {
                assert_eq!(retry_after_secs, 1, "one token a second at 60/min");
                assert_eq!(snapshot.remaining, 0);
                assert_eq!(snapshot.limit, 3);
                assert_eq!(snapshot.reset_secs, 3);
            }
            other => panic!("should be limited: {other:?}"),
        }
    }

    #[test]
    fn retry_after_rounds_a_partial_second_up() {
        let (limiter, clock) = limiter(40, 1); // one token every 1.5 s
        assert!(matches!(limiter.take(), Decision::Allowed(_)));
        clock.advance(Duration::from_millis(100));
        match limiter.take() {
            Decision::Limited {
                retry_after_secs, ..
            } => assert_eq!(retry_after_secs, 2, "1.4 s rounds up to 2"),
            other => panic!("should be limited: {other:?}"),
        }
    }

    #[test]
    fn reset_says_when_a_partly_refilled_bucket_is_full() {
        let (limiter, clock) = limiter(1, 2); // one token a minute
        let reset = |d: Decision| match d {
            Decision::Allowed(s) => s.reset_secs,
            Decision::Limited { snapshot, .. } => snapshot.reset_secs,
        };
        assert_eq!(reset(limiter.take()), 60);
        clock.advance(Duration::from_secs(30));
        // Half a token is back; the second comes back at 120 s, 90 s from now.
        assert_eq!(reset(limiter.take()), 90, "not two whole intervals");
        match limiter.take() {
            Decision::Limited {
                snapshot,
                retry_after_secs,
            } => assert_eq!((retry_after_secs, snapshot.reset_secs), (30, 90)),
            other => panic!("should be limited: {other:?}"),
        }
    }

    #[test]
    fn the_bucket_refills_at_the_sustained_rate() {
        let (limiter, clock) = limiter(60, 2);
        assert!(matches!(limiter.take(), Decision::Allowed(_)));
        assert!(matches!(limiter.take(), Decision::Allowed(_)));
        assert!(matches!(limiter.take(), Decision::Limited { .. }));
        clock.advance(Duration::from_secs(1));
        assert!(matches!(limiter.take(), Decision::Allowed(_)));
        assert!(matches!(limiter.take(), Decision::Limited { .. }));
        clock.advance(Duration::from_secs(2));
        match limiter.take() {
            Decision::Allowed(s) => assert_eq!(s.remaining, 1),
            other => panic!("should be allowed: {other:?}"),
        }
    }
}
