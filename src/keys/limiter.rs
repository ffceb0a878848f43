//! One client's token bucket (governor's GCRA) and the numbers the
//! `RateLimit-*` and `Retry-After` headers report from it.

use super::policy::Limits;
use crate::errors::whole_seconds_up;
use governor::clock::Clock;
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use std::time::Duration;

type Bucket<C> = RateLimiter<NotKeyed, InMemoryState, C, StateInformationMiddleware>;

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
}

impl<C: Clock + Clone> ClientLimiter<C> {
    pub fn new(limits: Limits, clock: C) -> Self {
        let quota = Quota::per_minute(limits.requests_per_minute).allow_burst(limits.burst);
        let bucket = RateLimiter::direct_with_clock(quota, clock.clone())
            .with_middleware::<StateInformationMiddleware>();
        ClientLimiter {
            limits,
            bucket,
            clock,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Time for one token to come back.
    fn interval(&self) -> Duration {
        Duration::from_secs(60) / self.limits.requests_per_minute.get()
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
                    reset_secs: whole_seconds_up(self.interval() * (burst - remaining)),
                })
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Decision::Limited {
                    snapshot: RateLimitSnapshot {
                        limit: burst,
                        remaining: 0,
                        reset_secs: whole_seconds_up(wait + self.interval() * (burst - 1)),
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
