//! Pass-through calls for the native Gemini and OpenAI-compatible routes: the
//! request forwarded as the client wrote it, Gemini's status, headers and body
//! passed back unchanged, and streams relayed chunk by chunk as they arrive.
//!
//! Failures Gemini reports before the first byte follow the same key-pool and
//! retry policy as `/gemini-proxy` (SPEC §5); when it gives up, Gemini's last
//! answer goes back as it came. Once a stream's head has gone to the client,
//! nothing is retried.

use super::call::{with_attempts, Attempt, CallOutcome, Credential, UpstreamContext};
use super::classify::{self, Failure, KeyOwner};
use super::client::MAX_RESPONSE_BYTES;
use super::stream_check::StreamCheck;
use awc::http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use awc::http::{Method, StatusCode};
use awc::Client;
use bytes::Bytes;
use futures_util::StreamExt;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Chunks buffered between the upstream actor and the client's connection: a
/// few, so a slow client slows the upstream read instead of filling memory.
const STREAM_BUFFER: usize = 8;
/// Error bodies are read whole to classify them; they are small.
const MAX_ERROR_BODY_BYTES: usize = 1024 * 1024;
/// Response headers passed back to the client; everything else is hop-by-hop
/// or Google-internal.
const PASSED_RESPONSE_HEADERS: &[&str] = &["content-type", "retry-after", "server-timing"];

/// How the key travels upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyStyle {
    /// `x-goog-api-key` (native routes).
    GoogHeader,
    /// `Authorization: Bearer` (OpenAI-compatible routes).
    Bearer,
}

/// Which framing a streamed body uses, to tell a finished stream from a cut one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    /// Not a stream: the body is read whole (bounded) and sent on.
    Unary,
    /// Gemini's `?alt=sse` events.
    GeminiSse,
    /// Gemini's streamed JSON array (no `alt=sse`).
    GeminiJsonArray,
    /// OpenAI's SSE, ending in `data: [DONE]`.
    OpenAiSse,
}

/// A pass-through call to make.
pub struct ForwardCall {
    pub method: Method,
    /// Built from validated parts only.
    pub url: String,
    pub credential: Credential,
    pub key_style: KeyStyle,
    /// The client's headers that may go upstream.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    pub stream: StreamKind,
    /// For metrics; `other` unless Gemini has answered it before.
    pub model: String,
    /// Unary calls: the whole call. Streams: the wait for the head.
    pub deadline: Instant,
    /// Streams: the longest gap between chunks.
    pub gap_timeout: Duration,
}

/// Gemini's answer, to pass back.
pub struct ForwardReply {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: ForwardBody,
}

pub enum ForwardBody {
    Full(Bytes),
    /// Chunks as they arrive; an `Err` means the stream broke and the client's
    /// connection must end without a clean end of stream.
    Stream(mpsc::Receiver<Result<Bytes, StreamBroken>>),
}

/// The upstream stream ended abnormally (cut, timed out, or malformed end).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the upstream stream broke: {0}")]
pub struct StreamBroken(pub &'static str);

pub async fn forward(
    client: &Client,
    context: &UpstreamContext,
    call: ForwardCall,
) -> CallOutcome<ForwardReply> {
    let model = call.model.clone();
    let credential = call.credential.clone();
    let deadline = call.deadline;
    with_attempts(context, &credential, &model, deadline, |key, owner| {
        forward_once(client, &call, key, owner)
    })
    .await
}

async fn forward_once(
    client: &Client,
    call: &ForwardCall,
    key: HeaderValue,
    owner: KeyOwner,
) -> Attempt<ForwardReply> {
    let deadline = tokio::time::Instant::from_std(call.deadline);
    let mut request = client.request(call.method.clone(), &call.url);
    for (name, value) in &call.headers {
        request = request.insert_header((name.clone(), value.clone()));
    }
    request = match call.key_style {
        KeyStyle::GoogHeader => request.insert_header(("x-goog-api-key", key)),
        KeyStyle::Bearer => request.insert_header((AUTHORIZATION, bearer(&key))),
    };
    let sent = tokio::time::timeout_at(deadline, request.send_body(call.body.clone())).await;
    let mut response = match sent {
        Err(_) => return failed(classify::deadline_passed()),
        Ok(Err(e)) => {
            log::debug!("pass-through call failed before an answer: {e}");
            return failed(classify::classify_send_error(&e));
        }
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    let headers = passed_headers(response.headers());

    if !status.is_success() {
        let body =
            tokio::time::timeout_at(deadline, response.body().limit(MAX_ERROR_BODY_BYTES)).await;
        let body = match body {
            Err(_) => return failed(classify::deadline_passed()),
            Ok(Err(e)) => return failed(classify::classify_payload_error(&e)),
            Ok(Ok(body)) => body,
        };
        let failure = classify::classify_failure(status.as_u16(), &body, owner);
        return Attempt::Failure {
            failure,
            answer: Some(ForwardReply {
                status,
                headers,
                body: ForwardBody::Full(body),
            }),
        };
    }

    if call.stream == StreamKind::Unary {
        return match tokio::time::timeout_at(deadline, response.body().limit(MAX_RESPONSE_BYTES))
            .await
        {
            Err(_) => failed(classify::deadline_passed()),
            Ok(Err(e)) => failed(classify::classify_payload_error(&e)),
            Ok(Ok(body)) => Attempt::Success(ForwardReply {
                status,
                headers,
                body: ForwardBody::Full(body),
            }),
        };
    }

    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let check = StreamCheck::new(call.stream, response.headers());
    // The pump outlives this attempt: it runs on the actor's thread until the
    // stream ends or the client goes away (the receiver is dropped).
    actix_rt::spawn(pump(response, tx, check, call.gap_timeout));
    Attempt::Success(ForwardReply {
        status,
        headers,
        body: ForwardBody::Stream(rx),
    })
}

/// Relays upstream chunks to the client until the stream ends, breaks, stalls
/// past `gap`, or the client goes away.
async fn pump<S, E>(
    mut payload: S,
    tx: mpsc::Sender<Result<Bytes, StreamBroken>>,
    mut check: StreamCheck,
    gap: Duration,
) where
    S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    loop {
        let next = tokio::select! {
            next = tokio::time::timeout(gap, payload.next()) => next,
            // The client went away: dropping the payload closes the upstream connection.
            _ = tx.closed() => return,
        };
        let item = match next {
            Err(_) => Err(StreamBroken(
                "no data from Gemini within the upstream timeout",
            )),
            Ok(None) => match check.finish() {
                Ok(()) => return,
                Err(broken) => Err(broken),
            },
            Ok(Some(Err(e))) => {
                log::debug!("upstream stream broke: {e}");
                Err(StreamBroken("the connection to Gemini broke mid-stream"))
            }
            Ok(Some(Ok(chunk))) => {
                check.observe(&chunk);
                Ok(chunk)
            }
        };
        let broken = item.is_err();
        if tx.send(item).await.is_err() || broken {
            return;
        }
    }
}

fn failed<T>(failure: Failure) -> Attempt<T> {
    Attempt::Failure {
        failure,
        answer: None,
    }
}

fn bearer(key: &HeaderValue) -> HeaderValue {
    let mut value = b"Bearer ".to_vec();
    value.extend_from_slice(key.as_bytes());
    let mut header =
        HeaderValue::from_bytes(&value).unwrap_or_else(|_| HeaderValue::from_static(""));
    header.set_sensitive(true);
    header
}

fn passed_headers(headers: &awc::http::header::HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    headers
        .iter()
        .filter(|(name, _)| PASSED_RESPONSE_HEADERS.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}
