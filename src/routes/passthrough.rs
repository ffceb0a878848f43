//! What the native Gemini and OpenAI-compatible routes share: authenticate and
//! limit the client like `/gemini-proxy`, forward the request through the
//! upstream actors, and pass Gemini's answer back (streams chunk by chunk).

use crate::auth::{self, Surface};
use crate::errors::{ApiError, ErrorCode, ResponseCode};
use crate::keys::Admission;
use crate::model_id::ModelId;
use crate::request_log::RequestLog;
use crate::routes::proxy::read_body;
use crate::startup::AppState;
use crate::upstream::forward::{
    ForwardBody, ForwardCall, ForwardReply, KeyStyle, StreamBroken, StreamKind,
};
use crate::upstream::gemini::UsageMetadata;
use crate::upstream::pool::Permit;
use crate::upstream::Credential;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::Stream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::sync::mpsc;

/// Client request headers that may go upstream; everything else (the client's
/// `Authorization`, cookies, hop-by-hop headers, `X-Server-Timeout`,
/// `Accept-Encoding`) stays here. Without `Accept-Encoding`, Gemini answers
/// uncompressed, so bodies pass back exactly as they came and streams are
/// never held in a decompressor.
const FORWARDED_HEADERS: &[&str] = &[
    "content-type",
    "accept",
    "user-agent",
    "x-goog-api-client",
    "accept-language",
];
/// Query parameters that may go upstream (SPEC §3); `key` never does.
const FORWARDED_QUERY: &[&str] = &["alt", "pageSize", "pageToken"];

/// The API versions the service passes through.
pub const VERSIONS: &[&str] = &["v1", "v1beta", "v1alpha"];

/// A pass-through request, described by the route that received it.
pub struct Target {
    pub surface: Surface,
    pub method: Method,
    /// The upstream path, built from validated parts, without the query.
    pub path: String,
    /// The model the call uses (checked against the allow-list), if any.
    pub model: Option<ModelId>,
    pub stream: StreamKind,
    /// Whether Gemini's answer carries `usageMetadata` worth counting.
    pub counts_tokens: bool,
}

/// The version segment, or NOT_FOUND.
pub fn version(raw: &str) -> Result<&str, ApiError> {
    VERSIONS
        .iter()
        .find(|v| **v == raw)
        .copied()
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "there is no such API version"))
}

/// Authenticates and takes one rate-limit token, before any body is read.
pub async fn admit(
    req: &HttpRequest,
    state: &AppState,
    surface: Surface,
) -> Result<(Admission, Option<String>), ApiError> {
    let keys = auth::sdk_keys(req, surface);
    let admission = auth::admit(req, state, keys.client_key).await?;
    Ok((admission, keys.own_key))
}

/// A GET that uses no model (model lists, a model's description): admit the
/// client, then forward to `path` — whose own error, if any, comes after the
/// client's (SPEC §2's order: the key before the model).
pub async fn forward_get(
    req: &HttpRequest,
    state: &AppState,
    surface: Surface,
    path: Result<String, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let (admission, own_key) = admit(req, state, surface).await?;
    let target = Target {
        surface,
        method: Method::GET,
        path: path?,
        model: None,
        stream: StreamKind::Unary,
        counts_tokens: false,
    };
    forward(req, state, &admission, own_key, target, Bytes::new()).await
}

/// Checks the model and the own-key policy, then forwards `body`.
pub async fn forward(
    req: &HttpRequest,
    state: &AppState,
    admission: &Admission,
    own_key: Option<String>,
    target: Target,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let client = &admission.client;
    let credential = match own_key {
        None => Credential::Server,
        Some(_) if !client.allow_own_key => {
            return Err(ApiError::new(
                ErrorCode::OwnKeyNotAllowed,
                "this client may not send its own Gemini key",
            ))
        }
        Some(key) => {
            let mut value = HeaderValue::from_str(&key).map_err(|_| {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    "the Gemini key is not a valid key",
                )
            })?;
            value.set_sensitive(true);
            Credential::Client(value)
        }
    };
    let model_id = target.model.as_ref().map(ModelId::display_id);
    if let Some(model) = &model_id {
        RequestLog::update(req, |log| log.model = Some(model.clone()));
        if !client.may_use_model(model) {
            return Err(ApiError::new(
                ErrorCode::ModelNotAllowed,
                format!("this client may not use the model `{model}`"),
            ));
        }
    }
    let permit = state.upstream.admit()?;
    let started = Instant::now();
    let call = ForwardCall {
        method: target.method,
        url: upstream_url(state, &target.path, req.query_string()),
        credential,
        key_style: match target.surface {
            Surface::Gemini => KeyStyle::GoogHeader,
            Surface::OpenAi => KeyStyle::Bearer,
        },
        headers: forwarded_headers(req),
        body,
        stream: target.stream,
        model: model_id.clone().unwrap_or_default(),
        deadline: started + state.limits.upstream_timeout,
        gap_timeout: state.limits.upstream_timeout,
    };
    let outcome = state.upstream.forward(call).await;
    RequestLog::update(req, |log| log.attempts = outcome.attempts);
    let reply = outcome.result?;
    let usage = Usage {
        client: client.name.clone(),
        model_label: outcome.model_label,
        counts: target.counts_tokens && reply.status.is_success(),
        state: state.metrics.clone(),
    };
    Ok(respond(req, reply, usage, permit, started))
}

fn upstream_url(state: &AppState, path: &str, query: &str) -> String {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            FORWARDED_QUERY.contains(&name)
                && value.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'%')
                })
        })
        .collect();
    let base = state.upstream.context().base_url.as_str();
    if kept.is_empty() {
        format!("{base}{path}")
    } else {
        format!("{base}{path}?{}", kept.join("&"))
    }
}

fn forwarded_headers(req: &HttpRequest) -> Vec<(HeaderName, HeaderValue)> {
    req.headers()
        .iter()
        .filter(|(name, _)| FORWARDED_HEADERS.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

/// Where the tokens of an answer are counted.
struct Usage {
    client: Arc<str>,
    model_label: String,
    counts: bool,
    state: Arc<crate::metrics::Metrics>,
}

impl Usage {
    fn record(&self, usage: UsageMetadata) {
        if self.counts {
            self.state.count_tokens(
                &self.client,
                &self.model_label,
                usage.prompt_token_count,
                usage.candidates_token_count,
                usage.thoughts_token_count,
            );
        }
    }
}

fn respond(
    req: &HttpRequest,
    reply: ForwardReply,
    usage: Usage,
    permit: Permit,
    started: Instant,
) -> HttpResponse {
    let mut response = HttpResponse::build(reply.status);
    for (name, value) in reply.headers {
        response.insert_header((name, value));
    }
    // Pass-through answers carry Gemini's status; the log and metrics still want a code.
    let code = if reply.status.is_success() {
        "OK"
    } else {
        upstream_code(reply.status.as_u16())
    };
    response.extensions_mut().insert(ResponseCode(code));
    match reply.body {
        ForwardBody::Full(body) => {
            if let Some(found) = usage_in(&body) {
                usage.record(found);
                RequestLog::update(req, |log| log.tokens = found.total_token_count);
            }
            drop(permit);
            response.body(body)
        }
        ForwardBody::Stream(receiver) => response.streaming(RelayedStream {
            receiver,
            usage,
            last_usage: None,
            started,
            first_byte_seen: false,
            broken: None,
            _permit: permit,
        }),
    }
}

/// The SPEC code that matches an upstream status passed through as is.
fn upstream_code(status: u16) -> &'static str {
    match status {
        400 => ErrorCode::UpstreamBadRequest.as_str(),
        401 | 403 => ErrorCode::UpstreamAuthError.as_str(),
        404 => ErrorCode::ModelNotFound.as_str(),
        429 => ErrorCode::QuotaError.as_str(),
        500 | 502 | 503 => ErrorCode::UpstreamUnavailable.as_str(),
        504 => ErrorCode::UpstreamTimeout.as_str(),
        _ => ErrorCode::UpstreamError.as_str(),
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageOnly {
    #[serde(default)]
    usage_metadata: Option<UsageMetadata>,
}

/// `usageMetadata` of a generateContent answer (or of one stream event).
fn usage_in(json: &[u8]) -> Option<UsageMetadata> {
    serde_json::from_slice::<UsageOnly>(json)
        .ok()?
        .usage_metadata
}

/// The client's side of a relayed stream. Holds the pool permit until the
/// stream ends or the client goes away, and counts tokens from the last
/// `usageMetadata` seen (Gemini repeats it, cumulative, on every event).
struct RelayedStream {
    receiver: mpsc::Receiver<Result<Bytes, StreamBroken>>,
    usage: Usage,
    last_usage: Option<UsageMetadata>,
    started: Instant,
    first_byte_seen: bool,
    /// A break held back for one poll; see `poll_next`.
    broken: Option<StreamBroken>,
    _permit: Permit,
}

impl RelayedStream {
    fn observe(&mut self, chunk: &[u8]) {
        if !self.first_byte_seen {
            self.first_byte_seen = true;
            self.usage
                .state
                .stream_first_byte
                .with_label_values(&[&self.usage.model_label])
                .observe(self.started.elapsed().as_secs_f64());
        }
        if self.usage.counts && chunk.windows(13).any(|w| w == b"usageMetadata") {
            for line in chunk.split(|b| *b == b'\n') {
                if let Some(found) = line.strip_prefix(b"data: ").and_then(usage_in) {
                    self.last_usage = Some(found);
                }
            }
        }
    }
}

impl Stream for RelayedStream {
    type Item = Result<Bytes, StreamBroken>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(broken) = self.broken.take() {
            return Poll::Ready(Some(Err(broken)));
        }
        match self.receiver.poll_recv(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.observe(&chunk);
                Poll::Ready(Some(Ok(chunk)))
            }
            // actix drops the response bytes it has not written yet when a body
            // fails, which can be the whole head and the events before the break.
            // Pausing once lets it flush them, so the client gets what Gemini sent
            // and then a cut connection, not nothing.
            Poll::Ready(Some(Err(broken))) => {
                self.broken = Some(broken);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            other => other,
        }
    }
}

impl Drop for RelayedStream {
    fn drop(&mut self) {
        if let Some(usage) = self.last_usage.take() {
            self.usage.record(usage);
        }
    }
}

/// Reads a pass-through request body within `MAX_BODY_BYTES`.
pub async fn body(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<Bytes, ApiError> {
    read_body(req, payload, state.limits.max_body_bytes).await
}
