//! Turns every answer Gemini can give (and every way a call can fail) into one
//! outcome: a success, or a SPEC code plus what it means for retries and for the
//! key that was used. This is the only place that knows Gemini's error shapes
//! (gemini-api.md §5).

use super::gemini::{GenerateResponse, UsageMetadata};
use crate::errors::ErrorCode;
use awc::error::{ConnectError, PayloadError, SendRequestError};
use serde::Deserialize;
use std::time::Duration;

/// A key that gets Gemini's 429 without a `RetryInfo` rests this long (SPEC §5).
pub const DEFAULT_QUOTA_REST: Duration = Duration::from_secs(60);
/// Upstream messages passed on to clients are cut to this many characters.
const MAX_PASSED_MESSAGE_CHARS: usize = 500;
/// Finish reasons that mean "withheld for safety" when no text came back.
const SAFETY_FINISH_REASONS: &[&str] = &[
    "SAFETY",
    "RECITATION",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
];

/// Whose key the call used; decides who is at fault when Gemini rejects it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyOwner {
    Server,
    Client,
}

/// What an answer says about the key that was used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyVerdict {
    Fine,
    /// Quota exhausted: rest the key this long.
    Rest(Duration),
    /// Invalid, revoked or without permission.
    Rejected,
}

/// A successful generateContent answer, reduced to what the envelope shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub text: String,
    pub finish_reason: String,
    pub usage: UsageMetadata,
}

/// A failed attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub code: ErrorCode,
    /// For clients: written here, or Gemini's own message (which holds no key).
    pub message: String,
    /// Gemini's `RetryInfo` delay, if it gave one.
    pub retry_delay: Option<Duration>,
    /// Could the same call succeed if made again (500/503, refused, reset before a byte)?
    pub retryable: bool,
    pub key: KeyVerdict,
}

impl Failure {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            retry_delay: None,
            retryable: false,
            key: KeyVerdict::Fine,
        }
    }

    fn retryable(mut self) -> Self {
        self.retryable = true;
        self
    }
}

/// Classifies a complete HTTP answer to a generateContent call.
pub fn classify_answer(status: u16, body: &[u8], owner: KeyOwner) -> Result<Answer, Failure> {
    match status {
        200 => classify_success(body),
        201..=299 => Err(Failure::new(
            ErrorCode::UpstreamError,
            format!("Gemini answered with status {status} instead of 200"),
        )),
        300..=399 => Err(Failure::new(
            ErrorCode::UpstreamError,
            "Gemini answered with a redirect, which the service does not follow",
        )),
        _ => Err(classify_error(status, body, owner)),
    }
}

/// Classifies an answer whose status is not 200 (pass-through routes read only these).
pub fn classify_failure(status: u16, body: &[u8], owner: KeyOwner) -> Failure {
    match classify_answer(status, body, owner) {
        Err(failure) => failure,
        // A 200 is a success, whatever its body: pass-through does not judge it.
        Ok(_) => Failure::new(ErrorCode::UpstreamError, "unexpected success"),
    }
}

fn classify_success(body: &[u8]) -> Result<Answer, Failure> {
    let response: GenerateResponse = serde_json::from_slice(body).map_err(|_| {
        Failure::new(
            ErrorCode::UpstreamError,
            "Gemini's answer was not the JSON the API promises (malformed or truncated)",
        )
    })?;
    let usage = response.usage_metadata.unwrap_or_default();
    let Some(candidate) = response.candidates.and_then(|c| c.into_iter().next()) else {
        return Err(
            match response.prompt_feedback.and_then(|f| f.block_reason) {
                Some(reason) => Failure::new(
                    ErrorCode::PromptBlocked,
                    format!("Gemini blocked the prompt (block reason: {reason})"),
                ),
                None => Failure::new(ErrorCode::UpstreamError, "Gemini returned no candidates"),
            },
        );
    };
    let parts = candidate.content.map(|c| c.parts).unwrap_or_default();
    let text: String = parts
        .into_iter()
        .filter(|p| !p.thought)
        .filter_map(|p| p.text)
        .collect();
    let finish_reason = candidate
        .finish_reason
        .unwrap_or_else(|| "FINISH_REASON_UNSPECIFIED".to_owned());
    if text.is_empty() && SAFETY_FINISH_REASONS.contains(&finish_reason.as_str()) {
        return Err(Failure::new(
            ErrorCode::PromptBlocked,
            format!("Gemini returned no text (finish reason: {finish_reason})"),
        ));
    }
    Ok(Answer {
        text,
        finish_reason,
        usage,
    })
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorStatus,
}

#[derive(Deserialize, Default)]
struct ErrorStatus {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<ErrorDetail>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ErrorDetail {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    retry_delay: Option<String>,
}

/// Reads `{"error": …}`, also in the one-element array Gemini's stream and
/// OpenAI surfaces use; anything else gives an empty status.
fn parse_error_body(body: &[u8]) -> ErrorStatus {
    // Checked first: serde would read an array as a struct's fields in order.
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return serde_json::from_slice::<Vec<ErrorBody>>(body)
            .ok()
            .and_then(|list| list.into_iter().next())
            .map(|b| b.error)
            .unwrap_or_default();
    }
    serde_json::from_slice::<ErrorBody>(body)
        .map(|b| b.error)
        .unwrap_or_default()
}

fn classify_error(status: u16, body: &[u8], owner: KeyOwner) -> Failure {
    let error = parse_error_body(body);
    let message = passed_message(&error.message);
    let key_invalid = error
        .details
        .iter()
        .any(|d| d.reason.as_deref() == Some("API_KEY_INVALID"))
        || error.message.starts_with("API key not valid")
        || error.message.starts_with("API Key not found");
    match status {
        400 if key_invalid => rejected_key(owner),
        401 | 403 => rejected_key(owner),
        400 if error.status == "FAILED_PRECONDITION"
            && error
                .message
                .to_ascii_lowercase()
                .contains("location is not supported") =>
        {
            Failure::new(
                ErrorCode::LocationNotSupported,
                "Gemini refuses requests from the proxy's location; deploy it in a supported region",
            )
        }
        404 => Failure::new(
            ErrorCode::ModelNotFound,
            if message.is_empty() {
                "Gemini does not know this model".to_owned()
            } else {
                message
            },
        ),
        408 => Failure::new(ErrorCode::UpstreamTimeout, "Gemini timed out the request"),
        429 => {
            let delay = error
                .details
                .iter()
                .find_map(|d| d.retry_delay.as_deref().and_then(parse_retry_delay));
            let mut failure = Failure::new(
                ErrorCode::QuotaError,
                "Gemini's quota is exhausted; retry later",
            );
            failure.retry_delay = delay;
            failure.key = KeyVerdict::Rest(delay.unwrap_or(DEFAULT_QUOTA_REST));
            failure
        }
        400..=499 => Failure::new(
            ErrorCode::UpstreamBadRequest,
            if message.is_empty() {
                format!("Gemini refused the request with status {status}")
            } else {
                message
            },
        ),
        500 | 503 => Failure::new(
            ErrorCode::UpstreamUnavailable,
            format!("Gemini is unavailable (status {status})"),
        )
        .retryable(),
        504 => Failure::new(
            ErrorCode::UpstreamTimeout,
            "Gemini did not finish in time (DEADLINE_EXCEEDED)",
        ),
        _ => Failure::new(
            ErrorCode::UpstreamUnavailable,
            format!("Gemini is unavailable (status {status})"),
        ),
    }
}

fn rejected_key(owner: KeyOwner) -> Failure {
    let mut failure = match owner {
        KeyOwner::Client => Failure::new(
            ErrorCode::InvalidGeminiKey,
            "Gemini rejected the Gemini API key sent with the request",
        ),
        KeyOwner::Server => Failure::new(
            ErrorCode::UpstreamAuthError,
            "Gemini rejected the server's API key; the operator must replace it",
        ),
    };
    failure.key = KeyVerdict::Rejected;
    failure
}

fn passed_message(message: &str) -> String {
    let trimmed = message.trim();
    match trimmed.char_indices().nth(MAX_PASSED_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &trimmed[..cut]),
        None => trimmed.to_owned(),
    }
}

/// Parses `RetryInfo.retryDelay` as Gemini writes it: `"26s"`, `"26.5s"`.
pub fn parse_retry_delay(raw: &str) -> Option<Duration> {
    let seconds: f64 = raw.trim().strip_suffix('s')?.parse().ok()?;
    (0.0..1e9)
        .contains(&seconds)
        .then(|| Duration::from_secs_f64(seconds))
}

/// Classifies a call that failed before a complete answer arrived.
pub fn classify_send_error(error: &SendRequestError) -> Failure {
    match error {
        SendRequestError::Timeout => {
            Failure::new(ErrorCode::UpstreamTimeout, "Gemini did not answer in time")
        }
        SendRequestError::Connect(ConnectError::Timeout) => Failure::new(
            ErrorCode::UpstreamUnavailable,
            "could not connect to Gemini in time",
        )
        .retryable(),
        SendRequestError::Connect(_) => Failure::new(
            ErrorCode::UpstreamUnavailable,
            "could not connect to Gemini",
        )
        .retryable(),
        // The connection broke before any byte of an answer: safe to try again.
        SendRequestError::Send(_) | SendRequestError::H2(_) | SendRequestError::Response(_) => {
            Failure::new(
                ErrorCode::UpstreamUnavailable,
                "the connection to Gemini closed before an answer",
            )
            .retryable()
        }
        _ => Failure::new(ErrorCode::UpstreamError, "the call to Gemini failed"),
    }
}

/// Classifies a body that could not be read to its end.
pub fn classify_payload_error(error: &PayloadError) -> Failure {
    match error {
        PayloadError::Overflow => Failure::new(
            ErrorCode::UpstreamError,
            "Gemini's answer was larger than the service accepts",
        ),
        _ => Failure::new(
            ErrorCode::UpstreamError,
            "the connection to Gemini broke in the middle of the answer",
        ),
    }
}

/// The failure for an overall deadline that passed.
pub fn deadline_passed() -> Failure {
    Failure::new(
        ErrorCode::UpstreamTimeout,
        "Gemini did not answer within the upstream timeout",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(status: u16, body: &str, owner: KeyOwner) -> Failure {
        classify_answer(status, body.as_bytes(), owner).unwrap_err()
    }

    const BAD_KEY: &str = r#"{"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}}"#;
    const QUOTA: &str = r#"{"error": {"code": 429, "message": "You exceeded your current quota", "status": "RESOURCE_EXHAUSTED",
        "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "26.5s"}]}}"#;

    #[test]
    fn an_invalid_key_is_the_clients_or_the_operators_fault() {
        let client = error(400, BAD_KEY, KeyOwner::Client);
        assert_eq!(client.code, ErrorCode::InvalidGeminiKey);
        assert_eq!(client.key, KeyVerdict::Rejected);
        assert_eq!(
            error(400, BAD_KEY, KeyOwner::Server).code,
            ErrorCode::UpstreamAuthError
        );
        assert_eq!(
            error(403, "{}", KeyOwner::Server).code,
            ErrorCode::UpstreamAuthError
        );
        assert_eq!(
            error(401, "", KeyOwner::Client).code,
            ErrorCode::InvalidGeminiKey
        );
    }

    #[test]
    fn a_quota_answer_carries_its_retry_delay() {
        let failure = error(429, QUOTA, KeyOwner::Server);
        assert_eq!(failure.code, ErrorCode::QuotaError);
        assert_eq!(failure.retry_delay, Some(Duration::from_millis(26_500)));
        assert_eq!(failure.key, KeyVerdict::Rest(Duration::from_millis(26_500)));
        assert!(!failure.retryable);
        let array = format!("[{QUOTA}]");
        assert_eq!(
            error(429, &array, KeyOwner::Server).retry_delay,
            Some(Duration::from_millis(26_500))
        );
        assert_eq!(
            error(429, "{}", KeyOwner::Server).key,
            KeyVerdict::Rest(DEFAULT_QUOTA_REST)
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
            (201, "{}", ErrorCode::UpstreamError, false),
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
    fn successes_skip_thoughts_and_blocks_are_reported() {
        let answer = classify_answer(200, br#"{"candidates":[{"content":{"parts":[{"text":"hmm","thought":true},{"text":"Paris"}]},"finishReason":"STOP"}],
            "usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":1,"totalTokenCount":9,"thoughtsTokenCount":5}}"#, KeyOwner::Server).unwrap();
        assert_eq!(answer.text, "Paris");
        assert_eq!(answer.usage.total_token_count, 9);
        let empty_max_tokens = classify_answer(
            200,
            br#"{"candidates":[{"content":{"role":"model"},"finishReason":"MAX_TOKENS"}]}"#,
            KeyOwner::Server,
        )
        .unwrap();
        assert_eq!(
            (
                empty_max_tokens.text.as_str(),
                empty_max_tokens.finish_reason.as_str()
            ),
            ("", "MAX_TOKENS")
        );
        for body in [
            r#"{"promptFeedback":{"blockReason":"PROHIBITED_CONTENT"}}"#,
            r#"{"candidates":[{"finishReason":"SAFETY"}]}"#,
        ] {
            assert_eq!(
                error(200, body, KeyOwner::Server).code,
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
                error(200, body, KeyOwner::Server).code,
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
}
