//! `GET /usage`: a client's own limits and what it used of each window
//! (docs/api.md#get-usage). It takes a request token like any authenticated
//! request, but counts against no quota, so a client whose day is used up can
//! still learn when it starts again.

use crate::auth;
use crate::errors::{whole_seconds_up, ApiError, ErrorCode};
use crate::keys::{KeyHash, ReadUsage, UsageReport};
use crate::quota::WindowUsage;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use jiff::Timestamp;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Serialize)]
struct Usage<'a> {
    client: &'a str,
    windows: BTreeMap<&'static str, Window>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    quota: Vec<Group>,
}

#[derive(Serialize)]
struct Group {
    models: Vec<String>,
    windows: BTreeMap<&'static str, Window>,
}

#[derive(Serialize)]
struct Window {
    limit: u64,
    used: u64,
    remaining: u64,
    /// When the window has nothing used again, RFC 3339 (UTC).
    reset: String,
    reset_secs: u64,
    /// The bucket's refill rate (`requests_per_minute` only, whose `limit` is its burst).
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_per_minute: Option<u32>,
}

fn window(usage: &WindowUsage, now: Timestamp) -> Window {
    Window {
        limit: usage.limit,
        used: usage.used,
        remaining: usage.remaining,
        reset: usage.reset_at.to_string(),
        reset_secs: whole_seconds_up(usage.reset_in(now)),
        rate_per_minute: None,
    }
}

pub async fn usage(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let key = auth::client_key(&req, auth::CLIENT_KEY_HEADER);
    let key_hash = key.as_deref().map(KeyHash::of);
    let admission = auth::admit(&req, &state, key, false).await?;
    let report = match key_hash {
        Some(key_hash) => state
            .usage
            .send(ReadUsage { key_hash })
            .await
            .ok()
            .flatten(),
        None => None,
    };
    // The key was admitted a moment ago; only a reload in between removes it.
    let Some(report) = report.filter(|r| r.client.name == admission.client.name) else {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "a valid client key is required (the X-API-KEY header)",
        ));
    };
    Ok(HttpResponse::Ok().json(body(&report)))
}

fn body(report: &UsageReport) -> Usage<'_> {
    let now = report.now;
    let bucket = &report.bucket;
    let reset_in = Duration::from_secs(bucket.reset_secs);
    let mut windows = BTreeMap::new();
    let mut bucket_window = window(
        &WindowUsage::new(
            u64::from(bucket.limit),
            u64::from(bucket.limit - bucket.remaining.min(bucket.limit)),
            now,
            reset_in,
        ),
        now,
    );
    bucket_window.rate_per_minute = Some(report.client.limits.requests_per_minute.get());
    windows.insert("requests_per_minute", bucket_window);
    let mut groups: Vec<Group> = report
        .client
        .quotas
        .groups
        .iter()
        .map(|g| Group {
            models: g.models.iter().cloned().collect(),
            windows: BTreeMap::new(),
        })
        .collect();
    for (group, kind, usage) in &report.windows {
        let target = match group {
            None => &mut windows,
            Some(name) => {
                let index = report
                    .client
                    .quotas
                    .groups
                    .iter()
                    .position(|g| &g.name == name);
                match index.and_then(|i| groups.get_mut(i)) {
                    Some(group) => &mut group.windows,
                    None => continue,
                }
            }
        };
        target.insert(kind.name(), window(usage, now));
    }
    Usage {
        client: &report.client.name,
        windows,
        quota: groups,
    }
}
