//! `/__mock/*` views of the stored resources, for tests that run the mock as a separate
//! process, and the `/__mock/config` fields of the Files and caching knobs.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde::Serialize;
use serde_json::Value;

use super::clock::rfc3339;
use super::files::FileState;
use super::state::Shared;
use super::MockConfig;

#[derive(Serialize)]
struct FileView {
    id: String,
    project: String,
    display_name: Option<String>,
    mime_type: String,
    size: u64,
    sha256: String,
    state: &'static str,
}

/// `GET /__mock/files`: every file of every project, by id.
pub(crate) async fn files(shared: web::Data<Shared>) -> HttpResponse {
    let views: Vec<FileView> = shared
        .files
        .infos()
        .into_iter()
        .map(|f| FileView {
            id: f.id,
            project: f.project,
            display_name: f.display_name,
            mime_type: f.mime_type,
            size: f.size,
            sha256: f.sha256,
            state: match f.state {
                FileState::Processing => "PROCESSING",
                FileState::Active => "ACTIVE",
            },
        })
        .collect();
    HttpResponse::Ok().json(views)
}

#[derive(Serialize)]
struct CacheView {
    id: String,
    project: String,
    model: String,
    display_name: Option<String>,
    expire_time: String,
    token_count: u32,
}

/// `GET /__mock/cached-contents`: every cached content of every project, by id.
pub(crate) async fn cached_contents(shared: web::Data<Shared>) -> HttpResponse {
    let views: Vec<CacheView> = shared
        .caches
        .infos()
        .into_iter()
        .map(|c| CacheView {
            id: c.id,
            project: c.project,
            model: c.model,
            display_name: c.display_name,
            expire_time: rfc3339(c.expire_time),
            token_count: c.token_count,
        })
        .collect();
    HttpResponse::Ok().json(views)
}

/// The `/__mock/config` fields of this module's knobs; `None` for any other field.
pub(crate) fn apply(cfg: &mut MockConfig, field: &str, v: &Value) -> Option<Result<(), String>> {
    let millis = |what: &str| {
        v.as_u64()
            .map(Duration::from_millis)
            .ok_or_else(|| format!("{what} must be a non-negative integer (milliseconds)"))
    };
    let applied = match field {
        "upload_url_google" => v
            .as_bool()
            .map(|b| cfg.upload_url_google = b)
            .ok_or_else(|| "upload_url_google must be a boolean".to_owned()),
        "file_processing_ms" => millis(field).map(|d| cfg.file_processing = d),
        "file_ttl_ms" => millis(field).map(|d| cfg.file_ttl = d),
        "cache_min_tokens" => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(|n| cfg.cache_min_tokens = n)
            .ok_or_else(|| "cache_min_tokens must be a non-negative integer".to_owned()),
        _ => return None,
    };
    Some(applied)
}
