//! `POST /upload/{version}/files`: Gemini's resumable upload protocol
//! (docs/gemini-wire.md#files-api), passed through.
//!
//! The start goes through the pipeline like any call; Gemini's answer names
//! an upload URL, which is rewritten to point at the service (keeping only
//! the upload id) and recorded for the client and the key that started it.
//! Data chunks come back to that URL, often with no key at all (the python
//! SDK sends none): the upload id authorises them, for that client only, and
//! they go out with the key that started the upload, streamed as they come.
//! The service's own errors here carry `X-Goog-Upload-Status: final`, or the
//! python SDK would retry each chunk three times.

use super::owned::{self, not_found};
use super::passthrough::{self, version, Resources, Target};
use crate::auth::{self, Surface};
use crate::errors::{ApiError, ErrorCode, ResponseCode, Shape};
use crate::ownership::chunks::MAX_PER_CLIENT as MAX_CHUNKS;
use crate::ownership::{Busy, KeyRef, Kind, MAX_UPLOADS_PER_CLIENT};
use crate::request_log::RequestLog;
use crate::state::AppState;
use crate::upstream::stream_reader::Framing;
use crate::upstream::upload::{Activity, UploadCall};
use crate::upstream::Credential;
use actix_web::http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::StreamExt;
use std::time::Duration;
use tokio::sync::mpsc;

/// The resumable protocol's request headers, which go upstream on upload routes.
const UPLOAD_HEADERS: &[&str] = &[
    "x-goog-upload-protocol",
    "x-goog-upload-command",
    "x-goog-upload-offset",
    "x-goog-upload-header-content-length",
    "x-goog-upload-header-content-type",
    "x-goog-upload-file-name",
];
const UPLOAD_URL: &str = "x-goog-upload-url";
const UPLOAD_STATUS: &str = "x-goog-upload-status";
/// A client that sends no byte of its chunk for this long is cut, like any
/// slow body.
const BODY_STALL: Duration = Duration::from_secs(30);
/// After the first [`BODY_STALL`], a chunk must average this many bytes a
/// second, or a trickle of a byte every 29 s would hold its place forever.
const MIN_BYTES_PER_SEC: u64 = 16 * 1024;
/// Chunks waiting between the client and Gemini: a slow Gemini slows the
/// client down rather than filling memory.
const CHANNEL_CHUNKS: usize = 4;

pub async fn upload(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let upload_id = upload_id(req.query_string()).and_then(|token| match token {
        None => Ok(None),
        Some(token) => unseal(&state, &token).map(Some),
    });
    let answered = match (version(&path), upload_id) {
        (Err(error), _) => Err(error),
        (Ok(version), Ok(None)) => start(&req, &state, version, payload).await,
        (Ok(version), Ok(Some(id))) => chunk(&req, &state, version, &id, payload).await,
        (Ok(_), Err(error)) => Err(error),
    };
    answered.unwrap_or_else(|error| {
        let mut response = error.response(Shape::Google);
        response.headers_mut().insert(
            HeaderName::from_static(UPLOAD_STATUS),
            HeaderValue::from_static("final"),
        );
        response
    })
}

/// The `upload_id` of an upload URL, if the query has one.
fn upload_id(raw: &str) -> Result<Option<String>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw)
        .map_err(|_| ApiError::new(ErrorCode::InvalidRequest, "the query string is malformed"))?;
    Ok(pairs
        .into_iter()
        .find(|(name, _)| name == "upload_id")
        .map(|(_, id)| id))
}

/// The service hands out Gemini's upload id sealed (src/ownership/seal.rs):
/// a client that knew Gemini's own could send its chunks to Gemini directly,
/// past `MAX_UPLOAD_BYTES` and the chunk limits, making files on a shared
/// key that nobody's record holds. Every replica with the same keys opens it.
fn seal(state: &AppState, id: &str) -> String {
    state.upstream.context().keys.sealer().seal(id.as_bytes())
}

/// Gemini's upload id in a token the service sealed, or NOT_FOUND.
fn unseal(state: &AppState, token: &str) -> Result<String, ApiError> {
    state
        .upstream
        .context()
        .keys
        .sealer()
        .open(token)
        .and_then(|id| String::from_utf8(id).ok())
        .filter(|id| crate::ownership::valid_id(Kind::Upload, id))
        .ok_or_else(|| not_found(Kind::Upload))
}

async fn start(
    req: &HttpRequest,
    state: &AppState,
    version: &str,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (admission, own_key) = passthrough::admit(req, state, Surface::Gemini).await?;
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let resumable = header("x-goog-upload-protocol")
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("resumable"))
        && header("x-goog-upload-command").is_some_and(|c| c.trim().eq_ignore_ascii_case("start"));
    if !resumable {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "the service passes resumable uploads through: start with \
             `X-Goog-Upload-Protocol: resumable` and `X-Goog-Upload-Command: start`",
        ));
    }
    let declared =
        header("x-goog-upload-header-content-length").and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|size| size > state.limits.max_upload_bytes) {
        return Err(too_large(state));
    }
    let body = passthrough::body(req, payload, state).await?;
    if own_key.is_none() && names_its_file(&body) {
        // In a shared project a chosen name could be another client's file:
        // Gemini's answer (taken, or free) would tell whether it exists.
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "a file uploaded with the service's keys cannot choose its `name`; \
             Gemini names it (`displayName` is free)",
        ));
    }
    let target = Target {
        surface: Surface::Gemini,
        method: Method::POST,
        path: format!("/upload/{version}/files"),
        query: passthrough::Query::default(),
        model: None,
        framing: Framing::Unary,
        counts_tokens: false,
        resources: Resources {
            extra_headers: UPLOAD_HEADERS,
            ..Resources::default()
        },
    };
    let passthrough::Called {
        mut reply, owner, ..
    } = passthrough::call(req, state, &admission, own_key, target, body).await?;
    let url_at = reply
        .headers
        .iter()
        .position(|(name, _)| name.as_str() == UPLOAD_URL);
    if let Some(at) = url_at {
        let (_, url) = reply.headers.remove(at);
        let id = url
            .to_str()
            .ok()
            .and_then(|url| url.split_once('?'))
            .and_then(|(_, query)| upload_id(query).ok().flatten())
            .filter(|id| crate::ownership::valid_id(Kind::Upload, id));
        let (Some(id), Some(owner)) = (id, owner) else {
            return Err(ApiError::new(
                ErrorCode::UpstreamError,
                "Gemini's upload URL could not be read",
            ));
        };
        let recorded = state
            .upstream
            .context()
            .ownership
            .record(Kind::Upload, &id, owner, owned::default_ttl(Kind::Upload))
            .await;
        if !recorded {
            return Err(ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "this client has {MAX_UPLOADS_PER_CLIENT} uploads open; finish or abandon \
                     some (a session is dropped 24 h after its last chunk)"
                ),
            )
            .with_retry_after(60));
        }
        let rewritten = format!(
            "{}/upload/{version}/files?upload_id={}&upload_protocol=resumable",
            public_origin(req, state),
            seal(state, &id)
        );
        let value = HeaderValue::from_str(&rewritten).map_err(|_| {
            ApiError::new(
                ErrorCode::InternalError,
                "the upload URL could not be written",
            )
        })?;
        reply
            .headers
            .push((HeaderName::from_static(UPLOAD_URL), value));
    }
    Ok(passthrough::respond(req, reply))
}

/// Whether a start's metadata chooses the file's name (`file.name`).
fn names_its_file(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Start {
        file: Option<Metadata>,
    }
    #[derive(serde::Deserialize)]
    struct Metadata {
        name: Option<String>,
    }
    if body.is_empty() {
        return false;
    }
    match serde_json::from_slice::<Start>(body) {
        Ok(start) => start
            .file
            .and_then(|f| f.name)
            .is_some_and(|name| !name.trim().is_empty()),
        // Metadata the service cannot read (a key given twice, say) might
        // name one the way Gemini reads it.
        Err(_) => true,
    }
}

/// Where clients reach the service: `PUBLIC_BASE_URL`, else the request's
/// own scheme and host (`X-Forwarded-Proto` and `Host` as a proxy in front
/// sets them: only the asking client sees this URL).
fn public_origin(req: &HttpRequest, state: &AppState) -> String {
    if let Some(base) = &state.limits.public_base_url {
        return base.to_string();
    }
    let info = req.connection_info();
    format!("{}://{}", info.scheme(), info.host())
}

async fn chunk(
    req: &HttpRequest,
    state: &AppState,
    version: &str,
    id: &str,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    RequestLog::update(req, |log| log.api = true);
    let context = state.upstream.context();
    let Some(owner) = context.ownership.lookup(Kind::Upload, id).await else {
        return Err(not_found(Kind::Upload));
    };
    RequestLog::update(req, |log| log.client = Some(owner.client.clone()));
    // A chunk may carry a key (the JS SDK sends it again); it must be the
    // same client's. Without one, the upload id is the authority, and the
    // chunk is admitted as its client: same bucket, and only while the
    // client is still in the keys file.
    let keys = auth::sdk_keys(req, Surface::Gemini);
    let mut own_key = None;
    if keys.client_key.is_some() {
        let admission = auth::admit(req, state, keys.client_key, false).await?;
        if admission.client.name != owner.client {
            return Err(not_found(Kind::Upload));
        }
        own_key = admission.client.authorize(keys.own_key.as_deref(), None)?;
    } else {
        auth::admit_named(req, state, owner.client.clone()).await?;
    }
    let _slot = context
        .ownership
        .chunks()
        .enter(id, &owner.client)
        .map_err(|busy| match busy {
            Busy::Upload => ApiError::new(
                ErrorCode::RateLimited,
                "this upload already has a chunk in flight; send the next when it is answered",
            )
            .with_retry_after(1),
            Busy::Client => ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "this client already has {MAX_CHUNKS} upload chunks in flight; retry when one ends"
                ),
            )
            .with_retry_after(1),
        })?;
    let credential = match (&owner.key, own_key) {
        (KeyRef::Server(fingerprint), _) => match context.keys.index_of(fingerprint) {
            Some(index) => Some(Credential::Pinned(index)),
            None => {
                return Err(ApiError::new(
                    ErrorCode::UpstreamUnavailable,
                    "the server key that started this upload is not configured on this replica",
                ))
            }
        },
        (KeyRef::Own, Some(key)) => Some(Credential::Client(key)),
        (KeyRef::Own, None) => None,
    };
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let length: Option<u64> = match header(CONTENT_LENGTH.as_str()) {
        Some(raw) => Some(raw.trim().parse().map_err(|_| {
            ApiError::new(ErrorCode::InvalidRequest, "Content-Length is not a number")
        })?),
        None => None,
    };
    let offset: u64 = header("x-goog-upload-offset")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    // What this request may still add to the file.
    let Some(room) = state.limits.max_upload_bytes.checked_sub(offset) else {
        return Err(too_large(state));
    };
    if length.is_some_and(|length| length > room) {
        return Err(too_large(state));
    }
    let mut headers: Vec<(HeaderName, HeaderValue)> = req
        .headers()
        .iter()
        .filter(|(name, _)| UPLOAD_HEADERS.contains(&name.as_str()) || *name == CONTENT_TYPE)
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    headers.extend(passthrough::forwarded_headers(req));
    let (sender, receiver) = mpsc::channel(CHANNEL_CHUNKS);
    let activity = Activity::new();
    activity.touch();
    let call = UploadCall {
        path_and_query: format!("/upload/{version}/files?upload_id={id}&upload_protocol=resumable"),
        credential,
        headers,
        length,
        body: receiver,
        activity: activity.clone(),
        idle: state.limits.upstream_timeout,
    };
    let pump = pump(payload, sender, length, room, state, &activity);
    let (pumped, answered) = tokio::join!(pump, state.upstream.upload(call));
    if let Ok(reply) = &answered {
        // Whatever the client's side did, a file Gemini made is recorded:
        // otherwise it would sit in the shared project, nobody's.
        let finished = reply.status.is_success()
            && reply
                .headers
                .iter()
                .any(|(name, value)| name.as_str() == UPLOAD_STATUS && value == "final");
        if finished {
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&reply.body) {
                if matches!(owner.key, KeyRef::Server(_)) {
                    owned::record_from_value(state, Kind::File, &owner, &value).await;
                }
            }
            context.ownership.forget(Kind::Upload, id).await;
        } else if reply.status.is_success() {
            // The session lives while chunks come.
            context
                .ownership
                .extend(Kind::Upload, id, owned::default_ttl(Kind::Upload))
                .await;
        }
    }
    // The client's own failure says more than Gemini's answer to a cut body.
    pumped?;
    let reply = answered?;
    Ok(answer(reply))
}

fn answer(reply: crate::upstream::upload::UploadReply) -> HttpResponse {
    let mut response = HttpResponse::build(reply.status);
    for (name, value) in reply.headers {
        response.insert_header((name, value));
    }
    response.extensions_mut().insert(ResponseCode(reply.code));
    response.body(reply.body)
}

/// Feeds the client's body to the upload, at the pace Gemini takes it. A
/// failure is passed on as an error, which aborts the upstream request: a
/// cleanly ended short body would be taken for the whole chunk.
async fn pump(
    payload: web::Payload,
    sender: mpsc::Sender<Result<Bytes, std::io::Error>>,
    length: Option<u64>,
    room: u64,
    state: &AppState,
    activity: &Activity,
) -> Result<(), ApiError> {
    let fed = feed(payload, &sender, length, room, state, activity).await;
    if fed.is_err() {
        let cut = std::io::Error::other("the client's body was cut");
        let _ = sender.send(Err(cut)).await;
    }
    fed
}

async fn feed(
    mut payload: web::Payload,
    sender: &mpsc::Sender<Result<Bytes, std::io::Error>>,
    length: Option<u64>,
    room: u64,
    state: &AppState,
    activity: &Activity,
) -> Result<(), ApiError> {
    let mut received: u64 = 0;
    let started = std::time::Instant::now();
    loop {
        let elapsed = started.elapsed();
        if let Some(graced) = elapsed.checked_sub(BODY_STALL) {
            if received < graced.as_secs().saturating_mul(MIN_BYTES_PER_SEC) {
                return Err(ApiError::new(
                    ErrorCode::InvalidRequest,
                    "the upload's body arrives too slowly; query the upload's status and resume",
                ));
            }
        }
        let next = match tokio::time::timeout(BODY_STALL, payload.next()).await {
            Err(_) => {
                return Err(ApiError::new(
                    ErrorCode::InvalidRequest,
                    "the upload's body stalled; query the upload's status and resume",
                ))
            }
            Ok(next) => next,
        };
        let Some(chunk) = next else {
            break;
        };
        let chunk = chunk.map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                "the upload's body could not be read",
            )
        })?;
        received += chunk.len() as u64;
        if received > room {
            return Err(too_large(state));
        }
        if length.is_some_and(|length| received > length) {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "the upload's body is longer than its Content-Length",
            ));
        }
        activity.touch();
        if sender.send(Ok(chunk)).await.is_err() {
            // Gemini answered before taking the whole body; its answer says why.
            return Ok(());
        }
        activity.touch();
    }
    if length.is_some_and(|length| received < length) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "the upload's body ended before its Content-Length",
        ));
    }
    Ok(())
}

fn too_large(state: &AppState) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!(
            "the file is larger than this service passes through ({} bytes)",
            state.limits.max_upload_bytes
        ),
    )
}
