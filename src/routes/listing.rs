//! Lists of files, cached contents and batches, showing a client its own only.
//!
//! A client's resources may sit in the projects of several server keys, and
//! Gemini lists one project at a time. So the list walks the keys in a fixed
//! order (by fingerprint, the same on every replica), keeping the items this
//! client made with each key, until its page is full and a later Gemini page
//! is known to hold more of them; the page token the client gets back names
//! that key and Gemini's own token, sealed (src/ownership/seal.rs). A page the
//! client reaches by a token is never empty: the JS SDK's pager yields
//! `undefined` for one.

use super::owned::{self, collection};
use super::passthrough::{self, Resources, Target};
use crate::auth::Surface;
use crate::errors::{ApiError, ErrorCode};
use crate::ownership::seal::Sealer;
use crate::ownership::{KeyFingerprint, KeyRef, Kind};
use crate::state::AppState;
use crate::upstream::stream_reader::Framing;
use crate::upstream::ReplyBody;
use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;

/// Gemini pages read for one client request at most. Pages without this
/// client's items are read through (an empty page per other client's
/// resource would tell how many there are), and one page past a full one,
/// to know whether another page follows.
const MAX_PAGES_PER_REQUEST: usize = 20;
/// Gemini's largest page of files (and more than enough for the others).
const UPSTREAM_PAGE_SIZE: &str = "100";
/// Items a page holds when the client names no `pageSize` (Gemini's default).
const DEFAULT_PAGE_SIZE: usize = 10;

/// The array Gemini lists each kind in.
fn items_field(kind: Kind) -> &'static str {
    match kind {
        Kind::Batch => "operations",
        other => collection(other),
    }
}

pub async fn list(
    req: &HttpRequest,
    state: &AppState,
    version: &str,
    kind: Kind,
) -> Result<HttpResponse, ApiError> {
    let (admission, own_key) = passthrough::admit(req, state, Surface::Gemini).await?;
    let params = Params::read(req.query_string())?;
    let path = format!("/{version}/{}", collection(kind));
    let own = own_key.is_some();
    let keys = state.upstream.context().keys.clone_order();
    let sealer = state.upstream.context().keys.sealer();
    let (position, upstream_token) = match (&params.token, own) {
        (Some(token), false) => decode(sealer, token, &keys)?,
        _ => (0, None),
    };
    if own || keys.is_empty() {
        // The client's own key (its own project, listed as Gemini lists it),
        // or no server key: the pipeline says why not.
        let target = list_target(path, params.query(params.token.as_deref())?, None);
        return passthrough::forward(req, state, &admission, own_key, target, Bytes::new()).await;
    }
    let mut position = position;
    let mut upstream_token = upstream_token;
    // Keys Gemini refused are passed over: their projects cannot be listed.
    while position < keys.len() && !state.upstream.context().keys.usable(keys[position].0) {
        position += 1;
        upstream_token = None;
    }
    let wanted = params.page_size();
    let mut mine = Vec::new();
    let mut next = None;
    let mut reads = 0;
    // Pages are read until this one is full and a later page is known to
    // hold more of the client's items: a page the client is sent to by a
    // token is never empty (the JS SDK's pager yields `undefined` for one).
    while let Some((index, fingerprint)) = keys.get(position).cloned() {
        if reads == MAX_PAGES_PER_REQUEST {
            next = Some(encode(sealer, &fingerprint, upstream_token.as_deref()));
            break;
        }
        reads += 1;
        let target = list_target(
            path.clone(),
            params.query(upstream_token.as_deref())?,
            Some(index),
        );
        let reply = passthrough::call(
            req,
            state,
            &admission,
            own_key.clone(),
            target,
            Bytes::new(),
        )
        .await?
        .reply;
        if reply.failure.is_some() || !reply.status.is_success() {
            return Ok(passthrough::respond(req, reply));
        }
        let ReplyBody::Full(body) = &reply.body else {
            return Ok(passthrough::respond(req, reply));
        };
        let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| {
            ApiError::new(ErrorCode::UpstreamError, "Gemini's list could not be read")
        })?;
        let mut found = Vec::new();
        if let Some(items) = value.get(items_field(kind)).and_then(|v| v.as_array()) {
            for item in items {
                if owned_by(state, kind, item, &admission.client.name, &fingerprint).await {
                    found.push(item.clone());
                }
            }
        }
        if !found.is_empty() && mine.len() >= wanted {
            // This page starts the next one.
            next = Some(encode(sealer, &fingerprint, upstream_token.as_deref()));
            break;
        }
        mine.extend(found);
        // Where the next page starts: further in this project, or the next
        // usable key's first page.
        match value.get("nextPageToken").and_then(|v| v.as_str()) {
            Some(token) if !token.is_empty() => upstream_token = Some(token.to_owned()),
            _ => {
                upstream_token = None;
                position += 1;
                while position < keys.len()
                    && !state.upstream.context().keys.usable(keys[position].0)
                {
                    position += 1;
                }
            }
        }
    }
    Ok(page(kind, mine, next))
}

fn list_target(path: String, query: passthrough::Query, key: Option<usize>) -> Target {
    Target {
        surface: Surface::Gemini,
        method: Method::GET,
        path,
        query,
        model: None,
        framing: Framing::Unary,
        counts_tokens: false,
        resources: Resources {
            list_key: key,
            ..Resources::default()
        },
    }
}

async fn owned_by(
    state: &AppState,
    kind: Kind,
    item: &serde_json::Value,
    client: &str,
    fingerprint: &KeyFingerprint,
) -> bool {
    let Some(id) = owned::created_id(kind, item) else {
        return false;
    };
    match state.upstream.context().ownership.lookup(kind, &id).await {
        Some(owner) => {
            *owner.client == *client && matches!(&owner.key, KeyRef::Server(f) if f == fingerprint)
        }
        None => false,
    }
}

fn page(kind: Kind, items: Vec<serde_json::Value>, next: Option<String>) -> HttpResponse {
    let mut body = serde_json::Map::new();
    if !items.is_empty() {
        body.insert(items_field(kind).to_owned(), items.into());
    }
    if let Some(next) = next {
        body.insert("nextPageToken".to_owned(), next.into());
    }
    HttpResponse::Ok()
        .content_type("application/json; charset=UTF-8")
        .body(serde_json::Value::Object(body).to_string())
}

/// `pageSize` and `pageToken` from the client's query.
struct Params {
    size: Option<String>,
    token: Option<String>,
}

impl Params {
    fn read(raw: &str) -> Result<Params, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw).map_err(|_| {
            ApiError::new(ErrorCode::InvalidRequest, "the query string is malformed")
        })?;
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        Ok(Params {
            size: get("pageSize"),
            token: get("pageToken"),
        })
    }

    /// How many items the client asked for a page.
    fn page_size(&self) -> usize {
        self.size
            .as_deref()
            .and_then(|size| size.parse::<usize>().ok())
            .filter(|size| *size > 0)
            .unwrap_or(DEFAULT_PAGE_SIZE)
    }

    /// The query that goes upstream, with Gemini's own page token. Gemini
    /// is asked for its largest pages whatever the client's size: most of
    /// each holds other clients' items, and fewer reads go further.
    fn query(&self, token: Option<&str>) -> Result<passthrough::Query, ApiError> {
        let mut pairs: Vec<(&str, &str)> = vec![("pageSize", UPSTREAM_PAGE_SIZE)];
        if let Some(token) = token {
            pairs.push(("pageToken", token));
        }
        let raw = serde_urlencoded::to_string(&pairs)
            .map_err(|_| ApiError::new(ErrorCode::InvalidRequest, "bad query"))?;
        passthrough::query(&raw)
    }
}

fn encode(sealer: &Sealer, fingerprint: &KeyFingerprint, upstream: Option<&str>) -> String {
    let raw = format!("{}:{}", fingerprint.as_str(), upstream.unwrap_or(""));
    sealer.seal(raw.as_bytes())
}

/// Where a page token points: the key's place in the order, and Gemini's token.
fn decode(
    sealer: &Sealer,
    token: &str,
    keys: &[(usize, KeyFingerprint)],
) -> Result<(usize, Option<String>), ApiError> {
    let invalid = || ApiError::new(ErrorCode::InvalidRequest, "the page token is not valid");
    let raw = sealer
        .open(token)
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(invalid)?;
    let (fingerprint, upstream) = raw.split_once(':').ok_or_else(invalid)?;
    let position = keys
        .iter()
        .position(|(_, f)| f.as_str() == fingerprint)
        .ok_or_else(invalid)?;
    Ok((
        position,
        (!upstream.is_empty()).then(|| upstream.to_owned()),
    ))
}
