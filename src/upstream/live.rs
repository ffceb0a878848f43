//! The Live API's upstream side (docs/api.md#the-live-api): one WebSocket to
//! Gemini per client session, opened and relayed by an upstream actor with
//! its own awc client. Frames go both ways as they come, whatever their
//! opcode; nothing is added, dropped or rewritten, since the python SDK fails
//! on a message it does not know. Every buffer between the two sockets is
//! bounded: a client that stops reading stops the relay reading Gemini.

use super::egress::Clients;
use super::pipeline::{self, Credential, UpstreamContext};
use super::pool::Permit;
use super::relay::StreamEnd;
use super::usage::Tokens;
use crate::live_sessions::Stop;
use crate::quota::Charge;
use actix_ws::{CloseCode, CloseReason, Message, Session};
use awc::http::header::{HeaderName, HeaderValue};
use awc::ws::{Frame, Message as Outgoing};
use bytes::Bytes;
use bytestring::ByteString;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Largest frame either side may send: Live audio and video chunks are far
/// smaller; a bound keeps one frame from holding unbounded memory.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// Other server keys tried when Gemini refuses one at connect time.
const MAX_FAILOVERS: usize = 2;
/// How long a close frame may wait for a client that does not read.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// A client's frame on its way to Gemini, holding its share of the
/// session's byte budget until it is sent.
pub type Inbound = (Message, tokio::sync::OwnedSemaphorePermit);

/// What a session did, for its access line (shared with the worker's side).
#[derive(Debug, Default)]
pub struct LiveTally {
    pub to_gemini: AtomicU64,
    pub to_client: AtomicU64,
    pub tokens: AtomicU64,
    /// The close frame that ended the session: code and who sent it.
    pub close: Mutex<Option<(u16, &'static str)>>,
}

impl LiveTally {
    /// The service closed the session itself, before any relay.
    pub fn closed_by_service(&self, code: u16) {
        self.closed(code, "service");
    }

    fn closed(&self, code: u16, by: &'static str) {
        let mut slot = self.close.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert((code, by));
    }
}

/// A session as the route hands it to an actor, once its first message passed.
pub struct LiveCall {
    /// `/ws/google.ai.generativelanguage.{v}.GenerativeService.BidiGenerateContent`.
    pub path: String,
    pub credential: Credential,
    /// The client's headers that may go upstream (user agent, API client).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The client's first message (`setup`), as it came.
    pub setup: FirstMessage,
    pub model: String,
    pub client: Arc<str>,
    /// The client's later frames, read by the worker that holds its socket.
    pub inbound: mpsc::Receiver<Inbound>,
    pub session: Session,
    pub charge: Charge,
    pub tally: Arc<LiveTally>,
    /// Told how the session ended before the client's side closes, so the
    /// access line (written when it closes) has it.
    pub end: Arc<StreamEnd>,
    pub stop: Stop,
    /// A session where neither side sent anything for this long is closed.
    pub idle: Duration,
    /// A client that takes none of Gemini's messages for this long is cut.
    pub stall: Duration,
    pub connect_timeout: Duration,
}

/// The client's first message, kept to send again to another key.
#[derive(Clone, Debug)]
pub enum FirstMessage {
    Text(ByteString),
    Binary(Bytes),
}

impl FirstMessage {
    fn outgoing(&self) -> Outgoing {
        match self {
            FirstMessage::Text(text) => Outgoing::Text(text.clone()),
            FirstMessage::Binary(bytes) => Outgoing::Binary(bytes.clone()),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            FirstMessage::Text(text) => text.as_bytes(),
            FirstMessage::Binary(bytes) => bytes,
        }
    }
}

/// How a session ended: the code its access line and metrics show.
#[derive(Debug)]
pub struct LiveOutcome {
    pub code: &'static str,
}

type Upstream = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

/// `ws://` or `wss://` for the base URL's `http://` or `https://`.
fn ws_url(base_url: &str, path: &str) -> String {
    let origin = base_url
        .strip_prefix("https://")
        .map(|rest| format!("wss://{rest}"))
        .or_else(|| {
            base_url
                .strip_prefix("http://")
                .map(|rest| format!("ws://{rest}"))
        })
        .unwrap_or_else(|| base_url.to_owned());
    format!("{origin}{path}")
}

/// What Gemini's close at connect time says about the key. Only the start of
/// the reason is read: Gemini quotes a client's unknown field names later in
/// its reasons, and a client must not be able to write a verdict on a key.
enum ConnectVerdict {
    KeyRefused,
    Quota,
    Other,
}

fn connect_verdict(reason: &CloseReason) -> ConnectVerdict {
    let text = reason.description.as_deref().unwrap_or("");
    // Gemini's key- and project-level refusals (docs/gemini-wire.md#the-live-api);
    // a probe confirms each before the key leaves the rotation.
    const KEY_LEVEL: [&str; 4] = [
        "API key not valid",
        "API key expired",
        "Permission denied: Consumer",
        "Generative Language API has not been used in project",
    ];
    if KEY_LEVEL.iter().any(|prefix| text.starts_with(prefix)) {
        ConnectVerdict::KeyRefused
    } else if text.starts_with("You exceeded your current quota")
        || text.starts_with("Resource has been exhausted")
        || text.starts_with("RESOURCE_EXHAUSTED")
    {
        ConnectVerdict::Quota
    } else {
        ConnectVerdict::Other
    }
}

fn close_reason(code: CloseCode, text: &str) -> CloseReason {
    CloseReason {
        code,
        description: Some(text.to_owned()),
    }
}

/// The first frame of a fresh upstream connection after `setup`.
enum Opened {
    Ready(Upstream, Frame),
    Closed(Option<CloseReason>),
    Failed(&'static str),
}

async fn open(
    ws: &awc::Client,
    context: &UpstreamContext,
    call: &LiveCall,
    key: HeaderValue,
) -> Opened {
    let mut request = ws
        .ws(ws_url(&context.base_url, &call.path))
        .max_frame_size(MAX_FRAME_BYTES)
        .set_header(HeaderName::from_static("x-goog-api-key"), key);
    for (name, value) in &call.headers {
        request = request.set_header(name.clone(), value.clone());
    }
    let connected = tokio::time::timeout(call.connect_timeout, request.connect()).await;
    let mut upstream = match connected {
        Ok(Ok((_, framed))) => framed,
        Ok(Err(error)) => {
            log::warn!("live: the WebSocket to Gemini did not open: {error}");
            return Opened::Failed("UPSTREAM_ERROR");
        }
        Err(_) => return Opened::Failed("UPSTREAM_TIMEOUT"),
    };
    if upstream.send(call.setup.outgoing()).await.is_err() {
        return Opened::Failed("UPSTREAM_ERROR");
    }
    match tokio::time::timeout(call.connect_timeout, upstream.next()).await {
        Ok(Some(Ok(Frame::Close(reason)))) => Opened::Closed(reason),
        Ok(Some(Ok(frame))) => Opened::Ready(upstream, frame),
        Ok(Some(Err(_)) | None) => Opened::Failed("UPSTREAM_ERROR"),
        Err(_) => Opened::Failed("UPSTREAM_TIMEOUT"),
    }
}

/// Connects with a key (the next server key after a key-level refusal or a
/// quota, as for every other call), then relays until either side ends.
pub async fn run(
    ws: &Clients,
    context: &UpstreamContext,
    call: LiveCall,
    permit: Permit,
) -> LiveOutcome {
    let end = call.end.clone();
    let tally = call.tally.clone();
    let outcome = connect_and_relay(ws, context, call, permit).await;
    finish(&end, &tally, outcome.code);
    outcome
}

/// Tells the access line how the session ended.
pub fn finish(end: &StreamEnd, tally: &LiveTally, code: &'static str) {
    let total = tally.tokens.load(Ordering::Relaxed);
    let tokens = (total > 0).then_some(Tokens {
        total,
        ..Tokens::default()
    });
    end.set(code, tokens);
}

async fn connect_and_relay(
    ws: &Clients,
    context: &UpstreamContext,
    mut call: LiveCall,
    _permit: Permit,
) -> LiveOutcome {
    let mut tried: Vec<usize> = Vec::new();
    let mut last_verdict: Option<ConnectVerdict> = None;
    let (upstream, first) = loop {
        let (key, index) = match &call.credential {
            Credential::Client(key) => (key.clone(), None),
            Credential::Server | Credential::Pinned(_) => match context.keys.pick(
                &call.model,
                &tried,
                crate::upstream::pipeline::pinned_key(&call.credential),
            ) {
                Ok(picked) => (picked.header, Some(picked.index)),
                Err(_) => {
                    // The keys this session tried say why none is left.
                    let (text, code) = match last_verdict {
                        Some(ConnectVerdict::KeyRefused) => (
                            "UPSTREAM_AUTH_ERROR: Gemini refused the service's keys",
                            "UPSTREAM_AUTH_ERROR",
                        ),
                        _ => (
                            "QUOTA_ERROR: no server key is available for this model now",
                            "QUOTA_ERROR",
                        ),
                    };
                    let reason = close_reason(CloseCode::Error, text);
                    return end_session(&mut call, None, reason, code).await;
                }
            },
        };
        let client = ws.route(pipeline::route(&context.egress, &call.credential, index));
        match open(client, context, &call, key).await {
            Opened::Ready(upstream, frame) => {
                // The client's setup, the first of its messages to reach Gemini.
                call.tally.to_gemini.fetch_add(1, Ordering::Relaxed);
                break (upstream, frame);
            }
            Opened::Closed(reason) => {
                let reason = reason.unwrap_or_else(|| close_reason(CloseCode::Error, ""));
                let retry = match (index, connect_verdict(&reason)) {
                    (Some(index), ConnectVerdict::KeyRefused) => {
                        // Asked by itself before it leaves the rotation.
                        context.keys.probe(index);
                        tried.push(index);
                        true
                    }
                    // Not a rest: a Live quota may be a cap on sessions open
                    // at once, which a client's own sessions can reach.
                    (Some(index), ConnectVerdict::Quota) => {
                        tried.push(index);
                        true
                    }
                    _ => false,
                };
                if retry && tried.len() <= MAX_FAILOVERS {
                    last_verdict = Some(connect_verdict(&reason));
                    continue;
                }
                // Gemini's own close, passed on as it came, unless it is about a server key.
                let (reason, code) = match (index, connect_verdict(&reason)) {
                    (Some(_), ConnectVerdict::KeyRefused) => (
                        close_reason(
                            CloseCode::Error,
                            "UPSTREAM_AUTH_ERROR: Gemini refused the service's keys",
                        ),
                        "UPSTREAM_AUTH_ERROR",
                    ),
                    (Some(_), ConnectVerdict::Quota) => (
                        close_reason(
                            CloseCode::Error,
                            "QUOTA_ERROR: Gemini's quota is used up for this model",
                        ),
                        "QUOTA_ERROR",
                    ),
                    _ => (guarded(context, &call.credential, reason), "UPSTREAM_ERROR"),
                };
                context.metrics.upstream_call(
                    &context.metrics.model_label(&call.model),
                    code,
                    Duration::ZERO,
                );
                return end_session(&mut call, None, reason, code).await;
            }
            Opened::Failed(code) => {
                let reason = close_reason(
                    CloseCode::Error,
                    &format!("{code}: the connection to Gemini failed"),
                );
                return end_session(&mut call, None, reason, code).await;
            }
        }
    };
    let label = context.metrics.model_succeeded(&call.model);
    context.metrics.upstream_call(&label, "ok", Duration::ZERO);
    relay(context, call, upstream, first, &label).await
}

/// Closes the client's side (and Gemini's, if open) with `reason`.
async fn end_session(
    call: &mut LiveCall,
    upstream: Option<&mut Upstream>,
    reason: CloseReason,
    code: &'static str,
) -> LiveOutcome {
    call.tally.closed(u16::from(reason.code), "service");
    finish(&call.end, &call.tally, code);
    if let Some(upstream) = upstream {
        let _ = upstream.send(Outgoing::Close(Some(reason.clone()))).await;
    }
    close_client(&call.session, Some(reason)).await;
    LiveOutcome { code }
}

/// Sends the client a close frame, waiting at most [`CLOSE_WAIT`] for a
/// client that does not read: the session ends either way.
pub async fn close_client(session: &Session, reason: Option<CloseReason>) {
    let _ = tokio::time::timeout(CLOSE_WAIT, session.clone().close(reason)).await;
}

/// Gemini's close reason, unless it quotes a server key (its key-level
/// errors do): then the service's own.
fn guarded(context: &UpstreamContext, credential: &Credential, reason: CloseReason) -> CloseReason {
    let quoted = reason
        .description
        .as_deref()
        .is_some_and(|text| context.leak_guard.leaks(text.as_bytes()));
    if quoted && matches!(credential, Credential::Server) {
        log::warn!("live: Gemini's close reason quoted a server key; it was withheld");
        close_reason(
            reason.code,
            "UPSTREAM_AUTH_ERROR: Gemini refused the service's key",
        )
    } else {
        reason
    }
}

fn outgoing(message: Message) -> Outgoing {
    match message {
        Message::Text(text) => Outgoing::Text(text),
        Message::Binary(bytes) => Outgoing::Binary(bytes),
        Message::Continuation(item) => Outgoing::Continuation(item),
        Message::Ping(bytes) => Outgoing::Ping(bytes),
        Message::Pong(bytes) => Outgoing::Pong(bytes),
        Message::Close(reason) => Outgoing::Close(reason),
        Message::Nop => Outgoing::Nop,
    }
}

#[derive(Deserialize)]
struct WithUsage {
    #[serde(rename = "usageMetadata")]
    usage: Option<LiveUsage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LiveUsage {
    prompt_token_count: Option<u64>,
    response_token_count: Option<u64>,
    thoughts_token_count: Option<u64>,
    total_token_count: Option<u64>,
}

/// The tokens a message of Gemini's reports, if any. Most messages report
/// none: only those that mention the field are parsed.
fn usage_of(payload: &[u8]) -> Option<Tokens> {
    const FIELD: &[u8] = b"usageMetadata";
    if !payload.windows(FIELD.len()).any(|w| w == FIELD) {
        return None;
    }
    let usage = serde_json::from_slice::<WithUsage>(payload).ok()?.usage?;
    let prompt = usage.prompt_token_count.unwrap_or(0);
    let response = usage.response_token_count.unwrap_or(0);
    let thoughts = usage.thoughts_token_count.unwrap_or(0);
    Some(Tokens {
        prompt,
        response,
        thoughts,
        total: usage
            .total_token_count
            .unwrap_or(prompt + response + thoughts),
    })
}

/// Both directions until one side closes, the service stops the session, or
/// neither side says anything for `idle`.
async fn relay(
    context: &UpstreamContext,
    mut call: LiveCall,
    mut upstream: Upstream,
    first: Frame,
    label: &str,
) -> LiveOutcome {
    let mut session = call.session.clone();
    let mut pending = Some(first);
    let mut last = Instant::now();
    let mut stop_gone = false;
    loop {
        let frame = match pending.take() {
            Some(frame) => Some(Ok(frame)),
            None => {
                let idle = tokio::time::sleep_until((last + call.idle).into());
                tokio::select! {
                    changed = call.stop.changed(), if !stop_gone => {
                        if changed.is_err() {
                            // Nobody can stop this session any more; never ask again.
                            stop_gone = true;
                            continue;
                        }
                        let reason = call.stop.borrow().clone();
                        if let Some(reason) = reason {
                            let code = if reason.code == CloseCode::Policy { "UNAUTHORIZED" } else { "OK" };
                            return end_session(&mut call, Some(&mut upstream), reason, code).await;
                        }
                        continue;
                    }
                    inbound = call.inbound.recv() => {
                        last = Instant::now();
                        match inbound.map(|(message, _budget)| message) {
                            Some(Message::Close(reason)) => {
                                call.tally.closed(reason.as_ref().map_or(1005, |r| u16::from(r.code)), "client");
                                finish(&call.end, &call.tally, "OK");
                                let _ = upstream.send(Outgoing::Close(reason.clone())).await;
                                close_client(&session, reason).await;
                                return LiveOutcome { code: "OK" };
                            }
                            Some(message) => {
                                call.tally.to_gemini.fetch_add(1, Ordering::Relaxed);
                                if upstream.send(outgoing(message)).await.is_err() {
                                    let reason = close_reason(CloseCode::Error, "UPSTREAM_ERROR: the connection to Gemini broke");
                                    return end_session(&mut call, None, reason, "UPSTREAM_ERROR").await;
                                }
                                continue;
                            }
                            None => {
                                // The client's connection ended without a close frame.
                                call.tally.closed(1006, "client");
                                let _ = upstream.send(Outgoing::Close(Some(close_reason(CloseCode::Away, "")))).await;
                                return LiveOutcome { code: "CANCELLED" };
                            }
                        }
                    }
                    frame = upstream.next() => frame,
                    _ = idle => {
                        let text = format!("UPSTREAM_TIMEOUT: no message either way for {} s", call.idle.as_secs());
                        let reason = close_reason(CloseCode::Normal, &text);
                        return end_session(&mut call, Some(&mut upstream), reason, "UPSTREAM_TIMEOUT").await;
                    }
                }
            }
        };
        last = Instant::now();
        let delivery = match frame {
            Some(Ok(Frame::Text(bytes))) => {
                count_usage(context, &mut call, &bytes, label);
                match ByteString::try_from(bytes) {
                    Ok(text) => Delivery::Text(text),
                    Err(_) => {
                        let reason = close_reason(
                            CloseCode::Error,
                            "UPSTREAM_ERROR: Gemini sent a text frame that is not UTF-8",
                        );
                        return end_session(
                            &mut call,
                            Some(&mut upstream),
                            reason,
                            "UPSTREAM_ERROR",
                        )
                        .await;
                    }
                }
            }
            Some(Ok(Frame::Binary(bytes))) => {
                count_usage(context, &mut call, &bytes, label);
                Delivery::Binary(bytes)
            }
            Some(Ok(Frame::Continuation(item))) => Delivery::Continuation(item),
            Some(Ok(Frame::Ping(bytes))) => {
                let _ = upstream.send(Outgoing::Pong(bytes)).await;
                continue;
            }
            Some(Ok(Frame::Pong(_))) => continue,
            Some(Ok(Frame::Close(reason))) => {
                let reason = reason.map(|r| guarded(context, &call.credential, r));
                call.tally.closed(
                    reason.as_ref().map_or(1005, |r| u16::from(r.code)),
                    "gemini",
                );
                let code = match reason.as_ref().map(|r| r.code) {
                    None | Some(CloseCode::Normal | CloseCode::Away) => "OK",
                    Some(_) => "UPSTREAM_ERROR",
                };
                finish(&call.end, &call.tally, code);
                let _ = upstream.send(Outgoing::Close(reason.clone())).await;
                close_client(&session, reason).await;
                return LiveOutcome { code };
            }
            Some(Err(_)) | None => {
                let reason = close_reason(
                    CloseCode::Error,
                    "UPSTREAM_ERROR: the connection to Gemini broke",
                );
                return end_session(&mut call, None, reason, "UPSTREAM_ERROR").await;
            }
        };
        let sent = tokio::time::timeout(call.stall, delivery.send(&mut session)).await;
        if !matches!(sent, Ok(Ok(()))) {
            // The client's side is gone, or took nothing for the stall
            // timeout: its session ends, with its place and Gemini's socket.
            if sent.is_err() {
                log::info!(
                    "live: a client took no message for {} s; its session is cut",
                    call.stall.as_secs()
                );
            }
            call.tally.closed(1006, "client");
            let _ = upstream
                .send(Outgoing::Close(Some(close_reason(CloseCode::Away, ""))))
                .await;
            return LiveOutcome { code: "CANCELLED" };
        }
        call.tally.to_client.fetch_add(1, Ordering::Relaxed);
    }
}

/// One of Gemini's frames on its way to the client.
enum Delivery {
    Text(ByteString),
    Binary(Bytes),
    Continuation(actix_ws::Item),
}

impl Delivery {
    async fn send(self, session: &mut Session) -> Result<(), actix_ws::Closed> {
        match self {
            Delivery::Text(text) => session.text(text).await,
            Delivery::Binary(bytes) => session.binary(bytes).await,
            Delivery::Continuation(item) => session.continuation(item).await,
        }
    }
}

fn count_usage(context: &UpstreamContext, call: &mut LiveCall, payload: &Bytes, label: &str) {
    if let Some(tokens) = usage_of(payload) {
        context.metrics.count_tokens(&call.client, label, tokens);
        call.tally.tokens.fetch_add(tokens.total, Ordering::Relaxed);
        call.charge.add(tokens.total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_keeps_the_scheme_s_security() {
        assert_eq!(ws_url("https://g.example", "/ws/x"), "wss://g.example/ws/x");
        assert_eq!(
            ws_url("http://127.0.0.1:9", "/ws/x"),
            "ws://127.0.0.1:9/ws/x"
        );
    }

    #[test]
    fn only_the_start_of_a_close_reason_says_anything_about_a_key() {
        let reason = |text: &str| close_reason(CloseCode::Invalid, text);
        assert!(matches!(
            connect_verdict(&reason("API key not valid. Please pass a valid API key.")),
            ConnectVerdict::KeyRefused
        ));
        assert!(matches!(
            connect_verdict(&reason("You exceeded your current quota, please check")),
            ConnectVerdict::Quota
        ));
        // A client's field name quoted back must not count against a key.
        for text in [
            "Invalid JSON payload received. Unknown name \"API key not valid\" at 'setup'",
            "Unknown name \"You exceeded your current quota\"",
        ] {
            assert!(
                matches!(connect_verdict(&reason(text)), ConnectVerdict::Other),
                "{text}"
            );
        }
    }

    #[test]
    fn usage_is_read_only_from_messages_that_carry_it() {
        assert_eq!(
            usage_of(br#"{"serverContent":{"modelTurn":{"parts":[{"text":"hi"}]}}}"#),
            None
        );
        let tokens = usage_of(br#"{"serverContent":{"turnComplete":true},"usageMetadata":{"promptTokenCount":5,"responseTokenCount":7,"totalTokenCount":12}}"#).unwrap();
        assert_eq!((tokens.prompt, tokens.response, tokens.total), (5, 7, 12));
    }
}
