//! Client authentication: the `X-API-KEY` header checked (and one rate-limit
//! token taken) by the key-registry actor, before any body is read.

use crate::errors::{ApiError, ErrorCode};
use crate::keys::{Admission, Admit, KeyHash, Refusal};
use crate::quota::{Charge, QuotaRefusal};
use crate::request_log::RequestLog;
use crate::state::AppState;
use actix_web::HttpRequest;
use std::sync::Arc;

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

/// Which API surface a request came in on; decides where the SDK puts its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    /// Gemini's native REST paths: `x-goog-api-key` or `?key=`.
    Gemini,
    /// The OpenAI-compatible paths: `Authorization: Bearer`.
    OpenAi,
}

/// The keys a pass-through request carries (docs/api.md#authentication-on-the-native-and-openai-paths).
pub struct SdkKeys {
    /// The key that identifies the client to this service.
    pub client_key: Option<String>,
    /// The client's own Gemini key, when it sent one beside `X-API-KEY`.
    pub own_key: Option<String>,
}

/// Reads the keys of a native or OpenAI-compatible request: `X-API-KEY` is the
/// client key when present, and then the SDK's key is the client's own Gemini
/// key; without `X-API-KEY`, the SDK's key is the client key and a server key
/// replaces it upstream.
pub fn sdk_keys(req: &HttpRequest, surface: Surface) -> SdkKeys {
    let sdk_key = match surface {
        Surface::Gemini => client_key(req, "x-goog-api-key").or_else(|| query_key(req)),
        Surface::OpenAi => bearer_key(req),
    };
    // Any X-API-KEY header, even an empty or duplicated one, means the client
    // chose that header: it alone decides, so a bad one is refused rather
    // than silently replaced by the SDK's key.
    if req.headers().contains_key(CLIENT_KEY_HEADER) {
        return SdkKeys {
            client_key: client_key(req, CLIENT_KEY_HEADER),
            own_key: sdk_key,
        };
    }
    SdkKeys {
        client_key: sdk_key,
        own_key: None,
    }
}

fn query_key(req: &HttpRequest) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string()).ok()?;
    let mut keys = pairs.into_iter().filter(|(name, _)| name == "key");
    let (_, key) = keys.next()?;
    (keys.next().is_none() && !key.trim().is_empty()).then(|| key.trim().to_owned())
}

fn bearer_key(req: &HttpRequest) -> Option<String> {
    let value = client_key(req, "authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// Identifies the client, takes one token from its bucket and, for a call
/// that may reach Gemini (`counts`), checks and counts its own quota windows.
pub async fn admit(
    req: &HttpRequest,
    state: &AppState,
    key: Option<String>,
    counts: bool,
) -> Result<Admission, ApiError> {
    RequestLog::update(req, |log| log.api = true);
    let unauthorized = || {
        ApiError::new(
            ErrorCode::Unauthorized,
            "a valid client key is required (the X-API-KEY header, or the API key an SDK sends)",
        )
    };
    let key_hash = KeyHash::of(&key.ok_or_else(unauthorized)?);
    admit_as(
        req,
        state,
        Admit {
            key_hash,
            name: None,
            counts,
        },
    )
    .await
}

/// Admits the client named `name`, as if it had sent its key: for a request
/// authorised by a token only that client was given (an upload id).
pub async fn admit_named(
    req: &HttpRequest,
    state: &AppState,
    name: Arc<str>,
) -> Result<Admission, ApiError> {
    RequestLog::update(req, |log| log.api = true);
    admit_as(
        req,
        state,
        Admit {
            key_hash: KeyHash([0; 32]),
            name: Some(name),
            counts: false,
        },
    )
    .await
}

async fn admit_as(req: &HttpRequest, state: &AppState, msg: Admit) -> Result<Admission, ApiError> {
    let unauthorized = || {
        ApiError::new(
            ErrorCode::Unauthorized,
            "a valid client key is required (the X-API-KEY header, or the API key an SDK sends)",
        )
    };
    let refusal = match state.admission.send(msg).await {
        Ok(Ok(admission)) => {
            RequestLog::update(req, |log| {
                log.client = Some(admission.client.name.clone());
                log.rate = Some(admission.rate);
                log.rate_policy = Some(admission.policy_header.clone());
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
        Refusal::Quota {
            client,
            rate,
            refusal,
            policy_header,
        } => {
            RequestLog::update(req, |log| {
                log.client = Some(client.name.clone());
                log.rate = Some(rate);
                log.rate_policy = Some(policy_header);
            });
            Err(quota_refused(state, &client.name, &refusal))
        }
        Refusal::Limited {
            client,
            rate,
            retry_after_secs,
            policy_header,
        } => {
            state
                .metrics
                .rate_limited
                .with_label_values(&[&client.name])
                .inc();
            RequestLog::update(req, |log| {
                log.client = Some(client.name.clone());
                log.rate = Some(rate);
                log.rate_policy = Some(policy_header);
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

/// The model stage of admission: once a route knows the model its call uses
/// (`None` for a call that names none), checks the windows of the model's
/// quota group and answers what to charge when the answer ends.
pub fn admit_model(
    state: &AppState,
    admission: &Admission,
    model: Option<&str>,
) -> Result<Charge, ApiError> {
    admission
        .quota
        .for_model(&admission.client, model)
        .map_err(|refusal| quota_refused(state, &admission.client.name, &refusal))
}

/// `RATE_LIMITED` for a closed quota window, counted like the bucket's refusals.
fn quota_refused(state: &AppState, client: &str, refusal: &QuotaRefusal) -> ApiError {
    state
        .metrics
        .rate_limited
        .with_label_values(&[client])
        .inc();
    ApiError::new(ErrorCode::RateLimited, refusal.message())
        .with_retry_after(refusal.retry_after_secs())
}
