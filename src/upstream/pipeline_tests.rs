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
