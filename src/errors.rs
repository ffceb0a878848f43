//! The one table of error codes clients see, and the shapes they arrive in.
//!
//! Every layer (validation, key registry, upstream) has its own error type; each
//! converts into an [`ApiError`], whose [`ErrorCode`] row in the table below
//! gives the HTTP status, Google's `status` name and OpenAI's error `type`.
//! Keeping them in one table is what makes them a stable contract. Handlers
//! only ever return an [`ApiError`]; the shape of its body (envelope, Google,
//! OpenAI) is chosen once, from the route, by the observing middleware.

use actix_web::http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use std::fmt;

macro_rules! error_codes {
    ($($variant:ident => ($name:literal, $status:ident, $google:literal, $openai:literal)),+ $(,)?) => {
        /// A stable error code; the wire name is what clients match on.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $($variant),+ }

        impl ErrorCode {
            /// Every code, for metrics that pre-declare their label values and for tests.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];

            /// The wire name, e.g. `RATE_LIMITED`.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $name),+ }
            }

            /// The HTTP status that goes with the code.
            pub fn status(self) -> StatusCode {
                match self { $(ErrorCode::$variant => StatusCode::$status),+ }
            }

            /// The `google.rpc.Code` name Google pairs with the status.
            pub fn google_status(self) -> &'static str {
                match self { $(ErrorCode::$variant => $google),+ }
            }

            /// OpenAI's error `type` for the status.
            pub fn openai_type(self) -> &'static str {
                match self { $(ErrorCode::$variant => $openai),+ }
            }
        }
    };
}

error_codes! {
    // code                 wire name                  HTTP status             Google status         OpenAI type
    Unauthorized         => ("UNAUTHORIZED",           UNAUTHORIZED,           "UNAUTHENTICATED",    "authentication_error"),
    InvalidJson          => ("INVALID_JSON",           BAD_REQUEST,            "INVALID_ARGUMENT",   "invalid_request_error"),
    InvalidRequest       => ("INVALID_REQUEST",        BAD_REQUEST,            "INVALID_ARGUMENT",   "invalid_request_error"),
    PromptTooLong        => ("PROMPT_TOO_LONG",        BAD_REQUEST,            "INVALID_ARGUMENT",   "invalid_request_error"),
    InvalidModel         => ("INVALID_MODEL",          BAD_REQUEST,            "INVALID_ARGUMENT",   "invalid_request_error"),
    ModelAndKeyRequired  => ("MODEL_AND_KEY_REQUIRED", BAD_REQUEST,            "INVALID_ARGUMENT",   "invalid_request_error"),
    ModelNotAllowed      => ("MODEL_NOT_ALLOWED",      FORBIDDEN,              "PERMISSION_DENIED",  "permission_error"),
    OwnKeyNotAllowed     => ("OWN_KEY_NOT_ALLOWED",    FORBIDDEN,              "PERMISSION_DENIED",  "permission_error"),
    PayloadTooLarge      => ("PAYLOAD_TOO_LARGE",      PAYLOAD_TOO_LARGE,      "INVALID_ARGUMENT",   "invalid_request_error"),
    UnsupportedMediaType => ("UNSUPPORTED_MEDIA_TYPE", UNSUPPORTED_MEDIA_TYPE, "INVALID_ARGUMENT",   "invalid_request_error"),
    RateLimited          => ("RATE_LIMITED",           TOO_MANY_REQUESTS,      "RESOURCE_EXHAUSTED", "rate_limit_error"),
    QuotaError           => ("QUOTA_ERROR",            TOO_MANY_REQUESTS,      "RESOURCE_EXHAUSTED", "rate_limit_error"),
    ModelNotFound        => ("MODEL_NOT_FOUND",        NOT_FOUND,              "NOT_FOUND",          "not_found_error"),
    InvalidGeminiKey     => ("INVALID_GEMINI_KEY",     BAD_REQUEST,            "INVALID_ARGUMENT",   "invalid_request_error"),
    PromptBlocked        => ("PROMPT_BLOCKED",         UNPROCESSABLE_ENTITY,   "INVALID_ARGUMENT",   "invalid_request_error"),
    UpstreamBadRequest   => ("UPSTREAM_BAD_REQUEST",   BAD_REQUEST,            "INVALID_ARGUMENT",   "invalid_request_error"),
    UpstreamAuthError    => ("UPSTREAM_AUTH_ERROR",    BAD_GATEWAY,            "UNAVAILABLE",        "api_error"),
    UpstreamForbidden    => ("UPSTREAM_FORBIDDEN",     FORBIDDEN,              "PERMISSION_DENIED",  "permission_error"),
    LocationNotSupported => ("LOCATION_NOT_SUPPORTED", BAD_GATEWAY,            "UNAVAILABLE",        "api_error"),
    UpstreamUnavailable  => ("UPSTREAM_UNAVAILABLE",   SERVICE_UNAVAILABLE,    "UNAVAILABLE",        "api_error"),
    NoServerKey          => ("NO_SERVER_KEY",          SERVICE_UNAVAILABLE,    "UNAVAILABLE",        "api_error"),
    UpstreamTimeout      => ("UPSTREAM_TIMEOUT",       GATEWAY_TIMEOUT,        "DEADLINE_EXCEEDED",  "api_error"),
    UpstreamError        => ("UPSTREAM_ERROR",         BAD_GATEWAY,            "UNAVAILABLE",        "api_error"),
    HeadersTooLarge      => ("HEADERS_TOO_LARGE",      REQUEST_HEADER_FIELDS_TOO_LARGE, "INVALID_ARGUMENT", "invalid_request_error"),
    NotFound             => ("NOT_FOUND",              NOT_FOUND,              "NOT_FOUND",          "not_found_error"),
    MethodNotAllowed     => ("METHOD_NOT_ALLOWED",     METHOD_NOT_ALLOWED,     "UNIMPLEMENTED",      "invalid_request_error"),
    InternalError        => ("INTERNAL_ERROR",         INTERNAL_SERVER_ERROR,  "INTERNAL",           "api_error"),
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
}

/// How an error body is written: each surface speaks its clients' dialect, so
/// the official SDKs report the service's own errors properly.
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
    /// The shape of a route, from its path: unknown paths under `/v1*/` answer
    /// in Google's shape too, so an SDK that calls a route the service lacks
    /// still reports the error properly.
    pub fn for_path(path: &str) -> Shape {
        let mut segments = path.trim_start_matches('/').split('/');
        // The Live API's WebSocket path is the SDKs' too.
        let trimmed = path.trim_start_matches('/');
        if ["ws/", "upload/", "download/"]
            .iter()
            .any(|prefix| trimmed.starts_with(prefix))
        {
            return Shape::Google;
        }
        // Any version-like first segment (`v1`, `v2beta`), served or not: a
        // client that asks for a version the service lacks is still an SDK.
        let versioned = segments.next().is_some_and(|first| {
            first.len() > 1
                && first.starts_with('v')
                && first.as_bytes()[1].is_ascii_digit()
                && first.bytes().all(|b| b.is_ascii_alphanumeric())
        });
        match (versioned, segments.next()) {
            (true, Some("openai")) => Shape::OpenAi,
            (true, _) => Shape::Google,
            (false, _) => Shape::Envelope,
        }
    }
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The body in `shape`.
    pub fn body(&self, shape: Shape) -> Vec<u8> {
        let status = self.code.status().as_u16();
        let value = match shape {
            Shape::Envelope => serde_json::to_value(Envelope {
                result: "Failed",
                errors: [EnvelopeError {
                    code: self.code.as_str(),
                    message: &self.message,
                }],
            }),
            // The code goes in `ErrorInfo.reason`, where the SDKs keep it.
            Shape::Google => Ok(serde_json::json!({"error": {
                "code": status,
                "message": self.message,
                "status": self.code.google_status(),
                "details": [{
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": self.code.as_str(),
                    "domain": "gemini-proxy",
                }],
            }})),
            Shape::OpenAi => Ok(serde_json::json!({"error": {
                "message": self.message,
                "type": self.code.openai_type(),
                "code": self.code.as_str(),
            }})),
        };
        // Serialising strings and numbers cannot fail.
        value
            .and_then(|v| serde_json::to_vec(&v))
            .unwrap_or_default()
    }

    /// The whole response in `shape`, marked with its code for the access log.
    pub fn response(&self, shape: Shape) -> HttpResponse {
        let mut response = HttpResponse::build(self.code.status());
        response.insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")));
        if let Some(seconds) = self.retry_after {
            response.insert_header((RETRY_AFTER, seconds));
        }
        response
            .extensions_mut()
            .insert(ResponseCode(self.code.as_str()));
        response.body(self.body(shape))
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

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    /// The envelope; the observing middleware writes it again in the route's
    /// shape when the route is not `/gemini-proxy`'s kind.
    fn error_response(&self) -> HttpResponse {
        self.response(Shape::Envelope)
    }
}

/// Marks a response with the code it answered, for the access log and metrics.
/// Every response the service writes carries one, so nothing downstream ever
/// works a code out from an HTTP status.
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
    fn google_status_follows_the_http_status() {
        for code in ErrorCode::ALL {
            let expected = match code.status().as_u16() {
                400 | 413 | 415 | 422 | 431 => "INVALID_ARGUMENT",
                401 => "UNAUTHENTICATED",
                403 => "PERMISSION_DENIED",
                404 => "NOT_FOUND",
                405 => "UNIMPLEMENTED",
                429 => "RESOURCE_EXHAUSTED",
                500 => "INTERNAL",
                502 | 503 => "UNAVAILABLE",
                504 => "DEADLINE_EXCEEDED",
                other => panic!("{code}: no Google status for {other}"),
            };
            assert_eq!(code.google_status(), expected, "{code}");
        }
    }

    #[test]
    fn each_shape_carries_the_code() {
        let error = ApiError::new(ErrorCode::InvalidModel, "bad");
        let body = |shape| serde_json::from_slice::<serde_json::Value>(&error.body(shape)).unwrap();
        assert_eq!(
            body(Shape::Envelope),
            serde_json::json!({"result": "Failed", "errors": [{"code": "INVALID_MODEL", "message": "bad"}]})
        );
        let google = body(Shape::Google);
        assert_eq!(google["error"]["code"], 400);
        assert_eq!(google["error"]["status"], "INVALID_ARGUMENT");
        assert_eq!(google["error"]["details"][0]["reason"], "INVALID_MODEL");
        assert_eq!(
            body(Shape::OpenAi),
            serde_json::json!({"error": {"message": "bad", "type": "invalid_request_error", "code": "INVALID_MODEL"}})
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
