//! The one table of error codes clients see, and the envelope they arrive in.
//!
//! Every layer (validation, key registry, upstream) has its own error type; each
//! converts into an [`ApiError`], whose [`ErrorCode`] decides the HTTP status.
//! Keeping code and status in one table is what makes them a stable contract.

use actix_web::http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use std::fmt;

macro_rules! error_codes {
    ($($variant:ident => $status:expr),+ $(,)?) => {
        /// A stable error code of SPEC §2; the name is what clients match on.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $($variant),+ }

        impl ErrorCode {
            /// Every code, for metrics that pre-declare their label values and for tests.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];

            /// The HTTP status that goes with the code.
            pub fn status(self) -> StatusCode {
                match self { $(ErrorCode::$variant => $status),+ }
            }
        }
    };
}

error_codes! {
    Unauthorized => StatusCode::UNAUTHORIZED,
    InvalidJson => StatusCode::BAD_REQUEST,
    InvalidRequest => StatusCode::BAD_REQUEST,
    PromptTooLong => StatusCode::BAD_REQUEST,
    InvalidModel => StatusCode::BAD_REQUEST,
    ModelAndKeyRequired => StatusCode::BAD_REQUEST,
    ModelNotAllowed => StatusCode::FORBIDDEN,
    OwnKeyNotAllowed => StatusCode::FORBIDDEN,
    PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
    UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
    RateLimited => StatusCode::TOO_MANY_REQUESTS,
    QuotaError => StatusCode::TOO_MANY_REQUESTS,
    ModelNotFound => StatusCode::NOT_FOUND,
    InvalidGeminiKey => StatusCode::BAD_REQUEST,
    PromptBlocked => StatusCode::UNPROCESSABLE_ENTITY,
    UpstreamBadRequest => StatusCode::BAD_REQUEST,
    UpstreamAuthError => StatusCode::BAD_GATEWAY,
    LocationNotSupported => StatusCode::BAD_GATEWAY,
    UpstreamUnavailable => StatusCode::SERVICE_UNAVAILABLE,
    NoServerKey => StatusCode::SERVICE_UNAVAILABLE,
    UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
    UpstreamError => StatusCode::BAD_GATEWAY,
    NotFound => StatusCode::NOT_FOUND,
    MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
    InternalError => StatusCode::INTERNAL_SERVER_ERROR,
}

impl ErrorCode {
    /// The wire name, e.g. `RATE_LIMITED`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::InvalidJson => "INVALID_JSON",
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::PromptTooLong => "PROMPT_TOO_LONG",
            ErrorCode::InvalidModel => "INVALID_MODEL",
            ErrorCode::ModelAndKeyRequired => "MODEL_AND_KEY_REQUIRED",
            ErrorCode::ModelNotAllowed => "MODEL_NOT_ALLOWED",
            ErrorCode::OwnKeyNotAllowed => "OWN_KEY_NOT_ALLOWED",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::QuotaError => "QUOTA_ERROR",
            ErrorCode::ModelNotFound => "MODEL_NOT_FOUND",
            ErrorCode::InvalidGeminiKey => "INVALID_GEMINI_KEY",
            ErrorCode::PromptBlocked => "PROMPT_BLOCKED",
            ErrorCode::UpstreamBadRequest => "UPSTREAM_BAD_REQUEST",
            ErrorCode::UpstreamAuthError => "UPSTREAM_AUTH_ERROR",
            ErrorCode::LocationNotSupported => "LOCATION_NOT_SUPPORTED",
            ErrorCode::UpstreamUnavailable => "UPSTREAM_UNAVAILABLE",
            ErrorCode::NoServerKey => "NO_SERVER_KEY",
            ErrorCode::UpstreamTimeout => "UPSTREAM_TIMEOUT",
            ErrorCode::UpstreamError => "UPSTREAM_ERROR",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::InternalError => "INTERNAL_ERROR",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error on its way to a client: a code, a message for people, and when to retry.
///
/// The message must never hold a key; constructors take only text the service wrote
/// or text already scrubbed of secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Whole seconds for `Retry-After`, already rounded up.
    pub retry_after: Option<u64>,
    /// The body shape the route's clients understand.
    pub shape: Shape,
}

/// How an error body is written: each surface speaks its clients' dialect, so
/// the official SDKs report the service's own errors properly (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shape {
    /// `{"result":"Failed","errors":[{code,message}]}` (`/gemini-proxy`, operations).
    #[default]
    Envelope,
    /// Google's `{"error":{code,message,status,details:[ErrorInfo]}}` (`/v1*/`).
    Google,
    /// OpenAI's `{"error":{message,type,code}}` (`/v1*/openai/`).
    OpenAi,
}

impl Shape {
    /// The shape for a request path.
    pub fn for_path(path: &str) -> Shape {
        let mut segments = path.trim_start_matches('/').split('/');
        match (segments.next(), segments.next()) {
            (Some("v1" | "v1beta" | "v1alpha"), Some("openai")) => Shape::OpenAi,
            (Some("v1" | "v1beta" | "v1alpha"), _) => Shape::Google,
            _ => Shape::Envelope,
        }
    }
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            retry_after: None,
            shape: Shape::Envelope,
        }
    }

    pub fn in_shape(mut self, shape: Shape) -> Self {
        self.shape = shape;
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    result: &'static str,
    errors: [EnvelopeError<'a>; 1],
}

#[derive(Serialize)]
struct EnvelopeError<'a> {
    code: &'static str,
    message: &'a str,
}

impl ApiError {
    /// The body in the error's shape.
    pub fn body(&self) -> Vec<u8> {
        match self.shape {
            Shape::Envelope => self.envelope_body(),
            Shape::Google => self.google_body(),
            Shape::OpenAi => self.openai_body(),
        }
    }

    /// Google's `google.rpc.Status` shape, with the code as `ErrorInfo.reason`.
    pub fn google_body(&self) -> Vec<u8> {
        let status = self.code.status();
        let body = serde_json::json!({"error": {
            "code": status.as_u16(),
            "message": self.message,
            "status": google_status(status),
            "details": [{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": self.code.as_str(),
                "domain": "gemini-proxy",
            }],
        }});
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// OpenAI's error shape, with the code as `error.code`.
    pub fn openai_body(&self) -> Vec<u8> {
        let status = self.code.status();
        let kind = match status.as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            400..=499 => "invalid_request_error",
            _ => "api_error",
        };
        let body = serde_json::json!({"error": {
            "message": self.message,
            "type": kind,
            "code": self.code.as_str(),
        }});
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// The body in the `/gemini-proxy` envelope shape.
    pub fn envelope_body(&self) -> Vec<u8> {
        let envelope = Envelope {
            result: "Failed",
            errors: [EnvelopeError {
                code: self.code.as_str(),
                message: &self.message,
            }],
        };
        // Serialising a struct of strings cannot fail.
        serde_json::to_vec(&envelope).unwrap_or_default()
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")));
        if let Some(seconds) = self.retry_after {
            response.insert_header((RETRY_AFTER, seconds));
        }
        response
            .extensions_mut()
            .insert(ResponseCode(self.code.as_str()));
        response.body(self.body())
    }
}

/// The `google.rpc.Code` name Google pairs with an HTTP status (SPEC §3).
fn google_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 413 | 415 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        405 => "UNIMPLEMENTED",
        422 => "INVALID_ARGUMENT",
        429 => "RESOURCE_EXHAUSTED",
        500 => "INTERNAL",
        502 | 503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}

/// Marks a response with the code it answered, for the access log and metrics.
#[derive(Clone, Copy, Debug)]
pub struct ResponseCode(pub &'static str);

/// Rounds a delay up to whole seconds, as `Retry-After` needs (26.5 s → 27).
pub fn whole_seconds_up(delay: std::time::Duration) -> u64 {
    let secs = delay.as_secs();
    if delay.subsec_nanos() > 0 {
        secs + 1
    } else {
        secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_distinct_wire_name() {
        let mut names: Vec<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len());
    }

    #[test]
    fn the_envelope_has_the_contract_shape() {
        let body = ApiError::new(ErrorCode::InvalidModel, "bad").envelope_body();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"result": "Failed", "errors": [{"code": "INVALID_MODEL", "message": "bad"}]})
        );
    }

    #[test]
    fn retry_after_rounds_up() {
        use std::time::Duration;
        assert_eq!(whole_seconds_up(Duration::from_millis(26_500)), 27);
        assert_eq!(whole_seconds_up(Duration::from_secs(26)), 26);
        assert_eq!(whole_seconds_up(Duration::from_millis(1)), 1);
    }
}
