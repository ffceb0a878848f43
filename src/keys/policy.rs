//! What the service knows about one client: its name, how its key is checked,
//! its limits and what it may do.

use crate::quota::Quotas;
use actix_web::http::header::HeaderValue;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::num::NonZeroU32;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// A client key's SHA-256; the registry keeps only these, never the keys.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    pub fn of(key: &str) -> KeyHash {
        KeyHash(Sha256::digest(key.as_bytes()).into())
    }

    /// Constant-time equality, so response timing says nothing about how close a guess was.
    pub fn ct_eq(&self, other: &KeyHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHash(…)")
    }
}

/// A client's sustained rate and burst (a GCRA token bucket).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub requests_per_minute: NonZeroU32,
    pub burst: NonZeroU32,
}

impl Default for Limits {
    /// docs/keys-file.md#fields: 60 requests a minute with a burst of 10 when nothing says otherwise.
    fn default() -> Self {
        Limits {
            requests_per_minute: NonZeroU32::new(60).unwrap_or(NonZeroU32::MIN),
            burst: NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN),
        }
    }
}

/// One client of the service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientPolicy {
    /// Shown in logs and metrics; never the key.
    pub name: Arc<str>,
    pub key_hash: KeyHash,
    pub limits: Limits,
    /// Model ids (without `models/`) this client may use; `None` = any valid model.
    pub models: Option<BTreeSet<String>>,
    /// May the client send its own Gemini key?
    pub allow_own_key: bool,
    /// Tokens per minute, requests and tokens per day (none = unlimited).
    pub quotas: Quotas,
}

impl ClientPolicy {
    pub fn may_use_model(&self, model_id: &str) -> bool {
        self.models.as_ref().is_none_or(|m| m.contains(model_id))
    }
}

/// Why a client may not make the call it asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("this client may not send its own Gemini key")]
    OwnKeyNotAllowed,
    #[error("the Gemini key is not a valid key")]
    InvalidOwnKey,
    #[error("this client may not use the model `{0}`")]
    ModelNotAllowed(String),
}

impl From<PolicyError> for crate::errors::ApiError {
    fn from(error: PolicyError) -> Self {
        use crate::errors::ErrorCode;
        let code = match error {
            PolicyError::OwnKeyNotAllowed => ErrorCode::OwnKeyNotAllowed,
            PolicyError::InvalidOwnKey => ErrorCode::InvalidRequest,
            PolicyError::ModelNotAllowed(_) => ErrorCode::ModelNotAllowed,
        };
        crate::errors::ApiError::new(code, error.to_string())
    }
}

impl ClientPolicy {
    /// Checks a call against this client's policy, in the documented order (docs/api.md#check-order)
    /// (own key, then model), for every route alike: `own_key` is the Gemini
    /// key the client sent, if any; `model` the id (without `models/`) the
    /// call uses, if any. Answers the client's own key as the header value to
    /// send upstream (marked sensitive), or `None` for a server key.
    pub fn authorize(
        &self,
        own_key: Option<&str>,
        model: Option<&str>,
    ) -> Result<Option<HeaderValue>, PolicyError> {
        let own_key = match own_key {
            None => None,
            Some(_) if !self.allow_own_key => return Err(PolicyError::OwnKeyNotAllowed),
            Some(key) => {
                let mut value =
                    HeaderValue::from_str(key).map_err(|_| PolicyError::InvalidOwnKey)?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        if let Some(model) = model {
            if !self.may_use_model(model) {
                return Err(PolicyError::ModelNotAllowed(model.to_owned()));
            }
        }
        Ok(own_key)
    }
}
