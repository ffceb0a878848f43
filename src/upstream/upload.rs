//! The data of a resumable file upload, streamed to Gemini as it arrives.
//!
//! A chunk (8 MiB from the SDKs, up to `MAX_UPLOAD_BYTES` in one request)
//! cannot be held and replayed, so it is not a pipeline call: one attempt,
//! with the key that started the upload, never retried, never failed over
//! (another key's project does not know the upload). The handler feeds the
//! bytes through a small bounded channel, so a slow Gemini slows the client
//! down instead of filling memory.

use super::classify::{self, KeyOwner, KeyVerdict};
use super::egress::Clients;
use super::pipeline::{failure_error, Credential, UpstreamContext};
use super::pool::Permit;
use crate::errors::{ApiError, ErrorCode};
use actix_web::body::SizedStream;
use awc::http::header::{HeaderName, HeaderValue};
use awc::http::{Method, StatusCode};
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Gemini's answers to upload commands are a small JSON object at most.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// Headers of Gemini's answer that go back to the client.
const PASSED_HEADERS: &[&str] = &[
    "content-type",
    "x-goog-upload-status",
    "x-goog-upload-size-received",
    "x-goog-upload-chunk-granularity",
];

/// One request to an upload URL, as the route describes it.
pub struct UploadCall {
    /// `/upload/v1beta/files?upload_id=…&upload_protocol=resumable`, from validated parts.
    pub path_and_query: String,
    /// The server key that started the upload, or the client's own key when
    /// it sent one with this chunk; `None`: the upload id alone authorises it.
    pub credential: Option<Credential>,
    /// The client's `X-Goog-Upload-*` headers (and its `Content-Type`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The body's length, from the client's `Content-Length`; `None`: sent
    /// chunked, as it came (an HTTP/2 or chunked request without one).
    pub length: Option<u64>,
    /// The body, fed by the handler. An `Err` aborts the request before its
    /// end, so Gemini never takes a cut body for a whole one (and never
    /// finalizes a file from it).
    pub body: mpsc::Receiver<Result<Bytes, std::io::Error>>,
    /// When the handler last fed a byte, in ms since `epoch`: Gemini has
    /// `idle` from then to answer.
    pub activity: Arc<Activity>,
    pub idle: Duration,
}

/// When the body last moved, shared by the handler (who feeds it) and the
/// call (who waits for Gemini's answer after it).
pub struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
        })
    }

    pub fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let now = self.epoch.elapsed();
        now.saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// Gemini's answer to an upload request.
pub struct UploadReply {
    pub status: StatusCode,
    /// `OK`, or the code of the failure Gemini's answer is (for the access log).
    pub code: &'static str,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

/// Sends the chunk and reads Gemini's answer. A key-level refusal takes the
/// key out of rotation and is never relayed; anything else Gemini says goes
/// back as it came, unless it quotes a server key.
pub async fn run(
    clients: &Clients,
    context: &UpstreamContext,
    call: UploadCall,
    _permit: Permit,
) -> Result<UploadReply, ApiError> {
    let url = format!("{}{}", context.base_url, call.path_and_query);
    let (key, index) = match &call.credential {
        None => (None, None),
        Some(Credential::Client(key)) => (Some(key.clone()), None),
        Some(credential) => {
            let only = super::pipeline::pinned_key(credential);
            match context.keys.pick("", &[], only) {
                Ok(picked) => (Some(picked.header), Some(picked.index)),
                Err(_) => {
                    return Err(ApiError::new(
                        ErrorCode::UpstreamAuthError,
                        "the server key that started this upload is out of rotation; \
                         start the upload again",
                    ))
                }
            }
        }
    };
    let route = super::pipeline::route(
        &context.egress,
        call.credential.as_ref().unwrap_or(&Credential::Server),
        index,
    );
    let mut request = clients
        .route(route)
        .request(Method::POST, url.as_str())
        .timeout(Duration::from_secs(24 * 3600));
    for (name, value) in call.headers {
        request = request.insert_header((name, value));
    }
    if let Some(key) = key {
        request = request.insert_header((HeaderName::from_static("x-goog-api-key"), key));
    }
    let body = tokio_stream_of(call.body);
    let started = Instant::now();
    let sent = match call.length {
        Some(length) => request.send_body(SizedStream::new(length, body)),
        None => request.send_stream(body),
    };
    let activity = call.activity.clone();
    let idle = call.idle;
    let watchdog = async move {
        loop {
            let idle_for = activity.idle_for();
            if idle_for >= idle {
                return;
            }
            actix_rt::time::sleep(idle - idle_for).await;
        }
    };
    let mut response = tokio::select! {
        sent = sent => sent.map_err(|error| {
            log::debug!("upload to Gemini failed: {error}");
            ApiError::new(
                ErrorCode::UpstreamUnavailable,
                "the upload could not be passed to Gemini; query its status and resume",
            )
        })?,
        () = watchdog => {
            return Err(ApiError::new(
                ErrorCode::UpstreamTimeout,
                "Gemini did not answer the upload in time; query its status and resume",
            ))
        }
    };
    let status = response.status();
    let headers: Vec<(HeaderName, HeaderValue)> = response
        .headers()
        .iter()
        .filter(|(name, _)| PASSED_HEADERS.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let body = tokio::time::timeout(idle, response.body().limit(MAX_ANSWER_BYTES))
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::UpstreamTimeout,
                "Gemini's answer to the upload did not arrive in time",
            )
        })?
        .map_err(|_| {
            ApiError::new(
                ErrorCode::UpstreamError,
                "Gemini's answer to the upload could not be read",
            )
        })?;
    let label = context.metrics.model_label("");
    let mut code = "OK";
    if !status.is_success() {
        let owner = if index.is_some() {
            KeyOwner::Server
        } else {
            KeyOwner::Client
        };
        let failure = classify::classify_failure(status.as_u16(), &body, owner);
        code = failure.code.as_str();
        context
            .metrics
            .upstream_call(&label, code, started.elapsed());
        if let (Some(index), KeyVerdict::Refused) = (index, &failure.key) {
            context.keys.refuse(index);
            super::pipeline::report_holdings(context, index);
            return Err(failure_error(failure));
        }
        if index.is_some() && context.leak_guard.leaks(&body) {
            log::warn!("Gemini's answer to an upload quoted a server key; it was withheld");
            return Err(failure_error(failure));
        }
    } else {
        context
            .metrics
            .upstream_call(&label, "ok", started.elapsed());
    }
    Ok(UploadReply {
        status,
        code,
        headers,
        body,
    })
}

fn tokio_stream_of(
    mut receiver: mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}
