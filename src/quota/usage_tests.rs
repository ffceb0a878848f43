use super::*;
use crate::quota::QuotaGroup;
use std::collections::BTreeSet;
use std::num::NonZeroU64;

fn n(v: u64) -> Option<NonZeroU64> {
    NonZeroU64::new(v)
}

/// Requests per day alone.
fn per_day(requests: u64) -> QuotaLimits {
    QuotaLimits {
        requests_per_day: n(requests),
        ..QuotaLimits::default()
    }
}

/// A client's quotas without groups.
fn alone(total: QuotaLimits) -> Quotas {
    Quotas {
        total,
        groups: vec![],
    }
}

fn at(rfc3339: &str) -> Timestamp {
    rfc3339.parse().unwrap()
}

fn pacific() -> Days {
    Days::new(jiff::tz::TimeZone::get("America/Los_Angeles").unwrap())
}

fn pro_group(limits: QuotaLimits) -> Quotas {
    Quotas {
        total: QuotaLimits {
            tokens_per_day: n(1_000),
            ..QuotaLimits::default()
        },
        groups: vec![QuotaGroup {
            models: BTreeSet::from(["gemini-2.5-pro".to_owned()]),
            limits,
            name: "gemini-2.5-pro".into(),
        }],
    }
}

#[test]
fn a_tokens_per_minute_limit_admits_until_reached_and_overshoots_by_one_answer_at_most() {
    let days = pacific();
    let quotas = Quotas {
        total: QuotaLimits {
            tokens_per_minute: n(1_000),
            ..QuotaLimits::default()
        },
        groups: vec![],
    };
    let usage = ClientUsage::default();
    let now = at("2026-06-01T12:00:00Z");
    let mut admitted = 0;
    // Answers of 300 tokens: 300, 600, 900 leave it open; 1,200 closes it.
    while usage.admit(&quotas.total, None, now, &days).is_ok() {
        usage.charge(&quotas, None, 300, now, &days);
        admitted += 1;
        assert!(admitted < 10);
    }
    assert_eq!(admitted, 4);
    let used = usage.usage(&quotas, now, &days)[0].2.used;
    assert_eq!(used, 1_200, "over by less than one answer");
    let refusal = usage.admit(&quotas.total, None, now, &days).unwrap_err();
    assert_eq!(refusal.kind, WindowKind::TokensPerMinute);
    // 201 tokens over at 1,000 a minute: 12.06 s.
    assert_eq!(refusal.retry_after_secs(), 13);
    assert!(
        refusal.message().contains("tokens_per_minute (1000)"),
        "{}",
        refusal.message()
    );
}

#[test]
fn a_refused_request_charges_nothing() {
    let days = pacific();
    let limits = per_day(2);
    let quotas = alone(limits);
    let usage = ClientUsage::default();
    let now = at("2026-06-01T12:00:00Z");
    assert!(usage.admit(&limits, None, now, &days).is_ok());
    assert!(usage.admit(&limits, None, now, &days).is_ok());
    for _ in 0..5 {
        assert!(usage.admit(&limits, None, now, &days).is_err());
    }
    assert_eq!(usage.usage(&quotas, now, &days)[0].2.used, 2);
}

#[test]
fn the_day_rolls_over_at_midnight_in_the_zone_also_when_clocks_change() {
    let days = pacific();
    let limits = per_day(1);
    let usage = ClientUsage::default();
    // 2026-03-08 (23 hours) and 2026-11-01 (25 hours), and an ordinary day.
    for (before, midnight) in [
        ("2026-03-08T07:59:59Z", "2026-03-08T08:00:00Z"), // PST midnight
        ("2026-03-09T06:59:59Z", "2026-03-09T07:00:00Z"), // PDT midnight after a 23 h day
        ("2026-11-01T06:59:59Z", "2026-11-01T07:00:00Z"), // PDT midnight
        ("2026-11-02T07:59:59Z", "2026-11-02T08:00:00Z"), // PST midnight after a 25 h day
    ] {
        let (before, midnight) = (at(before), at(midnight));
        let _ = usage.admit(&limits, None, before, &days);
        let refusal = usage.admit(&limits, None, before, &days).unwrap_err();
        assert_eq!(
            refusal.retry_after_secs(),
            1,
            "the next day is a second away"
        );
        assert!(
            usage.admit(&limits, None, midnight, &days).is_ok(),
            "{midnight}"
        );
    }
}

#[test]
fn the_retry_after_of_a_daily_limit_runs_to_the_next_day_even_a_25_hour_one() {
    let days = pacific();
    let limits = per_day(1);
    let usage = ClientUsage::default();
    let start = at("2026-11-01T07:00:00Z");
    usage.admit(&limits, None, start, &days).unwrap();
    let refusal = usage.admit(&limits, None, start, &days).unwrap_err();
    assert_eq!(refusal.retry_after_secs(), 25 * 3600);
}

#[test]
fn a_model_group_counts_apart_from_the_total_and_both_apply() {
    let days = pacific();
    let quotas = pro_group(QuotaLimits {
        requests_per_day: n(2),
        tokens_per_day: n(300),
        ..QuotaLimits::default()
    });
    let group = &quotas.groups[0];
    let usage = ClientUsage::default();
    let now = at("2026-06-01T12:00:00Z");
    // Two pro requests of 200 tokens: the group's tokens are used up.
    for _ in 0..2 {
        usage.admit(&quotas.total, None, now, &days).unwrap();
        usage
            .admit(&group.limits, Some(&group.name), now, &days)
            .unwrap();
        usage.charge(&quotas, Some(0), 200, now, &days);
    }
    let refusal = usage
        .admit(&group.limits, Some(&group.name), now, &days)
        .unwrap_err();
    assert_eq!(refusal.limit_name(), "requests_per_day:gemini-2.5-pro");
    // Other models still flow, on the total alone, until it is used up.
    usage.admit(&quotas.total, None, now, &days).unwrap();
    usage.charge(&quotas, None, 700, now, &days);
    let refusal = usage.admit(&quotas.total, None, now, &days).unwrap_err();
    assert_eq!(refusal.limit_name(), "tokens_per_day");
    let windows = usage.usage(&quotas, now, &days);
    let used: Vec<(Option<String>, &str, u64)> = windows
        .iter()
        .map(|(g, k, u)| (g.clone(), k.name(), u.used))
        .collect();
    assert_eq!(
        used,
        [
            (None, "tokens_per_day", 1_100),
            (Some("gemini-2.5-pro".into()), "requests_per_day", 2),
            (Some("gemini-2.5-pro".into()), "tokens_per_day", 400),
        ]
    );
}

#[test]
fn undo_takes_back_a_counted_request() {
    let days = pacific();
    let limits = per_day(5);
    let quotas = alone(limits);
    let usage = ClientUsage::default();
    let now = at("2026-06-01T12:00:00Z");
    usage.admit(&limits, None, now, &days).unwrap();
    usage.undo(&limits, None, now, &days);
    assert_eq!(usage.usage(&quotas, now, &days)[0].2.used, 0);
}

#[test]
fn usage_is_kept_by_client_name_whatever_its_limits() {
    let days = pacific();
    let store = UsageStore::default();
    let name: Arc<str> = "team-a".into();
    let now = at("2026-06-01T12:00:00Z");
    let old = per_day(10);
    for _ in 0..4 {
        store.of(&name).admit(&old, None, now, &days).unwrap();
    }
    // A reload lowers the limit to 5: one more request, not five.
    let new = per_day(5);
    store.retain(std::slice::from_ref(&name));
    assert!(store.of(&name).admit(&new, None, now, &days).is_ok());
    assert!(store.of(&name).admit(&new, None, now, &days).is_err());
    store.retain(&[]);
    assert!(store.all().is_empty());
}
