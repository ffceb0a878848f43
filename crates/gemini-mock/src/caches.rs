//! Cached contents (`/{v}/cachedContents`): a prompt prefix stored once and named by
//! later generateContent calls of the same project. Like files, a cached content
//! belongs to the project of the key that made it, and any other project is told it
//! does not exist (a 403 that says nothing about the key). Expired ones are gone.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::catalogue;
use super::clock::{parse_duration, parse_rfc3339, rfc3339};
use super::errors::ApiError;
use super::openai::bare_model;
use super::paging;
use super::reply::Reply;
use super::request::{parse_json, Content, GenerateRequest};
use super::resources;
use super::state::Shared;

/// Gemini's TTL when a create names neither `ttl` nor `expireTime`.
const DEFAULT_TTL: Duration = Duration::from_secs(3600);
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// A cached content as tests see it (`MockGemini::cached_contents`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedContentInfo {
    /// The id, without `cachedContents/`.
    pub id: String,
    pub project: String,
    /// `models/<id>`.
    pub model: String,
    pub display_name: Option<String>,
    pub expire_time: SystemTime,
    /// What `usageMetadata.totalTokenCount` says, and what a generateContent using it
    /// reports as `cachedContentTokenCount`.
    pub token_count: u32,
}

#[derive(Clone, Debug)]
struct StoredCache {
    project: String,
    model: String,
    display_name: Option<String>,
    created: SystemTime,
    updated: SystemTime,
    expires: SystemTime,
    tokens: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CacheResource<'a> {
    name: String,
    model: &'a str,
    create_time: String,
    update_time: String,
    expire_time: String,
    /// Empty when none was given: Gemini writes `"displayName": ""`.
    display_name: &'a str,
    usage_metadata: CacheUsage,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CacheUsage {
    total_token_count: u32,
}

impl StoredCache {
    fn resource<'a>(&'a self, id: &str) -> CacheResource<'a> {
        CacheResource {
            name: format!("cachedContents/{id}"),
            model: &self.model,
            display_name: self.display_name.as_deref().unwrap_or_default(),
            create_time: rfc3339(self.created),
            update_time: rfc3339(self.updated),
            expire_time: rfc3339(self.expires),
            usage_metadata: CacheUsage {
                total_token_count: self.tokens,
            },
        }
    }
}

/// Gemini's answer for a cached content the caller's project does not hold.
pub(crate) fn denied() -> ApiError {
    ApiError::new(
        403,
        "PERMISSION_DENIED",
        "CachedContent not found (or permission denied)",
    )
}

/// Gemini's cache ids are 40 lowercase letters and digits.
fn cache_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..40)
        .map(|_| char::from(ALPHABET[fastrand::usize(..ALPHABET.len())]))
        .collect()
}

#[derive(Default)]
pub(crate) struct Caches {
    inner: Mutex<HashMap<String, StoredCache>>,
}

impl Caches {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, StoredCache>> {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let now = SystemTime::now();
        map.retain(|_, c| c.expires > now);
        map
    }

    fn get(&self, project: &str, id: &str) -> Result<StoredCache, ApiError> {
        self.lock()
            .get(id)
            .filter(|c| c.project == project)
            .cloned()
            .ok_or_else(denied)
    }

    /// For a generateContent naming `cachedContents/<id>`: the cache's model and tokens.
    pub fn usable(&self, project: &str, name: &str) -> Result<(String, u32), ApiError> {
        let id = name.strip_prefix("cachedContents/").ok_or_else(denied)?;
        let cache = self.get(project, id)?;
        Ok((cache.model, cache.tokens))
    }

    pub fn infos(&self) -> Vec<CachedContentInfo> {
        let mut out: Vec<CachedContentInfo> = self
            .lock()
            .iter()
            .map(|(id, c)| CachedContentInfo {
                id: id.clone(),
                project: c.project.clone(),
                model: c.model.clone(),
                display_name: c.display_name.clone(),
                expire_time: c.expires,
                token_count: c.tokens,
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }
}

#[derive(Default, Deserialize)]
struct CreateBody {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    contents: Option<Vec<Content>>,
    #[serde(default, rename = "systemInstruction", alias = "system_instruction")]
    system_instruction: Option<Content>,
    #[serde(default, rename = "displayName", alias = "display_name")]
    display_name: Option<String>,
    #[serde(flatten)]
    expiry: Expiry,
}

#[derive(Default, Deserialize)]
struct Expiry {
    #[serde(default)]
    ttl: Option<String>,
    #[serde(default, rename = "expireTime", alias = "expire_time")]
    expire_time: Option<String>,
}

impl Expiry {
    /// The expiry asked for; `None` when neither field is given.
    fn resolve(&self, now: SystemTime) -> Result<Option<SystemTime>, ApiError> {
        match (&self.ttl, &self.expire_time) {
            (Some(_), Some(_)) => Err(ApiError::invalid(
                "Only one of ttl or expire_time may be set.",
            )),
            (Some(ttl), None) => parse_duration(ttl)
                .map(|d| Some(now + d))
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "Invalid value at 'cached_content.ttl' (type.googleapis.com/google.protobuf.Duration), \"{ttl}\""
                    ))
                }),
            (None, Some(at)) => parse_rfc3339(at).map(Some).ok_or_else(|| {
                ApiError::invalid(format!(
                    "Invalid value at 'cached_content.expire_time' (type.googleapis.com/google.protobuf.Timestamp), \"{at}\""
                ))
            }),
            (None, None) => Ok(None),
        }
    }
}

pub(crate) fn create(
    shared: &Shared,
    project: &str,
    version: &str,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let req: CreateBody = parse_json(body)?;
    let model = req
        .model
        .as_deref()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::invalid("* CachedContent.model: model is required.\n"))?;
    let id = bare_model(model);
    if !catalogue::is_known(version, id) {
        return Err(ApiError::model_not_found(
            &format!("models/{id}"),
            version,
            "createCachedContent",
        ));
    }
    let now = SystemTime::now();
    let expires = req.expiry.resolve(now)?.unwrap_or(now + DEFAULT_TTL);
    if expires <= now {
        return Err(ApiError::invalid("The expire_time must be in the future."));
    }
    let prompt = GenerateRequest {
        contents: req.contents,
        system_instruction: req.system_instruction,
        ..GenerateRequest::default()
    };
    resources::check_files(&prompt.references(), shared, project)?;
    let tokens = prompt.prompt().tokens;
    let min = shared.config().cache_min_tokens;
    if tokens < min {
        return Err(ApiError::invalid(format!(
            "Cached content is too small. total_token_count={tokens}, min_total_token_count={min}"
        )));
    }
    let cache = StoredCache {
        project: project.to_owned(),
        model: format!("models/{id}"),
        display_name: req.display_name,
        created: now,
        updated: now,
        expires,
        tokens,
    };
    let id = cache_id();
    let reply = Reply::json(&cache.resource(&id));
    shared
        .caches
        .inner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, cache);
    Ok(reply)
}

pub(crate) fn get(shared: &Shared, project: &str, id: &str) -> Result<Reply, ApiError> {
    let cache = shared.caches.get(project, id)?;
    Ok(Reply::json(&cache.resource(id)))
}

pub(crate) fn delete(shared: &Shared, project: &str, id: &str) -> Result<Reply, ApiError> {
    let mut map = shared.caches.lock();
    match map.get(id) {
        Some(c) if c.project == project => {
            map.remove(id);
            Ok(Reply::json(&serde_json::json!({})))
        }
        _ => Err(denied()),
    }
}

/// `PATCH`: only the expiry can change. `updateMask` names the field; python sends
/// none, and then the field the body carries is the one updated.
pub(crate) fn update(
    shared: &Shared,
    project: &str,
    id: &str,
    body: &[u8],
    update_mask: Option<&str>,
) -> Result<Reply, ApiError> {
    let mut expiry: Expiry = parse_json(body)?;
    if let Some(mask) = update_mask.filter(|m| !m.is_empty()) {
        let (mut ttl, mut at) = (false, false);
        for field in mask.split(',').map(str::trim) {
            match field {
                "ttl" => ttl = true,
                "expireTime" | "expire_time" => at = true,
                other => {
                    return Err(ApiError::invalid(format!(
                        "Invalid update mask path: {other}. Only ttl and expire_time can be \
                         updated."
                    )))
                }
            }
        }
        if !ttl {
            expiry.ttl = None;
        }
        if !at {
            expiry.expire_time = None;
        }
    }
    let now = SystemTime::now();
    let Some(expires) = expiry.resolve(now)? else {
        return Err(ApiError::invalid(
            "Either ttl or expire_time must be set to update a CachedContent.",
        ));
    };
    let mut map = shared.caches.lock();
    let cache = map
        .get_mut(id)
        .filter(|c| c.project == project)
        .ok_or_else(denied)?;
    cache.expires = expires;
    cache.updated = now;
    Ok(Reply::json(&cache.resource(id)))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CachePage<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cached_contents: Vec<CacheResource<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

pub(crate) fn list(
    shared: &Shared,
    project: &str,
    page_size: Option<&str>,
    page_token: Option<&str>,
) -> Result<Reply, ApiError> {
    let mut all: Vec<(String, StoredCache)> = shared
        .caches
        .lock()
        .iter()
        .filter(|(_, c)| c.project == project)
        .map(|(id, c)| (id.clone(), c.clone()))
        .collect();
    all.sort_by(|a, b| b.1.created.cmp(&a.1.created).then_with(|| a.0.cmp(&b.0)));
    let (range, next_page_token) =
        paging::window(all.len(), page_size, page_token, DEFAULT_PAGE, MAX_PAGE)?;
    let cached_contents = all[range].iter().map(|(id, c)| c.resource(id)).collect();
    Ok(Reply::json(&CachePage {
        cached_contents,
        next_page_token,
    }))
}
