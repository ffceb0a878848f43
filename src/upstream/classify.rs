//! Turns every answer Gemini can give (and every way a call can fail) into one
//! outcome: a success, or an error code plus what it means for retries and for
//! the key that was used. This is the only place that knows Gemini's error
//! shapes (docs/upstream.md).
//!
//! What an answer says about the key is read narrowly, because the server keys
//! are shared: only a 401, a 400 whose `ErrorInfo.reason` is `API_KEY_INVALID`
//! and a 403 whose reason is about the key or its project refuse the key.
//! Every other 403 is about the request (another project's file, a tuned
//! model the project may not use): anyone can provoke one, so it must never
//! cost a key.

use super::gemini::{GenerateResponse, UsageMetadata};
use super::key_pool::RestScope;
use crate::errors::ErrorCode;
use actix_web::error::ParseError;
use awc::error::{ConnectError, PayloadError, SendRequestError};
use serde::Deserialize;
use std::time::Duration;

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
/// `ErrorInfo` reasons of a 403 that is about the key or its project, so
/// every call with that key fails the same way.
const KEY_LEVEL_403_REASONS: &[&str] = &[
    "API_KEY_INVALID",
    "API_KEY_SERVICE_BLOCKED",
    "API_KEY_HTTP_REFERRER_BLOCKED",
    "API_KEY_IP_ADDRESS_BLOCKED",
    "API_KEY_ANDROID_APP_BLOCKED",
    "API_KEY_IOS_APP_BLOCKED",
    "CONSUMER_SUSPENDED",
    "SERVICE_DISABLED",
    "BILLING_DISABLED",
];

/// Whose key the call used; decides who is at fault when Gemini refuses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyOwner {
    Server,
    Client,
}

/// A quota a 429 says the key has used up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaHit {
    /// `QuotaFailure.violations[].quotaDimensions.model`; `None`: the request's.
    pub model: Option<String>,
    pub scope: RestScope,
}

/// What an answer says about the key that was used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyVerdict {
    /// Nothing: the answer is about this request.
    Fine,
    /// Request quotas used up; rest the key for those models.
    Rest(Vec<QuotaHit>),
    /// A token-rate quota refused this request. One large request can cause
    /// that on every key, so it rests none; another key may still take it.
    Busy,
    /// A 403 without a key-level reason: most likely about the request (a
    /// file of another project), but Gemini also refuses some keys that way
    /// (a key reported as leaked). A probe of the key alone decides.
    Suspect,
    /// Refused at key level: invalid, suspended, its project disabled.
    Refused,
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
    /// For clients: written here, or Gemini's own message (checked for keys
    /// before it leaves).
    pub message: String,
    /// Gemini's `RetryInfo` delay, if it gave one.
    pub retry_delay: Option<Duration>,
    /// Could the same call succeed if made again (500/503, refused, reset before a byte)?
    pub retryable: bool,
    pub key: KeyVerdict,
}

impl Failure {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            retry_delay: None,
            retryable: false,
            key: KeyVerdict::Fine,
        }
    }

    pub(crate) fn retryable(mut self) -> Self {
        self.retryable = true;
        self
    }
}

/// Classifies an answer whose status is not 2xx.
pub fn classify_failure(status: u16, body: &[u8], owner: KeyOwner) -> Failure {
    match status {
        300..=399 => Failure::new(
            ErrorCode::UpstreamError,
            "Gemini answered with a redirect, which the service does not follow",
        ),
        100..=299 => Failure::new(
            ErrorCode::UpstreamError,
            format!("Gemini answered with status {status}"),
        ),
        _ => classify_error(status, body, owner),
    }
}

/// Reads a 200 answer to generateContent for `/gemini-proxy`: the text of the
/// first candidate, or why there is none.
pub fn read_answer(body: &[u8]) -> Result<Answer, Failure> {
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
    #[serde(default)]
    violations: Vec<QuotaViolation>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct QuotaViolation {
    #[serde(default)]
    quota_id: String,
    #[serde(default)]
    quota_dimensions: QuotaDimensions,
}

#[derive(Deserialize, Default)]
struct QuotaDimensions {
    #[serde(default)]
    model: Option<String>,
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
    // Whole here: the pipeline checks it for server keys before shortening it.
    let message = error.message.trim().to_owned();
    let has_reason = |reasons: &[&str]| {
        error
            .details
            .iter()
            .filter_map(|d| d.reason.as_deref())
            .any(|r| reasons.contains(&r))
    };
    let key_level = match status {
        401 => true,
        400 => has_reason(&["API_KEY_INVALID"]),
        403 => has_reason(KEY_LEVEL_403_REASONS),
        _ => false,
    };
    if key_level {
        return refused_key(owner);
    }
    let with_message = |code: ErrorCode, fallback: String| {
        Failure::new(
            code,
            if message.is_empty() {
                fallback
            } else {
                message.clone()
            },
        )
    };
    match status {
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
        403 => {
            let mut failure = with_message(
                ErrorCode::UpstreamForbidden,
                "Gemini refused this request (permission denied)".to_owned(),
            );
            if owner == KeyOwner::Server {
                failure.key = KeyVerdict::Suspect;
            }
            failure
        }
        404 => with_message(
            ErrorCode::ModelNotFound,
            "Gemini does not know this model".to_owned(),
        ),
        408 => Failure::new(ErrorCode::UpstreamTimeout, "Gemini timed out the request"),
        429 => quota(&error),
        400..=499 => with_message(
            ErrorCode::UpstreamBadRequest,
            format!("Gemini refused the request with status {status}"),
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

/// A 429: which quotas, for which models, and Gemini's `RetryInfo`.
fn quota(error: &ErrorStatus) -> Failure {
    let delay = error
        .details
        .iter()
        .find_map(|d| d.retry_delay.as_deref().and_then(parse_retry_delay));
    let mut hits: Vec<QuotaHit> = Vec::new();
    let mut token_quotas = 0u32;
    for violation in error.details.iter().flat_map(|d| &d.violations) {
        // A token quota (`…InputTokens…`) can be hit by one large request on
        // a key that is otherwise fine: it rests nothing.
        if violation.quota_id.contains("Token") {
            token_quotas += 1;
            continue;
        }
        let scope = if violation.quota_id.contains("PerDay") {
            RestScope::Day
        } else {
            RestScope::Minute
        };
        let model = violation
            .quota_dimensions
            .model
            .as_deref()
            .map(|m| m.trim_start_matches("models/").to_owned());
        match hits.iter_mut().find(|h| h.model == model) {
            // A model over both its minute and its day quota waits for the day.
            Some(hit) if scope == RestScope::Day => hit.scope = RestScope::Day,
            Some(_) => {}
            None => hits.push(QuotaHit { model, scope }),
        }
    }
    let verdict = match (hits.is_empty(), token_quotas) {
        (true, 1..) => KeyVerdict::Busy,
        // No QuotaFailure at all: the request's model, for the default rest.
        (true, 0) => KeyVerdict::Rest(vec![QuotaHit {
            model: None,
            scope: RestScope::Minute,
        }]),
        (false, _) => KeyVerdict::Rest(hits),
    };
    let mut failure = Failure::new(
        ErrorCode::QuotaError,
        "Gemini's quota is exhausted; retry later",
    );
    failure.retry_delay = delay;
    failure.key = verdict;
    failure
}

fn refused_key(owner: KeyOwner) -> Failure {
    let mut failure = match owner {
        KeyOwner::Client => Failure::new(
            ErrorCode::InvalidGeminiKey,
            "Gemini refused the Gemini API key sent with the request",
        ),
        KeyOwner::Server => Failure::new(
            ErrorCode::UpstreamAuthError,
            "Gemini refused the server's API key; the operator must replace it",
        ),
    };
    failure.key = KeyVerdict::Refused;
    failure
}

/// A Gemini message cut to what a client is shown.
pub fn shorten(message: &str) -> String {
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
        // An egress proxy that refused the service's credentials will refuse
        // them again: not worth a retry (docs/upstream.md#egress-proxies).
        SendRequestError::Connect(ConnectError::Io(e))
            if e.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            Failure::new(
                ErrorCode::UpstreamUnavailable,
                "could not connect to Gemini",
            )
        }
        SendRequestError::Connect(_) => Failure::new(
            ErrorCode::UpstreamUnavailable,
            "could not connect to Gemini",
        )
        .retryable(),
        // The connection broke before any byte of an answer: safe to try again.
        SendRequestError::Send(_)
        | SendRequestError::H2(_)
        | SendRequestError::Response(ParseError::Io(_)) => Failure::new(
            ErrorCode::UpstreamUnavailable,
            "the connection to Gemini closed before an answer",
        )
        .retryable(),
        // Bytes came back, but not HTTP: whatever answers there is not Gemini,
        // and asking again would get the same.
        SendRequestError::Response(_) => Failure::new(
            ErrorCode::UpstreamError,
            "the upstream answered with something that is not HTTP",
        ),
        _ => Failure::new(ErrorCode::UpstreamError, "the call to Gemini failed"),
    }
}

/// Whether the call failed because rustls refused the upstream's certificate
/// (an unknown issuer, say). Worth a warning that names `UPSTREAM_CA_FILE`:
/// behind a TLS-inspecting egress, every call fails this way until its root is there.
pub fn is_refused_certificate(error: &SendRequestError) -> bool {
    let SendRequestError::Connect(ConnectError::Io(io)) = error else {
        return false;
    };
    // tokio-rustls hands the handshake's rustls error inside the io::Error.
    io.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|tls| matches!(tls, rustls::Error::InvalidCertificate(_)))
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
#[path = "classify_tests.rs"]
mod tests;
