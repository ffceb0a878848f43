//! Who is calling, and whether Gemini would serve them: the key a request carries, the
//! verdict on the key itself, and the per-model quotas of model calls.
//!
//! Key-level refusals come before every other check except a missing key, as upstream
//! judges the caller before the call; quotas come after the body has been read, because
//! on the OpenAI-compatible surface the model is named in the body.

use actix_web::HttpRequest;

use super::errors::{ApiError, QuotaWindow};
use super::openai::bare_model;
use super::route::{Query, Route};
use super::MockConfig;

pub(crate) fn header_str<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The caller's key, in upstream's order of checks: no key; a refused key; a Bearer
/// token on a native route; a key outside the accepted set. The OpenAI surface takes
/// its key as a Bearer token.
pub(crate) fn check_auth(
    req: &HttpRequest,
    route: &Route,
    query: &Query,
    cfg: &MockConfig,
) -> Result<String, ApiError> {
    caller_key(req, query, cfg, route.is_openai(), || route.rpc_name())
}

/// `check_auth` for routes `Route` does not describe (batches, interactions): `rpc`
/// names the method in the 401 of a Bearer token.
pub(crate) fn caller_key(
    req: &HttpRequest,
    query: &Query,
    cfg: &MockConfig,
    openai: bool,
    rpc: impl Fn() -> String,
) -> Result<String, ApiError> {
    let authorization = header_str(req, "authorization");
    let bearer = authorization
        .and_then(|a| {
            a.strip_prefix("Bearer ")
                .or_else(|| a.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|k| !k.is_empty());
    let api_key = header_str(req, "x-goog-api-key")
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .or_else(|| query.key.as_deref().filter(|k| !k.is_empty()));
    let key = if openai { bearer.or(api_key) } else { api_key };
    let Some(key) = key else {
        return Err(match authorization {
            Some(_) if !openai => ApiError::bearer_unsupported(rpc()),
            _ => ApiError::unregistered(),
        });
    };
    if let Some(refusal) = cfg.key_refusals.get(key) {
        return Err(refusal.error(key));
    }
    if !openai && authorization.is_some() {
        return Err(ApiError::bearer_unsupported(rpc()));
    }
    if let Some(accepted) = &cfg.accepted_keys {
        if !accepted.contains(key) {
            return Err(ApiError::api_key_invalid());
        }
    }
    Ok(key.to_owned())
}

/// The 429 of an exhausted quota for a model call with `key` on `model`, if any: the
/// first matching `exhausted` entry, else a per-minute violation for `exhausted_keys`.
pub(crate) fn check_quota(cfg: &MockConfig, key: &str, model: &str) -> Result<(), ApiError> {
    let model = bare_model(model);
    let hit = cfg.exhausted.iter().find(|e| {
        e.key.as_deref().is_none_or(|k| k == key)
            && e.model.as_deref().is_none_or(|m| bare_model(m) == model)
    });
    let window = match hit {
        Some(e) if e.per_day => QuotaWindow::RequestsPerDay,
        Some(_) => QuotaWindow::RequestsPerMinute,
        None if cfg.exhausted_keys.contains(key) => QuotaWindow::RequestsPerMinute,
        None => return Ok(()),
    };
    Err(ApiError::quota(window, model, cfg.retry_delay.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Exhaustion;

    fn exhaustion(key: Option<&str>, model: Option<&str>, per_day: bool) -> Exhaustion {
        Exhaustion {
            key: key.map(str::to_owned),
            model: model.map(str::to_owned),
            per_day,
        }
    }

    fn quota_id(cfg: &MockConfig, key: &str, model: &str) -> Option<String> {
        let e = check_quota(cfg, key, model).err()?;
        let v = serde_json::to_value(e.envelope()).ok()?;
        v["error"]["details"][0]["violations"][0]["quotaId"]
            .as_str()
            .map(str::to_owned)
    }

    #[test]
    fn the_first_matching_exhaustion_decides_and_none_matches_anything() {
        let cfg = MockConfig {
            exhausted: vec![
                exhaustion(Some("a"), Some("models/gemini-2.5-pro"), true),
                exhaustion(None, Some("gemini-2.5-flash"), false),
            ],
            ..MockConfig::default()
        };
        let day = "GenerateRequestsPerDayPerProjectPerModel-FreeTier";
        let minute = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier";
        assert_eq!(quota_id(&cfg, "a", "gemini-2.5-pro").as_deref(), Some(day));
        assert_eq!(quota_id(&cfg, "b", "gemini-2.5-pro"), None);
        assert_eq!(
            quota_id(&cfg, "b", "models/gemini-2.5-flash").as_deref(),
            Some(minute)
        );
        assert_eq!(quota_id(&cfg, "a", "gemma-3-27b-it"), None);
    }
}
