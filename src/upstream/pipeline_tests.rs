//! Unit tests of `pipeline`, kept apart so the module itself stays short.

use super::*;

#[test]
fn backoff_stays_under_its_cap() {
    for retry in 0..10 {
        let pause = backoff(retry);
        assert!(pause <= BACKOFF_CAP, "{pause:?}");
        assert!(pause <= BACKOFF_BASE * 2u32.pow(retry.min(5)));
    }
}

#[test]
fn quota_errors_say_when_to_come_back() {
    let mut failure = Failure::new(ErrorCode::QuotaError, "q");
    failure.retry_delay = Some(Duration::from_millis(26_500));
    assert_eq!(failure_error(failure).retry_after, Some(27));
    assert_eq!(
        no_key_error(NoKey::AllResting(Duration::from_millis(10))).retry_after,
        Some(1)
    );
}

#[test]
fn a_quota_naming_another_model_rests_the_model_asked_for_too() {
    let metrics = Arc::new(Metrics::new().unwrap());
    let keys = [secrecy::SecretString::from("key-0")];
    let context = UpstreamContext {
        base_url: "http://127.0.0.1:9".into(),
        keys: KeyPool::new(&keys, metrics.clone()),
        leak_guard: LeakGuard::new(&keys),
        metrics,
        retry_budget: RetryBudget::default(),
        stream_timeouts: StreamTimeouts {
            gap: Duration::from_secs(1),
            stall: Duration::from_secs(1),
        },
        egress: Default::default(),
        ownership: crate::ownership::Ownership::memory(16),
    };
    // The call named an alias; Gemini's quota answer names what it resolved to.
    let hits = [classify::QuotaHit {
        model: Some("gemini-2.5-flash".into()),
        scope: RestScope::Day,
    }];
    rest_for(&context, 0, "gemini-flash-latest", &hits, None);
    for model in ["gemini-flash-latest", "gemini-2.5-flash"] {
        assert!(
            matches!(
                context.keys.pick(model, &[], None),
                Err(NoKey::AllResting(_))
            ),
            "{model}"
        );
    }
    assert!(context.keys.pick("gemini-2.5-pro", &[], None).is_ok());
}
