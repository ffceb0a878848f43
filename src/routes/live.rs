//! The Live API (docs/api.md#the-live-api): the WebSocket the SDKs open at
//! `/ws/google.ai.generativelanguage.{version}.GenerativeService.BidiGenerateContent`
//! (JS writes `//ws/…`). Before the upgrade the session is admitted like any
//! request and refused in Google's error shape; after it, the first message
//! (`setup`) must name a model the client may use, and the session is then
//! relayed by an upstream actor ([`crate::upstream::live`]).

use crate::auth::{self, Surface};
use crate::errors::{ApiError, ErrorCode, ResponseCode};
use crate::keys::Admission;
use crate::live_sessions::SessionGuard;
use crate::model_id::ModelId;
use crate::ownership::references;
use crate::request_log::RequestLog;
use crate::routes::passthrough;
use crate::routes::stream::StreamOutcome;
use crate::state::AppState;
use crate::upstream::live::{close_client, finish, FirstMessage, Inbound, LiveCall, LiveTally};
use crate::upstream::pipeline::Credential;
use crate::upstream::relay::StreamEnd;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason, Message, MessageStream, Session};
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The method every version serves; `…Constrained` (ephemeral tokens) is not relayed.
const METHOD: &str = "GenerativeService.BidiGenerateContent";
/// Client frames waiting for the upstream socket: a bound, so a slow Gemini
/// side slows the client's reads rather than growing memory.
const INBOUND_BUFFER: usize = 16;
/// The bytes of those frames, whatever their number.
const INBOUND_BYTES: usize = 4 * 1024 * 1024;
/// Largest frame a client may send: Live audio and video chunks are far
/// smaller, and a `setup` with many tools is kilobytes.
const MAX_CLIENT_FRAME_BYTES: usize = INBOUND_BYTES;

/// The API version of a Live path's last segment, if it is the Live method.
fn version_of(rpc: &str) -> Option<&str> {
    let version = rpc
        .strip_prefix("google.ai.generativelanguage.")?
        .strip_suffix(METHOD)?
        .strip_suffix('.')?;
    matches!(version, "v1" | "v1beta" | "v1alpha").then_some(version)
}

/// Ephemeral `auth_tokens/…` tokens are Gemini's, minted for a browser; they
/// are never client keys of this service, wherever they come.
fn carries_ephemeral_token(req: &HttpRequest) -> bool {
    let headers = req.headers();
    let token_in = |name: &str| {
        headers.get_all(name).any(|v| {
            v.to_str()
                .is_ok_and(|v| v.trim().starts_with("auth_tokens/"))
        })
    };
    let authorization_token = headers.get_all("authorization").any(|v| {
        v.to_str()
            .is_ok_and(|v| v.trim_start().starts_with("Token "))
    });
    let query = req.query_string();
    let query_token = serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .unwrap_or_default()
        .iter()
        .any(|(name, value)| {
            name == "access_token" || (name == "key" && value.starts_with("auth_tokens/"))
        });
    token_in("x-goog-api-key") || token_in("x-api-key") || authorization_token || query_token
}

pub async fn live(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let rpc = req.match_info().get("rpc").unwrap_or_default();
    let Some(version) = version_of(rpc) else {
        let constrained = rpc.ends_with("BidiGenerateContentConstrained");
        return Err(if constrained {
            ApiError::new(
                ErrorCode::Unauthorized,
                "BidiGenerateContentConstrained takes ephemeral tokens, which this service does not relay; use a client key",
            )
        } else {
            ApiError::new(ErrorCode::NotFound, "no such Live API method")
        });
    };
    if carries_ephemeral_token(&req) {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "ephemeral tokens (auth_tokens/…) are not client keys of this service",
        ));
    }
    let (admission, own_key) = passthrough::admit(&req, &state, Surface::Gemini).await?;
    let credential = Credential::from(admission.client.authorize(own_key.as_deref(), None)?);
    state.upstream.has_room()?;
    let (mut response, session, stream) = actix_ws::handle(&req, payload).map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            "the Live API is a WebSocket: send an HTTP/1.1 upgrade request",
        )
    })?;
    let tally = Arc::new(LiveTally::default());
    let end = Arc::new(StreamEnd::default());
    RequestLog::update(&req, |log| log.live = Some(tally.clone()));
    // The session's own code is known at its end; the upgrade itself is no error.
    response.extensions_mut().insert(ResponseCode("OK"));
    response.extensions_mut().insert(StreamOutcome(end.clone()));
    // Registered before the session starts, so a reload from now on sees it.
    let guard = state.live_sessions.open(&admission.client);
    let session_parts = Parts {
        state: state.clone(),
        admission,
        credential,
        path: format!("/ws/google.ai.generativelanguage.{version}.{METHOD}"),
        headers: passthrough::forwarded_headers(&req),
        tally,
        end,
        request: req.clone(),
        guard,
    };
    actix_rt::spawn(run_session(
        session_parts,
        session,
        stream.max_frame_size(MAX_CLIENT_FRAME_BYTES),
    ));
    Ok(response)
}

/// What a session needs from its upgrade request.
struct Parts {
    state: web::Data<AppState>,
    admission: Admission,
    credential: Credential,
    path: String,
    headers: Vec<(
        awc::http::header::HeaderName,
        awc::http::header::HeaderValue,
    )>,
    tally: Arc<LiveTally>,
    end: Arc<StreamEnd>,
    request: HttpRequest,
    guard: SessionGuard,
}

/// Closes a session the service refuses after the upgrade.
async fn refuse(parts: &Parts, session: Session, close: CloseCode, code: ErrorCode, message: &str) {
    parts.tally.closed_by_service(u16::from(close));
    finish(&parts.end, &parts.tally, code.as_str());
    // Close reasons hold at most 123 bytes.
    let mut text = format!("{}: {message}", code.as_str());
    if text.len() > 123 {
        let mut cut = 123;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    let reason = CloseReason {
        code: close,
        description: Some(text),
    };
    close_client(&session, Some(reason)).await;
}

#[derive(Deserialize)]
struct Setup {
    setup: SetupBody,
}

#[derive(Deserialize)]
struct SetupBody {
    model: Option<String>,
}

async fn run_session(parts: Parts, mut session: Session, mut stream: MessageStream) {
    let state = parts.state.clone();
    let idle = state.limits.live_idle_timeout;
    let stall = state.limits.client_stall_timeout;
    // A client gets as long for its setup as Gemini gets to answer a call.
    let setup_wait = state.limits.upstream_timeout.min(idle);
    let mut stop = parts.guard.stop.clone();
    let first = tokio::select! {
        first = tokio::time::timeout(setup_wait, next_message(&mut stream, &mut session, stall)) => first,
        reason = stopped(&mut stop) => {
            finish(&parts.end, &parts.tally, crate::upstream::relay::CANCELLED);
            close_client(&session, reason).await;
            return;
        }
    };
    let first = match first {
        Ok(Some(first)) => first,
        Ok(None) => {
            finish(&parts.end, &parts.tally, crate::upstream::relay::CANCELLED);
            return;
        }
        Err(_) => {
            let message = format!("no `setup` message within {} s", setup_wait.as_secs());
            return refuse(
                &parts,
                session,
                CloseCode::Policy,
                ErrorCode::InvalidRequest,
                &message,
            )
            .await;
        }
    };
    let model = match serde_json::from_slice::<Setup>(first.bytes()) {
        Ok(Setup {
            setup: SetupBody { model: Some(model) },
        }) => model,
        _ => {
            let message = "the first message must be `setup` with a `model`";
            return refuse(
                &parts,
                session,
                CloseCode::Invalid,
                ErrorCode::InvalidRequest,
                message,
            )
            .await;
        }
    };
    let model = match ModelId::parse(&model) {
        Ok(model) => model.display_id(),
        Err(e) => {
            let message = e.to_string();
            return refuse(
                &parts,
                session,
                CloseCode::Invalid,
                ErrorCode::InvalidModel,
                &message,
            )
            .await;
        }
    };
    RequestLog::update(&parts.request, |log| log.model = Some(model.clone()));
    let client = parts.admission.client.clone();
    if let Err(e) = client.authorize(None, Some(&model)) {
        let message = e.to_string();
        return refuse(
            &parts,
            session,
            CloseCode::Policy,
            ErrorCode::ModelNotAllowed,
            &message,
        )
        .await;
    }
    // A session keeps the key it connected with and cannot be pinned to a
    // resource's: on the shared keys, naming one is refused, or another
    // client's file could be read through a key that holds it.
    let shared_key = matches!(parts.credential, Credential::Server);
    if shared_key && names_a_resource(first.bytes(), &mut Vec::new()) {
        return refuse(
            &parts,
            session,
            CloseCode::Policy,
            ErrorCode::InvalidRequest,
            NAMES_A_RESOURCE,
        )
        .await;
    }
    let charge = match auth::admit_model(&state, &parts.admission, Some(&model)) {
        Ok(charge) => charge,
        Err(e) => {
            return refuse(&parts, session, CloseCode::Policy, e.code, &e.message).await;
        }
    };
    // Stopped while its first message was checked: nothing goes upstream.
    let stopped_now = parts.guard.stop.borrow().clone();
    if let Some(reason) = stopped_now {
        finish(&parts.end, &parts.tally, crate::upstream::relay::CANCELLED);
        close_client(&session, Some(reason)).await;
        return;
    }
    let (inbound_tx, inbound) = mpsc::channel(INBOUND_BUFFER);
    let call = LiveCall {
        path: parts.path.clone(),
        credential: parts.credential.clone(),
        headers: parts.headers.clone(),
        setup: first,
        model,
        client: client.name.clone(),
        inbound,
        session: session.clone(),
        charge,
        tally: parts.tally.clone(),
        end: parts.end.clone(),
        stop: parts.guard.stop.clone(),
        idle,
        stall,
        connect_timeout: state.limits.upstream_timeout,
    };
    let relay = state.upstream.live(call);
    let pump = pump(stream, inbound_tx, session.clone(), stall, shared_key);
    tokio::pin!(relay);
    tokio::pin!(pump);
    let outcome = tokio::select! {
        outcome = &mut relay => outcome,
        () = &mut pump => relay.await,
    };
    if let Err(error) = outcome {
        refuse(
            &parts,
            session,
            CloseCode::Error,
            error.code,
            &error.message,
        )
        .await;
    }
}

/// Resolves with the reason once the service stops the session (a reload
/// removed its key, or shutdown); never, if nobody can stop it any more.
async fn stopped(stop: &mut crate::live_sessions::Stop) -> Option<CloseReason> {
    loop {
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        if let Some(reason) = stop.borrow().clone() {
            return Some(reason);
        }
    }
}

/// The client's next data message; answers its pings on the way. `None`
/// when it closed or went away.
async fn next_message(
    stream: &mut MessageStream,
    session: &mut Session,
    stall: std::time::Duration,
) -> Option<FirstMessage> {
    loop {
        match stream.recv().await? {
            Ok(Message::Text(text)) => return Some(FirstMessage::Text(text)),
            Ok(Message::Binary(bytes)) => return Some(FirstMessage::Binary(bytes)),
            // A client that sends pings but reads no pong gets no more time for it.
            Ok(Message::Ping(bytes)) => {
                tokio::time::timeout(stall, session.pong(&bytes))
                    .await
                    .ok()?
                    .ok()?;
            }
            Ok(Message::Pong(_) | Message::Nop | Message::Continuation(_)) => {}
            Ok(Message::Close(_)) | Err(_) => return None,
        }
    }
}

const NAMES_A_RESOURCE: &str =
    "files, cached contents and interactions cannot be named in a Live session on the service's keys";

/// Whether a client message (or a fragment, with the end of the one before
/// it) names a resource, or might: a fragment is not JSON, so any trigger in
/// it counts.
fn message_names_a_resource(message: &Message, carried: &mut Vec<u8>) -> bool {
    match message {
        Message::Text(text) => names_a_resource(text.as_bytes(), &mut Vec::new()),
        Message::Binary(bytes) => names_a_resource(bytes, &mut Vec::new()),
        Message::Continuation(
            actix_ws::Item::FirstText(bytes)
            | actix_ws::Item::FirstBinary(bytes)
            | actix_ws::Item::Continue(bytes),
        ) => names_a_resource(bytes, carried),
        Message::Continuation(actix_ws::Item::Last(bytes)) => {
            let named = names_a_resource(bytes, carried);
            carried.clear();
            named
        }
        _ => false,
    }
}

/// `carried` joins a fragment to the end of the previous one; a whole
/// message passes an empty one.
fn names_a_resource(bytes: &[u8], carried: &mut Vec<u8>) -> bool {
    const CARRY: usize = 64;
    let scanned = if carried.is_empty() {
        references::scan(bytes)
    } else {
        let mut joined = std::mem::take(carried);
        joined.extend_from_slice(bytes);
        references::scan(&joined)
    };
    carried.clear();
    carried.extend_from_slice(&bytes[bytes.len().saturating_sub(CARRY)..]);
    // Unreadable (a fragment, say) counts: it might name one.
    !matches!(scanned, Ok(refs) if refs.is_empty())
}

/// Hands the client's frames to the relay, answering its pings here. Ends
/// when the client closes or goes away, or the relay stops taking frames.
async fn pump(
    mut stream: MessageStream,
    relay: mpsc::Sender<Inbound>,
    mut session: Session,
    stall: std::time::Duration,
    shared_key: bool,
) {
    let budget = Arc::new(tokio::sync::Semaphore::new(INBOUND_BYTES));
    // The end of the previous fragment of a fragmented message, so a
    // reference cut across two fragments is still seen.
    let mut carried: Vec<u8> = Vec::new();
    while let Some(message) = stream.recv().await {
        let message = match message {
            Ok(Message::Ping(bytes)) => {
                match tokio::time::timeout(stall, session.pong(&bytes)).await {
                    Ok(Ok(())) => continue,
                    _ => return,
                }
            }
            Ok(Message::Pong(_) | Message::Nop) => continue,
            Ok(message) => message,
            // A protocol error ends the session as the client's going away.
            Err(_) => return,
        };
        let closing = matches!(message, Message::Close(_));
        if shared_key && message_names_a_resource(&message, &mut carried) {
            let reason = CloseReason {
                code: CloseCode::Policy,
                description: Some(format!("INVALID_REQUEST: {NAMES_A_RESOURCE}")),
            };
            let _ = tokio::time::timeout(stall, session.close(Some(reason))).await;
            return;
        }
        // Waits while the frames not yet sent to Gemini hold the budget: the
        // client's socket is not read meanwhile.
        let size = match &message {
            Message::Text(text) => text.len(),
            Message::Binary(bytes) => bytes.len(),
            Message::Continuation(
                actix_ws::Item::FirstText(bytes)
                | actix_ws::Item::FirstBinary(bytes)
                | actix_ws::Item::Continue(bytes)
                | actix_ws::Item::Last(bytes),
            ) => bytes.len(),
            _ => 0,
        };
        let size = u32::try_from(size.clamp(1, INBOUND_BYTES)).unwrap_or(1);
        let Ok(share) = budget.clone().acquire_many_owned(size).await else {
            return;
        };
        if relay.send((message, share)).await.is_err() || closing {
            return;
        }
    }
}
