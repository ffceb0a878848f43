//! Keys Gemini refuses outright: invalid, suspended, or of a project where the API is
//! disabled. Every call with such a key fails the same way, on every route, until the
//! key's state changes, which is what a proxy with a key pool has to tell apart from a
//! request that is merely not allowed (Gemini's documented error behaviour).
//!
//! The suspended body quotes the key it was sent, so a proxy that relays it hands a
//! server key to a client; the mock quotes it in full so tests can catch that.

use super::errors::{ApiError, Detail, HelpLink, Metadata, SERVICE};

/// The project number the mock's key-level bodies name.
pub(crate) const PROJECT_NUMBER: &str = "123456789012";
const CONSUMER: &str = "projects/123456789012";
const ACTIVATION_URL: &str = "https://console.developers.google.com/apis/api/\
     generativelanguage.googleapis.com/overview?project=123456789012";

/// How Gemini refuses a key, set per key in `MockConfig::key_refusals`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyRefusal {
    /// 400 INVALID_ARGUMENT, ErrorInfo `API_KEY_INVALID`.
    Invalid,
    /// 403 PERMISSION_DENIED, ErrorInfo `CONSUMER_SUSPENDED`, quoting the key.
    Suspended,
    /// 403 PERMISSION_DENIED, ErrorInfo `SERVICE_DISABLED`, naming the project.
    ServiceDisabled,
    /// 403 PERMISSION_DENIED without any detail: a key Google reported as
    /// leaked (docs/gemini-wire.md#what-an-error-says-about-the-key).
    Leaked,
}

impl KeyRefusal {
    /// The name `/__mock/config` uses.
    pub(crate) fn name(self) -> &'static str {
        match self {
            KeyRefusal::Invalid => "invalid",
            KeyRefusal::Suspended => "suspended",
            KeyRefusal::ServiceDisabled => "service-disabled",
            KeyRefusal::Leaked => "leaked",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<KeyRefusal> {
        [
            KeyRefusal::Invalid,
            KeyRefusal::Suspended,
            KeyRefusal::ServiceDisabled,
            KeyRefusal::Leaked,
        ]
        .into_iter()
        .find(|r| r.name() == name)
    }

    /// Upstream's answer to a call made with `key`.
    pub(crate) fn error(self, key: &str) -> ApiError {
        match self {
            KeyRefusal::Invalid => ApiError::api_key_invalid(),
            KeyRefusal::Suspended => ApiError::consumer_suspended(key),
            KeyRefusal::ServiceDisabled => ApiError::service_disabled(),
            KeyRefusal::Leaked => ApiError::leaked_key(),
        }
    }
}

impl ApiError {
    pub fn consumer_suspended(key: &str) -> Self {
        let message = format!("Permission denied: Consumer 'api_key:{key}' has been suspended.");
        let mut e = ApiError::new(403, "PERMISSION_DENIED", message.clone());
        e.details.push(Detail::ErrorInfo {
            reason: "CONSUMER_SUSPENDED",
            domain: Some("googleapis.com"),
            metadata: Metadata::default()
                .with("service", SERVICE)
                .with("containerInfo", format!("api_key:{key}"))
                .with("consumer", CONSUMER),
        });
        e.details.push(Detail::LocalizedMessage {
            locale: "en-US",
            message,
        });
        e
    }

    /// The detail order and metadata keys of recent SERVICE_DISABLED bodies: ErrorInfo,
    /// LocalizedMessage, then the activation link.
    pub fn service_disabled() -> Self {
        let message = format!(
            "Generative Language API has not been used in project {PROJECT_NUMBER} before or \
             it is disabled. Enable it by visiting {ACTIVATION_URL} then retry."
        );
        let mut e = ApiError::new(403, "PERMISSION_DENIED", message.clone());
        e.details.push(Detail::ErrorInfo {
            reason: "SERVICE_DISABLED",
            domain: Some("googleapis.com"),
            metadata: Metadata::default()
                .with("serviceTitle", "Generative Language API")
                .with("consumer", CONSUMER)
                .with("containerInfo", PROJECT_NUMBER)
                .with("service", SERVICE)
                .with("activationUrl", ACTIVATION_URL),
        });
        e.details.push(Detail::LocalizedMessage {
            locale: "en-US",
            message,
        });
        e.details.push(Detail::Help {
            links: vec![HelpLink {
                description: "Google developers console API activation",
                url: ACTIVATION_URL,
            }],
        });
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::Wrap;

    #[test]
    fn names_round_trip_and_the_project_is_the_same_everywhere() {
        for r in [
            KeyRefusal::Invalid,
            KeyRefusal::Suspended,
            KeyRefusal::ServiceDisabled,
            KeyRefusal::Leaked,
        ] {
            assert_eq!(KeyRefusal::from_name(r.name()), Some(r));
        }
        assert_eq!(KeyRefusal::from_name("Invalid"), None);
        assert_eq!(CONSUMER, format!("projects/{PROJECT_NUMBER}"));
        assert!(ACTIVATION_URL.ends_with(&format!("?project={PROJECT_NUMBER}")));
        assert!(!ACTIVATION_URL.contains(' '));
    }

    #[test]
    fn a_suspended_key_is_quoted_in_full() {
        let body = ApiError::consumer_suspended("AIzaSy-whole-key").body(Wrap::Object);
        let text = std::str::from_utf8(&body).unwrap();
        assert_eq!(
            text.matches("api_key:AIzaSy-whole-key").count(),
            3,
            "{text}"
        );
    }
}
