//! Client authentication: the `X-API-KEY` header checked (and one rate-limit
//! token taken) by the key-registry actor, before any body is read.

use crate::errors::{ApiError, ErrorCode};
use crate::keys::{Admission, Admit, KeyHash, Refusal};
use crate::request_log::RequestLog;
use crate::startup::AppState;
use actix_web::HttpRequest;

/// The client-key header of `/gemini-proxy` (and of the native routes, first).
pub const CLIENT_KEY_HEADER: &str = "x-api-key";

/// The single, non-empty client key the request carries, if any.
pub fn client_key(req: &HttpRequest, header: &str) -> Option<String> {
    let mut values = req.headers().get_all(header);
    let value = values.next()?;
    // Two keys are ambiguous; refusing is safer than choosing one.
    if values.next().is_some() {
        return None;
    }
    let key = value.to_str().ok()?.trim();
    (!key.is_empty()).then(|| key.to_owned())
}

/// Identifies the client and takes one token from its bucket.
pub async fn admit(
    req: &HttpRequest,
    state: &AppState,
    key: Option<String>,
) -> Result<Admission, ApiError> {
    RequestLog::update(req, |log| log.api = true);
    let unauthorized = || {
        ApiError::new(
            ErrorCode::Unauthorized,
            "a valid client key is required in the X-API-KEY header",
        )
    };
    let key_hash = KeyHash::of(&key.ok_or_else(unauthorized)?);
    let refusal = match state.registry.send(Admit { key_hash }).await {
        Ok(Ok(admission)) => {
            RequestLog::update(req, |log| {
                log.client = Some(admission.client.name.clone());
                log.rate = Some(admission.rate);
            });
            return Ok(admission);
        }
        Ok(Err(refusal)) => refusal,
        Err(error) => {
            log::error!("the key registry is gone: {error}");
            return Err(ApiError::new(
                ErrorCode::InternalError,
                "the key registry is unavailable",
            ));
        }
    };
    match refusal {
        Refusal::UnknownKey => Err(unauthorized()),
        Refusal::Limited {
            client,
            rate,
            retry_after_secs,
        } => {
            state
                .metrics
                .rate_limited
                .with_label_values(&[&client.name])
                .inc();
            RequestLog::update(req, |log| {
                log.client = Some(client.name.clone());
                log.rate = Some(rate);
            });
            Err(ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "this client may send {} requests at once and {} a minute; retry in {retry_after_secs} s",
                    client.limits.burst, client.limits.requests_per_minute
                ),
            )
            .with_retry_after(retry_after_secs))
        }
    }
}
