//! Unit tests of `classify`, kept apart so the module itself stays short.

use super::*;

fn error(status: u16, body: &str, owner: KeyOwner) -> Failure {
    classify_failure(status, body.as_bytes(), owner)
}

fn with_reason(status: u16, reason: &str) -> String {
    format!(
        r#"{{"error": {{"code": {status}, "message": "m", "status": "PERMISSION_DENIED",
        "details": [{{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "{reason}", "domain": "googleapis.com"}}]}}}}"#
    )
}

const QUOTA: &str = r#"{"error": {"code": 429, "message": "You exceeded your current quota", "status": "RESOURCE_EXHAUSTED",
    "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
        {"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "quotaDimensions": {"location": "global", "model": "gemini-2.5-pro"}}]},
      {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "26.5s"}]}}"#;

#[test]
fn only_key_reasons_refuse_a_key() {
    let client = error(400, &with_reason(400, "API_KEY_INVALID"), KeyOwner::Client);
    assert_eq!(
        (client.code, client.key),
        (ErrorCode::InvalidGeminiKey, KeyVerdict::Refused)
    );
    let server = error(400, &with_reason(400, "API_KEY_INVALID"), KeyOwner::Server);
    assert_eq!(
        (server.code, server.key),
        (ErrorCode::UpstreamAuthError, KeyVerdict::Refused)
    );
    assert_eq!(error(401, "", KeyOwner::Server).key, KeyVerdict::Refused);
    for reason in KEY_LEVEL_403_REASONS {
        let failure = error(403, &with_reason(403, reason), KeyOwner::Server);
        assert_eq!(failure.key, KeyVerdict::Refused, "{reason}");
        assert_eq!(failure.code, ErrorCode::UpstreamAuthError, "{reason}");
    }
}

#[test]
fn a_403_about_the_request_is_not_about_the_key() {
    let file = r#"{"error": {"code": 403, "message": "You do not have permission to access the File abc or it may not exist.", "status": "PERMISSION_DENIED"}}"#;
    for body in [
        file,
        "{}",
        "not json",
        &with_reason(403, "ACCESS_TOKEN_SCOPE_INSUFFICIENT"),
    ] {
        let failure = error(403, body, KeyOwner::Server);
        // Not a refusal: at most a reason to ask the key by itself.
        assert_eq!(failure.key, KeyVerdict::Suspect, "{body}");
        assert_eq!(
            error(403, body, KeyOwner::Client).key,
            KeyVerdict::Fine,
            "{body}"
        );
        assert_eq!(failure.code, ErrorCode::UpstreamForbidden, "{body}");
        assert!(!failure.retryable);
    }
    assert!(error(403, file, KeyOwner::Server)
        .message
        .starts_with("You do not have permission"));
    // A 400 that merely says the key is bad, without the reason, could be
    // Gemini echoing a client's text: not a verdict.
    let echoed = r#"{"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT"}}"#;
    assert_eq!(error(400, echoed, KeyOwner::Server).key, KeyVerdict::Fine);
}

#[test]
fn a_quota_answer_names_its_model_and_window() {
    let failure = error(429, QUOTA, KeyOwner::Server);
    assert_eq!(failure.code, ErrorCode::QuotaError);
    assert_eq!(failure.retry_delay, Some(Duration::from_millis(26_500)));
    assert_eq!(
        failure.key,
        KeyVerdict::Rest(vec![QuotaHit {
            model: Some("gemini-2.5-pro".into()),
            scope: RestScope::Minute
        }])
    );
    assert!(!failure.retryable);
    let day = QUOTA.replace("PerMinute", "PerDay");
    assert_eq!(
        error(429, &format!("[{day}]"), KeyOwner::Server).key,
        KeyVerdict::Rest(vec![QuotaHit {
            model: Some("gemini-2.5-pro".into()),
            scope: RestScope::Day
        }])
    );
    // A token-rate quota: one large request gets it on every key.
    let tokens = QUOTA.replace(
        "GenerateRequestsPerMinutePerProjectPerModel",
        "GenerateContentInputTokensPerModelPerMinute",
    );
    assert_eq!(error(429, &tokens, KeyOwner::Server).key, KeyVerdict::Busy);
    assert_eq!(
        error(429, "{}", KeyOwner::Server).key,
        KeyVerdict::Rest(vec![QuotaHit {
            model: None,
            scope: RestScope::Minute
        }])
    );
}

#[test]
fn statuses_map_to_their_codes() {
    let geo = r#"{"error": {"code": 400, "message": "User location is not supported for the API use.", "status": "FAILED_PRECONDITION"}}"#;
    let cases = [
        (400, geo, ErrorCode::LocationNotSupported, false),
        (
            400,
            r#"{"error":{"message":"Request contains an invalid argument.","status":"INVALID_ARGUMENT"}}"#,
            ErrorCode::UpstreamBadRequest,
            false,
        ),
        (404, "{}", ErrorCode::ModelNotFound, false),
        (500, "{}", ErrorCode::UpstreamUnavailable, true),
        (503, "not json", ErrorCode::UpstreamUnavailable, true),
        (502, "", ErrorCode::UpstreamUnavailable, false),
        (504, "{}", ErrorCode::UpstreamTimeout, false),
        (302, "", ErrorCode::UpstreamError, false),
    ];
    for (status, body, code, retryable) in cases {
        let failure = error(status, body, KeyOwner::Server);
        assert_eq!(
            (failure.code, failure.retryable),
            (code, retryable),
            "status {status}"
        );
    }
}

#[test]
fn answers_skip_thoughts_and_blocks_are_reported() {
    let answer = read_answer(br#"{"candidates":[{"content":{"parts":[{"text":"hmm","thought":true},{"text":"Paris"}]},"finishReason":"STOP"}],
        "usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":1,"totalTokenCount":9,"thoughtsTokenCount":5}}"#).unwrap();
    assert_eq!(answer.text, "Paris");
    assert_eq!(answer.usage.total_token_count, 9);
    let empty = read_answer(
        br#"{"candidates":[{"content":{"role":"model"},"finishReason":"MAX_TOKENS"}]}"#,
    )
    .unwrap();
    assert_eq!(
        (empty.text.as_str(), empty.finish_reason.as_str()),
        ("", "MAX_TOKENS")
    );
    for body in [
        r#"{"promptFeedback":{"blockReason":"PROHIBITED_CONTENT"}}"#,
        r#"{"candidates":[{"finishReason":"SAFETY"}]}"#,
    ] {
        assert_eq!(
            read_answer(body.as_bytes()).unwrap_err().code,
            ErrorCode::PromptBlocked,
            "{body}"
        );
    }
    for body in [
        r#"{"candidates":[]}"#,
        r#"{"candidates":[{"content":"#,
        "<html>",
    ] {
        assert_eq!(
            read_answer(body.as_bytes()).unwrap_err().code,
            ErrorCode::UpstreamError,
            "{body}"
        );
    }
}

#[test]
fn retry_delays_parse_as_gemini_writes_them() {
    assert_eq!(parse_retry_delay("26s"), Some(Duration::from_secs(26)));
    assert_eq!(parse_retry_delay("1.5s"), Some(Duration::from_millis(1500)));
    assert_eq!(parse_retry_delay("26"), None);
    assert_eq!(parse_retry_delay("-1s"), None);
    assert_eq!(parse_retry_delay("NaNs"), None);
}

#[test]
fn only_a_certificate_rustls_refused_is_a_refused_certificate() {
    use awc::error::{ConnectError, SendRequestError};
    use std::io;
    let tls = |error: rustls::Error| {
        SendRequestError::Connect(ConnectError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            error,
        )))
    };
    let unknown_issuer = tls(rustls::Error::InvalidCertificate(
        rustls::CertificateError::UnknownIssuer,
    ));
    assert!(is_refused_certificate(&unknown_issuer));
    let no_alpn = tls(rustls::Error::NoApplicationProtocol);
    assert!(!is_refused_certificate(&no_alpn));
    let refused =
        SendRequestError::Connect(ConnectError::Io(io::ErrorKind::ConnectionRefused.into()));
    assert!(!is_refused_certificate(&refused));
    assert!(!is_refused_certificate(&SendRequestError::Timeout));
    // Still the same code as any connection failure.
    assert_eq!(
        classify_send_error(&unknown_issuer).code,
        ErrorCode::UpstreamUnavailable
    );
}

#[test]
fn a_refused_connection_is_retried_but_a_proxy_refusing_credentials_is_not() {
    let io = |kind| SendRequestError::Connect(ConnectError::Io(std::io::Error::new(kind, "x")));
    let refused = classify_send_error(&io(std::io::ErrorKind::ConnectionRefused));
    assert_eq!(refused.code, ErrorCode::UpstreamUnavailable);
    assert!(refused.retryable);
    let denied = classify_send_error(&io(std::io::ErrorKind::PermissionDenied));
    assert_eq!(denied.code, ErrorCode::UpstreamUnavailable);
    assert!(!denied.retryable);
}
