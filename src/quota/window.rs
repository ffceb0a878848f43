//! One scope's windows in process: tokens per minute as a leaky bucket (GCRA
//! over tokens) and the counts of the current calendar day.

use super::clock::{until, Day};
use jiff::civil::Date;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::time::Duration;

const MICROS_PER_MINUTE: f64 = 60_000_000.0;

/// Tokens per minute: the bucket holds the tokens charged and drains `limit`
/// of them a minute, continuously. It is open while it holds fewer than
/// `limit`, so a client overshoots by at most one answer's tokens, and then
/// waits until the excess has drained.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MinuteTokens {
    level: f64,
    /// When `level` was last brought up to date, microseconds since the epoch.
    at_us: i64,
}

fn micros(now: Timestamp) -> i64 {
    now.as_microsecond()
}

impl MinuteTokens {
    /// Tokens still in the bucket at `now`.
    pub fn used(&self, now: Timestamp, limit: u64) -> f64 {
        let elapsed = (micros(now) - self.at_us).max(0) as f64;
        let drained = elapsed * limit as f64 / MICROS_PER_MINUTE;
        (self.level - drained).max(0.0)
    }

    /// `None` while open; else how long until it is open again.
    pub fn closed_for(&self, now: Timestamp, limit: u64) -> Option<Duration> {
        let over = self.used(now, limit) - limit as f64;
        // Open again once `over` has drained and a little more: strictly below.
        (over >= 0.0)
            .then(|| Duration::from_micros((over * MICROS_PER_MINUTE / limit as f64) as u64 + 1))
    }

    pub fn add(&mut self, now: Timestamp, limit: u64, tokens: u64) {
        self.level = self.used(now, limit) + tokens as f64;
        self.at_us = micros(now);
    }

    /// Time until the bucket is empty.
    pub fn empty_in(&self, now: Timestamp, limit: u64) -> Duration {
        Duration::from_secs_f64(self.used(now, limit) * 60.0 / limit as f64)
    }
}

/// A calendar day's requests and tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCount {
    pub date: Option<Date>,
    pub requests: u64,
    pub tokens: u64,
}

impl DayCount {
    /// The counts of `day`: a count of an earlier day starts again from zero.
    pub fn of(&mut self, day: &Day) -> &mut DayCount {
        if self.date != Some(day.date) {
            *self = DayCount {
                date: Some(day.date),
                requests: 0,
                tokens: 0,
            };
        }
        self
    }
}

/// The numbers `/usage` and the gauges show for one window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowUsage {
    pub limit: u64,
    pub used: u64,
    pub remaining: u64,
    /// When the window has nothing used again (the tokens-per-minute bucket
    /// empty; the next day started).
    pub reset_at: Timestamp,
}

impl WindowUsage {
    pub fn new(limit: u64, used: u64, now: Timestamp, reset_in: Duration) -> WindowUsage {
        let reset_at = jiff::SignedDuration::try_from(reset_in)
            .ok()
            .and_then(|d| now.checked_add(d).ok())
            .unwrap_or(now);
        WindowUsage {
            limit,
            used,
            remaining: limit.saturating_sub(used),
            reset_at,
        }
    }

    pub fn reset_in(&self, now: Timestamp) -> Duration {
        until(now, self.reset_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn the_minute_bucket_closes_at_its_limit_and_drains_at_its_rate() {
        let mut w = MinuteTokens::default();
        assert_eq!(w.closed_for(t(0), 600), None);
        w.add(t(0), 600, 599);
        assert_eq!(w.closed_for(t(0), 600), None, "599 of 600: still open");
        w.add(t(0), 600, 300);
        // 899 used: 299 over, draining 10 a second: open after 29.9 s.
        let wait = w.closed_for(t(0), 600).unwrap();
        assert!(wait > Duration::from_millis(29_900) && wait < Duration::from_millis(29_901));
        assert!(w.closed_for(t(29), 600).is_some());
        assert_eq!(w.closed_for(t(30), 600), None);
        assert_eq!(w.used(t(90), 600), 0.0, "empty after 89.9 s");
        assert_eq!(w.empty_in(t(0), 600), Duration::from_secs_f64(89.9));
    }

    #[test]
    fn a_day_count_of_an_earlier_day_starts_from_zero() {
        let days = super::super::clock::Days::new(jiff::tz::TimeZone::UTC);
        let mut count = DayCount::default();
        let today = days.day_of(t(0));
        count.of(&today).requests += 3;
        assert_eq!(count.of(&today).requests, 3);
        let tomorrow = days.day_of(t(86_400));
        assert_eq!(count.of(&tomorrow).requests, 0);
    }
}
