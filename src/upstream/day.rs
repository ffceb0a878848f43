//! Calendar days in a time zone: Gemini resets its per-day quotas at midnight
//! Pacific time, so a key that hit one rests until then. Days are 23 or 25
//! hours long when daylight saving time starts or ends; the time zone database
//! (bundled, so a container without one still knows) handles that.

use jiff::tz::{Offset, TimeZone};
use jiff::Timestamp;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

/// Where Gemini's day starts.
const PACIFIC: &str = "America/Los_Angeles";

fn pacific() -> &'static TimeZone {
    static ZONE: OnceLock<TimeZone> = OnceLock::new();
    ZONE.get_or_init(|| {
        TimeZone::get(PACIFIC).unwrap_or_else(|e| {
            // Only a build without the bundled database gets here; standard
            // time is then the longer wait, which errs towards resting.
            log::warn!("no time zone data for {PACIFIC} ({e}); using UTC-8");
            TimeZone::fixed(Offset::constant(-8))
        })
    })
}

/// How long from `now` until the next midnight in `zone`; the quota windows'
/// calendar days ([`crate::quota::Days`]) are the one place days are cut.
pub fn until_next_midnight(now: SystemTime, zone: &TimeZone) -> Duration {
    match Timestamp::try_from(now) {
        Ok(instant) => {
            let day = crate::quota::Days::new(zone.clone()).day_of(instant);
            crate::quota::clock::until(instant, day.end)
        }
        // Outside jiff's range (years beyond ±9999): a day is the safe guess.
        Err(_) => Duration::from_secs(24 * 3600),
    }
}

/// How long from `now` until the next midnight Pacific time.
pub fn until_next_midnight_pacific(now: SystemTime) -> Duration {
    until_next_midnight(now, pacific())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> SystemTime {
        SystemTime::try_from(rfc3339.parse::<Timestamp>().unwrap()).unwrap()
    }

    fn hours(h: f64) -> Duration {
        Duration::from_secs_f64(h * 3600.0)
    }

    #[test]
    fn midnight_pacific_on_ordinary_days() {
        // 23:00 PST is 07:00 UTC the next calendar day.
        assert_eq!(
            until_next_midnight_pacific(at("2026-01-15T07:00:00Z")),
            hours(1.0)
        );
        // Noon PDT (UTC-7).
        assert_eq!(
            until_next_midnight_pacific(at("2026-07-01T19:00:00Z")),
            hours(12.0)
        );
        // Exactly midnight: the next one is a whole day away.
        assert_eq!(
            until_next_midnight_pacific(at("2026-01-15T08:00:00Z")),
            hours(24.0)
        );
    }

    #[test]
    fn the_day_clocks_spring_forward_has_23_hours() {
        // 2026-03-08 is the second Sunday of March: 00:00 PST to 00:00 PDT on the 9th.
        assert_eq!(
            until_next_midnight_pacific(at("2026-03-08T08:00:00Z")),
            hours(23.0)
        );
        // 01:30 PST, before the change at 02:00.
        assert_eq!(
            until_next_midnight_pacific(at("2026-03-08T09:30:00Z")),
            hours(21.5)
        );
    }

    #[test]
    fn the_day_clocks_fall_back_has_25_hours() {
        // 2026-11-01 is the first Sunday of November: 00:00 PDT to 00:00 PST on the 2nd.
        assert_eq!(
            until_next_midnight_pacific(at("2026-11-01T07:00:00Z")),
            hours(25.0)
        );
        // 01:30 PDT, the first of the two 01:30s.
        assert_eq!(
            until_next_midnight_pacific(at("2026-11-01T08:30:00Z")),
            hours(23.5)
        );
    }

    #[test]
    fn other_zones_work_too() {
        let tokyo = TimeZone::get("Asia/Tokyo").unwrap();
        assert_eq!(
            until_next_midnight(at("2026-01-15T14:00:00Z"), &tokyo),
            hours(1.0)
        );
    }
}
