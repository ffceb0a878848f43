//! Upstream's error bodies (`google.rpc.Status` in JSON), reproduced byte for byte where a
//! real capture exists (docs/gemini-wire.md#error-bodies), so the proxy's classification is tested
//! against what Google really sends. Structs, not `json!`, keep upstream's key order.

use actix_web::http::StatusCode;
use bytes::Bytes;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use super::reply::{pretty, pretty_bare, Reply, JSON};

pub(crate) const SERVICE: &str = "generativelanguage.googleapis.com";
const KEY_INVALID: &str = "API key not valid. Please pass a valid API key.";
const RATE_LIMITS: &str = "https://ai.google.dev/gemini-api/docs/rate-limits";

/// One upstream error: the `error` object of the body.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ApiError {
    pub code: u16,
    pub message: String,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<Detail>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "@type")]
pub(crate) enum Detail {
    #[serde(rename = "type.googleapis.com/google.rpc.ErrorInfo")]
    ErrorInfo {
        reason: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        domain: Option<&'static str>,
        metadata: Metadata,
    },
    #[serde(rename = "type.googleapis.com/google.rpc.LocalizedMessage")]
    LocalizedMessage {
        locale: &'static str,
        message: String,
    },
    #[serde(rename = "type.googleapis.com/google.rpc.QuotaFailure")]
    QuotaFailure { violations: Vec<QuotaViolation> },
    #[serde(rename = "type.googleapis.com/google.rpc.Help")]
    Help { links: Vec<HelpLink> },
    #[serde(rename = "type.googleapis.com/google.rpc.RetryInfo")]
    RetryInfo {
        #[serde(rename = "retryDelay")]
        retry_delay: String,
    },
}

/// ErrorInfo `metadata`: a string map whose key order differs from one reason to the
/// next in real bodies, so it is kept as ordered pairs rather than a struct.
#[derive(Clone, Debug, Default)]
pub(crate) struct Metadata(Vec<(&'static str, String)>);

impl Metadata {
    pub fn with(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.0.push((key, value.into()));
        self
    }
}

impl Serialize for Metadata {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct QuotaViolation {
    quota_metric: &'static str,
    quota_id: &'static str,
    quota_dimensions: QuotaDimensions,
    quota_value: &'static str,
}

/// Which quota a 429 says ran out. Gemini counts requests and input tokens per model,
/// per minute or per day; the window tells a client how long the wait really is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum QuotaWindow {
    /// The violation of the captured free-tier body: input tokens per minute.
    InputTokensPerMinute,
    RequestsPerMinute,
    RequestsPerDay,
}

impl QuotaWindow {
    /// `quotaMetric`, `quotaId` and `quotaValue` (free-tier limits of a flash model).
    fn violation(self) -> (&'static str, &'static str, &'static str) {
        const REQUESTS: &str =
            "generativelanguage.googleapis.com/generate_content_free_tier_requests";
        match self {
            QuotaWindow::InputTokensPerMinute => (
                "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count",
                "GenerateContentInputTokensPerModelPerMinute-FreeTier",
                "250000",
            ),
            QuotaWindow::RequestsPerMinute => (
                REQUESTS,
                "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                "10",
            ),
            QuotaWindow::RequestsPerDay => (
                REQUESTS,
                "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
                "250",
            ),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct QuotaDimensions {
    location: &'static str,
    model: String,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct HelpLink {
    pub description: &'static str,
    pub url: &'static str,
}

/// How the body is wrapped: upstream puts errors in a one-element array on the JSON-array
/// stream and on the OpenAI-compatible surface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wrap {
    Object,
    Array,
}

/// `{"error": {...}}`, the body around an `ApiError`.
#[derive(Serialize)]
pub(crate) struct Envelope<'a> {
    error: &'a ApiError,
}

impl ApiError {
    pub(crate) fn new(code: u16, status: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            status,
            details: Vec::new(),
        }
    }

    pub fn envelope(&self) -> Envelope<'_> {
        Envelope { error: self }
    }

    /// The error as a response body: pretty-printed, newline-terminated.
    pub fn body(&self, wrap: Wrap) -> Bytes {
        let env = self.envelope();
        match wrap {
            Wrap::Object => Bytes::from(pretty(&env)),
            Wrap::Array => {
                let mut buf = b"[".to_vec();
                buf.extend_from_slice(&pretty_bare(&env));
                buf.extend_from_slice(b"\n]\n");
                Bytes::from(buf)
            }
        }
    }

    pub fn reply(&self, wrap: Wrap) -> Reply {
        let status = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Reply::full(status, JSON, self.body(wrap))
    }

    /// No key at all.
    pub fn unregistered() -> Self {
        ApiError::new(
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). \
             Please use API Key or other form of API consumer identity to call this API.",
        )
    }

    /// `Authorization: Bearer` on a native route. `rpc` is e.g.
    /// `google.ai.generativelanguage.v1beta.GenerativeService.GenerateContent`.
    pub fn bearer_unsupported(rpc: String) -> Self {
        let mut e = ApiError::new(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, \
             login cookie or other valid authentication credential. See \
             https://developers.google.com/identity/sign-in/web/devconsole-project.",
        );
        e.details.push(Detail::ErrorInfo {
            reason: "ACCESS_TOKEN_TYPE_UNSUPPORTED",
            domain: None,
            metadata: Metadata::default()
                .with("method", rpc)
                .with("service", SERVICE),
        });
        e
    }

    pub fn api_key_invalid() -> Self {
        let mut e = ApiError::new(400, "INVALID_ARGUMENT", KEY_INVALID);
        e.details.push(Detail::ErrorInfo {
            reason: "API_KEY_INVALID",
            domain: Some("googleapis.com"),
            metadata: Metadata::default().with("service", SERVICE),
        });
        e.details.push(Detail::LocalizedMessage {
            locale: "en-US",
            message: KEY_INVALID.to_owned(),
        });
        e
    }

    /// The free-tier quota body, in the captured detail order (QuotaFailure, Help,
    /// RetryInfo); `retry_delay` `None` leaves out RetryInfo. `model` is the bare id.
    pub fn quota(window: QuotaWindow, model: &str, retry_delay: Option<String>) -> Self {
        let (quota_metric, quota_id, quota_value) = window.violation();
        let mut e = ApiError::new(
            429,
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota, please check your plan and billing details. \
             For more information on this error, head to: \
             https://ai.google.dev/gemini-api/docs/rate-limits.",
        );
        e.details.push(Detail::QuotaFailure {
            violations: vec![QuotaViolation {
                quota_metric,
                quota_id,
                quota_dimensions: QuotaDimensions {
                    location: "global",
                    model: model.to_owned(),
                },
                quota_value,
            }],
        });
        e.details.push(Detail::Help {
            links: vec![HelpLink {
                description: "Learn more about Gemini API quotas",
                url: RATE_LIMITS,
            }],
        });
        if let Some(retry_delay) = retry_delay {
            e.details.push(Detail::RetryInfo { retry_delay });
        }
        e
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(400, "INVALID_ARGUMENT", message)
    }

    pub fn geo_blocked() -> Self {
        ApiError::new(
            400,
            "FAILED_PRECONDITION",
            "User location is not supported for the API use.",
        )
    }

    /// The 403 of a key Google reported as leaked: no detail says it is about the key.
    pub fn leaked_key() -> Self {
        ApiError::new(
            403,
            "PERMISSION_DENIED",
            "Your API key was reported as leaked. Please use another API key.",
        )
    }

    pub fn forbidden() -> Self {
        ApiError::new(
            403,
            "PERMISSION_DENIED",
            "The caller does not have permission",
        )
    }

    /// A request naming a file of another project, an expired one or one that never
    /// existed: Gemini does not say which, and the key itself is fine.
    pub fn file_denied(id: &str) -> Self {
        ApiError::new(
            403,
            "PERMISSION_DENIED",
            format!("You do not have permission to access the File {id} or it may not exist."),
        )
    }

    /// `resource` is `models/x` or `tunedModels/x`; `version` as in the path.
    pub fn model_not_found(resource: &str, version: &str, method: &str) -> Self {
        ApiError::new(
            404,
            "NOT_FOUND",
            format!(
                "{resource} is not found for API version {version}, or is not supported for \
                 {method}. Call ListModels to see the list of available models and their \
                 supported methods."
            ),
        )
    }

    pub fn internal() -> Self {
        ApiError::new(
            500,
            "INTERNAL",
            "An internal error has occurred. Please retry or report in \
             https://developers.generativeai.google/guide/troubleshooting",
        )
    }

    pub fn overloaded() -> Self {
        ApiError::new(
            503,
            "UNAVAILABLE",
            "The model is overloaded. Please try again later.",
        )
    }

    /// Generic Google wording; no full Gemini 504 body has been captured.
    pub fn deadline_exceeded() -> Self {
        ApiError::new(
            504,
            "DEADLINE_EXCEEDED",
            "Deadline expired before operation could complete.",
        )
    }

    pub fn deadline_too_short(seconds: u64) -> Self {
        ApiError::invalid(format!(
            "Manually set deadline {seconds}s is too short. Minimum allowed deadline is 10s."
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_invalid_body_matches_the_capture() {
        let body = ApiError::api_key_invalid().body(Wrap::Object);
        let expected = r#"{
  "error": {
    "code": 400,
    "message": "API key not valid. Please pass a valid API key.",
    "status": "INVALID_ARGUMENT",
    "details": [
      {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {
          "service": "generativelanguage.googleapis.com"
        }
      },
      {
        "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
        "locale": "en-US",
        "message": "API key not valid. Please pass a valid API key."
      }
    ]
  }
}
"#;
        assert_eq!(std::str::from_utf8(&body).unwrap(), expected);
    }

    #[test]
    fn array_wrap_is_one_element() {
        let body = ApiError::overloaded().body(Wrap::Array);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v[0]["error"]["status"], "UNAVAILABLE");
        assert_eq!(v.as_array().map(Vec::len), Some(1));
    }
}
