//! Whether the Redis rate-limit backend answers, as this replica last saw it.
//!
//! While it is down, checks skip Redis altogether and use the in-process limit,
//! so a dead Redis costs requests nothing, not even the timeout; a probe every
//! [`PROBE_INTERVAL`] finds out when it is back. Each change of state is logged
//! once (not once per request) and shown in the
//! `gemini_proxy_rate_limit_backend_up{backend="redis"}` gauge.

use super::redis_limiter::CheckError;
use prometheus::IntGauge;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

/// How often Redis is asked whether it answers, up or down: often enough that
/// shared limits return within a second or so of Redis, rarely enough to cost
/// nothing (one small command per replica).
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

pub struct RedisHealth {
    state: AtomicU8,
    gauge: IntGauge,
    /// Where Redis is, credentials masked, for the log lines.
    address: String,
}

impl RedisHealth {
    /// Starts unknown, which counts as down without a log line: checks use the
    /// local limit until the first probe (sent at start-up) has an answer.
    /// Letting the first requests ask instead would make them wait for the
    /// connection to be set up, which may well take longer than a check may.
    pub fn new(gauge: IntGauge, address: String) -> RedisHealth {
        gauge.set(0);
        RedisHealth {
            state: AtomicU8::new(UNKNOWN),
            gauge,
            address,
        }
    }

    /// Should a check ask Redis (true), or go straight to the local limit?
    pub fn worth_asking(&self) -> bool {
        self.state.load(Ordering::Relaxed) == UP
    }

    /// Redis answered a probe.
    pub fn up(&self) {
        if self.state.swap(UP, Ordering::Relaxed) != UP {
            self.gauge.set(1);
            log::info!(
                "rate limits: Redis at {} answers; limits are shared by every replica",
                self.address
            );
        }
    }

    /// Redis failed a check or a probe: the replica uses its own limit until a
    /// probe succeeds.
    pub fn down(&self, why: &CheckError) {
        if self.state.swap(DOWN, Ordering::Relaxed) != DOWN {
            self.gauge.set(0);
            log::warn!(
                "rate limits: Redis at {} is unavailable ({why}); this replica applies its in-process limits until Redis is back",
                self.address
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gauge_follows_the_state_and_down_skips_redis() {
        let gauge = IntGauge::new("g", "help").unwrap();
        let health = RedisHealth::new(gauge.clone(), "redis://h:6379/0".into());
        assert_eq!(gauge.get(), 0, "unknown counts as not up");
        assert!(!health.worth_asking(), "until a probe has an answer");
        health.up();
        assert_eq!(gauge.get(), 1);
        assert!(health.worth_asking());
        health.down(&CheckError::Timeout(5));
        assert_eq!(gauge.get(), 0);
        assert!(!health.worth_asking());
        health.up();
        assert_eq!(gauge.get(), 1);
        assert!(health.worth_asking());
    }
}
