//! The wall clock the quota windows read, and calendar days in
//! `QUOTA_TIMEZONE`. Days are 23 or 25 hours long when daylight saving time
//! starts or ends; jiff's bundled time zone database handles that.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use std::sync::Arc;
use std::time::Duration;

/// Where "now" comes from: the system's clock, or one a test moves.
#[derive(Clone)]
pub struct WallClock(Arc<dyn Fn() -> Timestamp + Send + Sync>);

impl WallClock {
    pub fn system() -> WallClock {
        WallClock(Arc::new(Timestamp::now))
    }

    /// A clock that reads `now`; tests build one from a clock they move.
    pub fn from_fn(now: impl Fn() -> Timestamp + Send + Sync + 'static) -> WallClock {
        WallClock(Arc::new(now))
    }

    pub fn now(&self) -> Timestamp {
        (self.0)()
    }
}

impl std::fmt::Debug for WallClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WallClock")
    }
}

/// Calendar days in one time zone.
#[derive(Clone, Debug)]
pub struct Days {
    zone: TimeZone,
}

/// One calendar day: its date and when it starts and ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Day {
    pub date: Date,
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Days {
    pub fn new(zone: TimeZone) -> Days {
        Days { zone }
    }

    /// The day `now` falls in.
    pub fn day_of(&self, now: Timestamp) -> Day {
        let date = now.to_zoned_datetime(self.zone.clone()).date();
        let start = self.start_of(date).unwrap_or(now);
        let end = date
            .tomorrow()
            .ok()
            .and_then(|d| self.start_of(d))
            // Beyond jiff's range (year 9999): a day from now is the safe guess.
            .unwrap_or_else(|| {
                now.checked_add(jiff::SignedDuration::from_hours(24))
                    .unwrap_or(now)
            });
        Day { date, start, end }
    }

    /// The first instant of `date` (midnight, or the first time after a gap).
    fn start_of(&self, date: Date) -> Option<Timestamp> {
        date.to_zoned_datetime(self.zone.clone())
            .ok()
            .map(|z| z.start_of_day().map_or(z.timestamp(), |s| s.timestamp()))
    }
}

/// Time from `now` until `then`; zero when `then` has passed.
pub fn until(now: Timestamp, then: Timestamp) -> Duration {
    Duration::try_from(then.duration_since(now)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> Timestamp {
        rfc3339.parse().unwrap()
    }

    fn pacific() -> Days {
        Days::new(TimeZone::get("America/Los_Angeles").unwrap())
    }

    #[test]
    fn an_ordinary_day_has_24_hours() {
        let day = pacific().day_of(at("2026-01-15T19:00:00Z"));
        assert_eq!(day.date.to_string(), "2026-01-15");
        assert_eq!(day.start, at("2026-01-15T08:00:00Z"));
        assert_eq!(day.end, at("2026-01-16T08:00:00Z"));
    }

    #[test]
    fn the_spring_forward_day_has_23_hours_and_the_fall_back_day_25() {
        let spring = pacific().day_of(at("2026-03-08T12:00:00Z"));
        assert_eq!(
            until(spring.start, spring.end),
            Duration::from_secs(23 * 3600)
        );
        let fall = pacific().day_of(at("2026-11-01T12:00:00Z"));
        assert_eq!(until(fall.start, fall.end), Duration::from_secs(25 * 3600));
    }

    #[test]
    fn midnight_belongs_to_the_day_it_starts() {
        let day = pacific().day_of(at("2026-01-16T08:00:00Z"));
        assert_eq!(day.date.to_string(), "2026-01-16");
    }
}
