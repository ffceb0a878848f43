//! `POST /upload/{v}/files`: Google's resumable upload protocol, as the SDKs drive it
//! (docs/gemini-wire.md#files-api). A `start` with the key opens a session and answers
//! its URL; the bytes then go to that URL in `upload` chunks at `X-Goog-Upload-Offset`,
//! the last one with `finalize`, which makes the file. The session id in the URL is
//! what authorises a chunk: python sends chunks without a key.
//!
//! Its own actix route rather than the shared pipeline, because a chunk's body is
//! streamed: counted and hashed as it arrives, never held whole (uploads can be GiBs),
//! and never put in the request record.

use std::sync::Arc;
use std::time::SystemTime;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::StreamExt as _;
use serde::Deserialize;
use sha2::Digest as _;

use super::session::{Progress, Receiving, Session};
use super::{
    new_id, valid_id, FileResource, StoredFile, CHUNK_GRANULARITY, GOOGLE_ORIGIN, KEPT_FILE_BYTES,
};
use crate::auth::{check_auth, header_str};
use crate::errors::{ApiError, Wrap};
use crate::handler::not_found_page;
use crate::project::project_of;
use crate::reply::{Payload, JSON};
use crate::resource_api::ResourceRoute;
use crate::route::{Query, Route, VERSIONS};
use crate::state::{InFlight, Shared};

/// A start body is a small JSON object; more is not a start request.
const MAX_START_BODY: usize = 1024 * 1024;

/// Every request to `/upload/...`.
pub(crate) async fn serve(
    req: HttpRequest,
    payload: web::Payload,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let shared: Arc<Shared> = shared.into_inner();
    let _in_flight = InFlight::new(Arc::clone(&shared));
    let version = req
        .path()
        .strip_prefix("/upload/")
        .and_then(|rest| rest.strip_suffix("/files"))
        .and_then(|v| VERSIONS.iter().find(|known| **known == v).copied());
    let post = req.method() == actix_web::http::Method::POST;
    let upload_id = query_value(req.query_string(), "upload_id");
    match (version, post, upload_id) {
        (Some(version), true, None) => start(&req, payload, &shared, version).await,
        (Some(_), true, Some(id)) => {
            let cfg = shared.config();
            // The chunk's bytes are not recorded: the headers say what was sent.
            shared.note_request(&req, &Bytes::new(), cfg.record);
            chunk(&req, payload, &shared, &id).await
        }
        _ => {
            let cfg = shared.config();
            shared.note_request(&req, &Bytes::new(), cfg.record);
            let page = not_found_page(req.path());
            let body = match page.payload {
                Payload::Full(b) => b,
                _ => Bytes::new(),
            };
            crate::deliver::builder(page.status, page.content_type).body(body)
        }
    }
}

fn query_value(query_string: &str, name: &str) -> Option<String> {
    web::Query::<Vec<(String, String)>>::from_query(query_string)
        .ok()?
        .into_inner()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

/// An answer to the upload URL: every one says where the session stands.
fn upload_answer(status: StatusCode, upload_status: &str) -> actix_web::HttpResponseBuilder {
    let mut b = crate::deliver::builder(status, JSON);
    b.insert_header(("x-goog-upload-status", upload_status));
    b
}

fn error_answer(e: &ApiError, upload_status: &str) -> HttpResponse {
    let status = StatusCode::from_u16(e.code).unwrap_or(StatusCode::BAD_REQUEST);
    upload_answer(status, upload_status).body(e.body(Wrap::Object))
}

#[derive(Default, Deserialize)]
struct StartBody {
    #[serde(default)]
    file: Option<StartFile>,
}

#[derive(Default, Deserialize)]
struct StartFile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "displayName", alias = "display_name")]
    display_name: Option<String>,
    #[serde(default, rename = "mimeType", alias = "mime_type")]
    mime_type: Option<String>,
    /// An int64, which protobuf JSON writes as a string but also reads as a number.
    #[serde(default, rename = "sizeBytes", alias = "size_bytes")]
    size_bytes: Option<serde_json::Value>,
}

async fn read_small(mut payload: web::Payload) -> Result<Bytes, ApiError> {
    let mut body = bytes::BytesMut::new();
    while let Some(piece) = payload.next().await {
        let piece = piece.map_err(|_| ApiError::invalid("Could not read the request body."))?;
        if body.len() + piece.len() > MAX_START_BODY {
            return Err(ApiError::invalid("Request payload size exceeds the limit."));
        }
        body.extend_from_slice(&piece);
    }
    Ok(body.freeze())
}

async fn start(
    req: &HttpRequest,
    payload: web::Payload,
    shared: &Arc<Shared>,
    version: &'static str,
) -> HttpResponse {
    let cfg = shared.config();
    let body = read_small(payload).await;
    shared.note_request(req, body.as_ref().unwrap_or(&Bytes::new()), cfg.record);
    let answer = body.and_then(|body| open_session(req, &body, shared, version));
    match answer {
        Ok(url) => crate::deliver::builder(StatusCode::OK, "text/plain; charset=utf-8")
            .insert_header(("x-goog-upload-url", url))
            .insert_header(("x-goog-upload-status", "active"))
            .insert_header((
                "x-goog-upload-chunk-granularity",
                CHUNK_GRANULARITY.to_string(),
            ))
            .finish(),
        Err(e) => {
            let status = StatusCode::from_u16(e.code).unwrap_or(StatusCode::BAD_REQUEST);
            crate::deliver::builder(status, JSON).body(e.body(Wrap::Object))
        }
    }
}

/// Checks a start request, opens its session and answers the session's URL.
fn open_session(
    req: &HttpRequest,
    body: &[u8],
    shared: &Shared,
    version: &'static str,
) -> Result<String, ApiError> {
    let cfg = shared.config();
    let query = Query::parse(req.query_string());
    let route = Route::Resource {
        version,
        kind: ResourceRoute::UploadFile,
    };
    let key = check_auth(req, &route, &query, &cfg)?;
    let protocol = header_str(req, "x-goog-upload-protocol").unwrap_or_default();
    let command = header_str(req, "x-goog-upload-command").unwrap_or_default();
    if !protocol.eq_ignore_ascii_case("resumable") || !command.trim().eq_ignore_ascii_case("start")
    {
        return Err(ApiError::invalid(
            "The mock serves only the resumable upload protocol: X-Goog-Upload-Protocol: \
             resumable with X-Goog-Upload-Command: start.",
        ));
    }
    let start: StartBody = if body.iter().all(u8::is_ascii_whitespace) {
        StartBody::default()
    } else {
        crate::request::parse_json(body)?
    };
    let file = start.file.unwrap_or_default();
    let declared = header_str(req, "x-goog-upload-header-content-length")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or_else(|| match &file.size_bytes {
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            _ => None,
        });
    let mime_type = file
        .mime_type
        .filter(|m| !m.is_empty())
        .or_else(|| header_str(req, "x-goog-upload-header-content-type").map(str::to_owned))
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    let wanted_id = match file.name.filter(|n| !n.is_empty()) {
        None => None,
        Some(name) => {
            let id = name.strip_prefix("files/").unwrap_or(&name).to_owned();
            if !valid_id(&id) {
                return Err(ApiError::invalid(format!(
                    "Invalid file name: {name}. File names may contain only lowercase \
                     letters, digits and dashes, at most 40 characters."
                )));
            }
            if shared.files.contains(&id) {
                return Err(ApiError::new(
                    409,
                    "ALREADY_EXISTS",
                    format!("File files/{id} already exists."),
                ));
            }
            Some(id)
        }
    };
    let upload_id = format!("mock-{}{}", new_id(), new_id());
    shared.files.sessions().sessions.insert(
        upload_id.clone(),
        Session {
            project: project_of(&cfg, &key),
            version,
            display_name: file.display_name,
            mime_type,
            declared,
            wanted_id,
            progress: Some(Progress::new()),
            file_id: None,
        },
    );
    let origin = if cfg.upload_url_google {
        GOOGLE_ORIGIN
    } else {
        shared.base_url.as_str()
    };
    let mut url =
        format!("{origin}/upload/{version}/files?upload_id={upload_id}&upload_protocol=resumable");
    // Reported of Gemini: a start authorised by `?key=` gets the key back in the URL.
    if header_str(req, "x-goog-api-key").is_none() {
        if let Some(k) = &query.key {
            url.push_str("&key=");
            url.push_str(&percent_encode(k));
        }
    }
    Ok(url)
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// What one request to an upload URL asks for.
#[derive(Default)]
struct Commands {
    upload: bool,
    finalize: bool,
    query: bool,
    cancel: bool,
}

impl Commands {
    fn parse(header: &str) -> Option<Commands> {
        let mut c = Commands::default();
        for word in header.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word.to_ascii_lowercase().as_str() {
                "upload" => c.upload = true,
                "finalize" => c.finalize = true,
                "query" => c.query = true,
                "cancel" => c.cancel = true,
                _ => return None,
            }
        }
        let any = c.upload || c.finalize || c.query || c.cancel;
        let alone = !(c.query || c.cancel) || !(c.upload || c.finalize);
        (any && alone).then_some(c)
    }
}

/// One request to an upload URL.
async fn chunk(
    req: &HttpRequest,
    mut payload: web::Payload,
    shared: &Arc<Shared>,
    upload_id: &str,
) -> HttpResponse {
    let Some(commands) = header_str(req, "x-goog-upload-command").and_then(Commands::parse) else {
        let e = ApiError::invalid(
            "X-Goog-Upload-Command must be upload, finalize, \"upload, finalize\", query \
             or cancel.",
        );
        return error_answer(&e, "active");
    };
    let offset = header_str(req, "x-goog-upload-offset").map(|v| v.trim().parse::<u64>());
    let taken = {
        let mut inner = shared.files.sessions();
        let Some(session) = inner.sessions.get_mut(upload_id) else {
            let e = ApiError::new(404, "NOT_FOUND", "Upload session not found.");
            return error_answer(&e, "final");
        };
        if commands.cancel {
            inner.sessions.remove(upload_id);
            return upload_answer(StatusCode::OK, "cancelled").finish();
        }
        if let Some(file_id) = session.file_id.clone() {
            let done = Done {
                project: session.project.clone(),
                version: session.version,
                size: session.declared.unwrap_or_default(),
                file_id,
            };
            // The store's lock is the sessions' lock: let go of it first.
            drop(inner);
            return after_final(shared, &done, &commands);
        }
        let Some(progress) = session.progress.as_ref() else {
            let e = ApiError::new(
                409,
                "ABORTED",
                "Another request of this upload is still being received.",
            );
            return error_answer(&e, "active");
        };
        let received = progress.received;
        if commands.query {
            return upload_answer(StatusCode::OK, "active")
                .insert_header(("x-goog-upload-size-received", received.to_string()))
                .finish();
        }
        match offset {
            Some(Ok(n)) if n == received => {}
            None if !commands.upload => {}
            Some(Ok(n)) => {
                let e = ApiError::invalid(format!(
                    "X-Goog-Upload-Offset {n} does not match the {received} bytes received so \
                     far; query the upload for its size."
                ));
                return upload_answer(StatusCode::BAD_REQUEST, "active")
                    .insert_header(("x-goog-upload-size-received", received.to_string()))
                    .body(e.body(Wrap::Object));
            }
            _ => {
                let e = ApiError::invalid("X-Goog-Upload-Offset is missing or not a number.");
                return error_answer(&e, "active");
            }
        }
        session.progress.take()
    };
    if commands.upload {
        let progress = taken.unwrap_or_else(Progress::new);
        let mut receiving = Receiving::new(Arc::clone(shared), upload_id.to_owned(), progress);
        let mut hasher = receiving.progress().hasher.clone();
        let mut count: u64 = 0;
        let mut kept = receiving.progress().data.as_ref().map(|_| Vec::new());
        let before = receiving.progress().received;
        while let Some(piece) = payload.next().await {
            let Ok(piece) = piece else {
                // The client went away or sent a broken body: nothing of it counts.
                let e = ApiError::invalid("The upload chunk could not be read.");
                return error_answer(&e, "active");
            };
            hasher.update(&piece);
            count += piece.len() as u64;
            if before + count > KEPT_FILE_BYTES {
                kept = None;
            } else if let Some(kept) = kept.as_mut() {
                kept.extend_from_slice(&piece);
            }
        }
        let progress = receiving.progress();
        progress.hasher = hasher;
        progress.received = before + count;
        match (progress.data.as_mut(), kept) {
            (Some(data), Some(kept)) => data.extend_from_slice(&kept),
            _ => progress.data = None,
        }
        // Dropping `receiving` puts the session's progress back.
    } else if let Some(progress) = taken {
        let mut inner = shared.files.sessions();
        if let Some(session) = inner.sessions.get_mut(upload_id) {
            session.progress = Some(progress);
        }
    }
    if commands.finalize {
        finalize(shared, upload_id)
    } else {
        let received = {
            let inner = shared.files.sessions();
            inner
                .sessions
                .get(upload_id)
                .and_then(|s| s.progress.as_ref())
                .map_or(0, |p| p.received)
        };
        upload_answer(StatusCode::OK, "active")
            .insert_header(("x-goog-upload-size-received", received.to_string()))
            .finish()
    }
}

/// What a finalized session still knows.
struct Done {
    project: String,
    version: &'static str,
    size: u64,
    file_id: String,
}

/// A request to a session that already made its file: a repeated finalize or a query
/// gets the final answer again (a client retrying a lost answer); more bytes do not fit.
fn after_final(shared: &Shared, done: &Done, commands: &Commands) -> HttpResponse {
    let (size, file_id) = (done.size, done.file_id.as_str());
    if commands.upload {
        let e = ApiError::invalid("The upload was already finalized.");
        return error_answer(&e, "final");
    }
    match shared.files.get(&done.project, file_id) {
        Ok(file) => final_answer(shared, &file, file_id, done.version),
        Err(_) => upload_answer(StatusCode::OK, "final")
            .insert_header(("x-goog-upload-size-received", size.to_string()))
            .body("{}\n"),
    }
}

/// Makes the file from a session whose bytes are all in.
fn finalize(shared: &Shared, upload_id: &str) -> HttpResponse {
    let cfg = shared.config();
    let mut inner = shared.files.sessions();
    let Some(session) = inner.sessions.get_mut(upload_id) else {
        let e = ApiError::new(404, "NOT_FOUND", "Upload session not found.");
        return error_answer(&e, "final");
    };
    let Some(progress) = session.progress.as_ref() else {
        let e = ApiError::new(
            409,
            "ABORTED",
            "Another request of this upload is still being received.",
        );
        return error_answer(&e, "active");
    };
    if let Some(declared) = session.declared.filter(|d| *d != progress.received) {
        // The session cannot be completed any more: it is dropped, as Google cancels it.
        let received = progress.received;
        inner.sessions.remove(upload_id);
        let e = ApiError::invalid(format!(
            "Failed to finalize the upload: {received} bytes were received but the start \
             declared {declared}."
        ));
        return error_answer(&e, "final");
    }
    let now = SystemTime::now();
    let id = session.wanted_id.clone().unwrap_or_else(new_id);
    let file = StoredFile {
        project: session.project.clone(),
        display_name: session.display_name.clone(),
        mime_type: session.mime_type.clone(),
        size: progress.received,
        sha256_hex: progress.hex_digest(),
        created: now,
        active_at: now + cfg.file_processing,
        expires: now + cfg.file_ttl,
        data: progress.data.clone().map(Bytes::from),
    };
    session.file_id = Some(id.clone());
    session.declared = Some(progress.received);
    // The bytes are the file's now; the session only answers retries.
    session.progress = None;
    let version = session.version;
    drop(inner);
    let answer = final_answer(shared, &file, &id, version);
    shared.files.insert(id, file);
    answer
}

fn final_answer(shared: &Shared, file: &StoredFile, id: &str, version: &str) -> HttpResponse {
    let origin = super::api::origin(shared);
    let body = crate::reply::pretty(&Uploaded {
        file: file.resource(id, &origin, version),
    });
    upload_answer(StatusCode::OK, "final")
        .insert_header(("x-goog-upload-size-received", file.size.to_string()))
        .body(body)
}

/// The final answer's body: the file, wrapped.
#[derive(serde::Serialize)]
struct Uploaded<'a> {
    file: FileResource<'a>,
}
