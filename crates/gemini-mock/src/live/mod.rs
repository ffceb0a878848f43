//! Gemini's Live API, `BidiGenerateContent`: a WebSocket on which a client sends a setup
//! and then turns, and the model answers in many small messages. A proxy that relays it
//! has to pass frames both ways unchanged, whatever their opcode, keep the key out of the
//! URL, and relay the service's close frames, which is how every Live error arrives
//! (docs/gemini-wire.md#the-live-api). The mock speaks it well enough for the real SDKs
//! (python `client.aio.live.connect`, JS `ai.live.connect`).
//!
//! **Route.** `GET /ws/google.ai.generativelanguage.{v}.GenerativeService.BidiGenerateContent`
//! for `v1`, `v1beta` and `v1alpha`, also with the double slash (`//ws/…`) the SDKs
//! send after a base URL ending in `/`. The handshake is recorded as a request
//! (method, path and query, headers; empty body), so a test can see whether the key
//! came as `x-goog-api-key` or as `?key=`.
//!
//! **Refusals** are close frames, sent when the client's first message arrives (or
//! 500 ms after the upgrade without one): no key → 1008 "Method doesn't allow
//! unregistered callers …"; a key outside `accepted_keys`, or fault `refuse-key` → 1007
//! "API key not valid. Please pass a valid API key."; a key in `key_refusals` → its
//! error's message, 1007 for `invalid`, 1008 for the 403s (`suspended`,
//! `service-disabled`, `leaked`). Reasons are cut to 123 bytes, as the service cuts
//! them. `Authorization` headers are ignored; ephemeral tokens
//! (`BidiGenerateContentConstrained`) are not served.
//!
//! **Protocol.** The first message must be `setup` (else close 1007); its `model`
//! (`models/…` or bare) must be a Live model — an id containing `live` or
//! `native-audio`, or a `mock-*` id — else close 1008 "models/… is not found for API
//! version …, or is not supported for bidiGenerateContent. …" (cut). A key and model with
//! an exhausted quota (`exhausted_keys`, `exhausted`) or fault `quota` close 1011 with
//! the quota message ("You exceeded your current quota, …", cut). Otherwise the mock
//! answers `{"setupComplete": {}}`. Client messages may use either casing
//! (`client_content`/`clientContent`, `realtime_input`/`realtimeInput`,
//! `tool_response`/`toolResponse`); an unknown or invalid one closes 1007.
//!
//! A turn is answered when a `clientContent` has `turnComplete: true` (the text of its
//! last user turn, or of an earlier `clientContent` without `turnComplete`), when a
//! `realtimeInput` carries `text`, and for `realtimeInput` audio (`audio` or
//! `mediaChunks`) at `audioStreamEnd: true`, at `activityEnd`, or after 300 ms without
//! more audio. The answer is `live_chunks` messages
//! `{"serverContent": {"modelTurn": {"parts": [{"text": …}]}}}` whose texts join up to
//! `echo: <text>` (audio: `echo: <n> bytes of audio`), padded to `live_chunk_bytes`
//! bytes each when set; then `{"serverContent": {"generationComplete": true}}`; then
//! `{"serverContent": {"turnComplete": true}, "usageMetadata": {"promptTokenCount": p,
//! "responseTokenCount": r, "totalTokenCount": p+r, "promptTokensDetails": […],
//! "responseTokensDetails": […]}}`, with tokens counted as words (audio: one per 1000
//! bytes). `live_delay` separates the messages of a turn. Turns are answered in order,
//! never interrupted.
//!
//! **Function calls.** When the setup declares functions and a turn's text contains
//! `weather` (any case), the mock first sends `{"toolCall": {"functionCalls": [{"id":
//! "function-call-<n>", "name": <the first declared function>, "args": {"prompt":
//! <text>}}]}}` and waits for the `toolResponse`; then it answers
//! `echo: <text> [<name>: <response as compact JSON>]`.
//!
//! **Frames.** Every server message is pretty-printed JSON ending in a newline, as the
//! service's captured frames are, in text frames, or binary frames with `live_binary`.
//! Pings get pongs; a client's close frame gets a close frame echoing its code. Client
//! frames may be text or binary, up to 16 MiB, continuations joined.
//!
//! **Per-connection knobs** (headers on the upgrade): `x-mock-live-fault: <name>`
//! (`LiveFault`; an unknown name such as `none` means no fault), `x-mock-live-binary:
//! 1|0`, `x-mock-live-chunks: N`, `x-mock-live-chunk-bytes: N`, `x-mock-live-delay-ms: N`.

mod eof;
mod knobs;
mod messages;
mod record;
mod session;

use std::sync::Arc;

use actix_web::{dev, web, FromRequest, HttpRequest, HttpResponse};
use bytes::Bytes;

pub use knobs::LiveFault;
pub(crate) use record::{LiveLog, LiveStats};
pub use record::{LiveMessage, LiveSession};

use crate::auth::header_str;
use crate::catalogue;
use crate::deliver::builder;
use crate::errors::ApiError;
use crate::handler::not_found_page;
use crate::route::Query;
use crate::state::Shared;
use crate::MockConfig;
use knobs::LiveKnobs;
use record::SessionRecord;
use session::{Close, Plan};

const RPC_PREFIX: &str = "google.ai.generativelanguage.";
const RPC_SUFFIX: &str = ".GenerativeService.BidiGenerateContent";
const VERSIONS: [&str; 3] = ["v1", "v1beta", "v1alpha"];
/// Client frames the mock accepts: audio chunks and long histories, well past the
/// 64 KiB default.
const MAX_FRAME: usize = 16 * 1024 * 1024;

/// The API version of a Live RPC name, if the name is one the mock serves.
fn rpc_version(rpc: &str) -> Option<&'static str> {
    let version = rpc.strip_prefix(RPC_PREFIX)?.strip_suffix(RPC_SUFFIX)?;
    VERSIONS.iter().find(|v| **v == version).copied()
}

/// Whether `models/{id}` supports `bidiGenerateContent`: only the Live models do.
pub(crate) fn is_live_model(version: &str, id: &str) -> bool {
    catalogue::is_known(version, id)
        && (id.starts_with("mock-") || id.contains("live") || id.contains("native-audio"))
}

/// `GET /ws/{rpc}` and `GET //ws/{rpc}`.
pub(crate) async fn connect(
    req: HttpRequest,
    body: web::Payload,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let shared: Arc<Shared> = shared.into_inner();
    let cfg = shared.config();
    shared.note_request(&req, &Bytes::new(), cfg.record);
    let Some(version) = rpc_version(req.match_info().query("rpc")) else {
        let page = not_found_page(req.path());
        return builder(page.status, page.content_type).body(page.into_body());
    };
    let knobs = LiveKnobs::read(&req, &cfg);
    let (key, refusal) = match check_key(&req, &cfg, &knobs) {
        Ok(key) => (key, None),
        Err(close) => (String::new(), Some(close)),
    };
    let ends_cleanly: dev::Payload = dev::Payload::Stream {
        payload: Box::pin(eof::EndsCleanly(body.into_inner())),
    };
    let body = match web::Payload::from_request(&req, &mut { ends_cleanly }).await {
        Ok(body) => body,
        Err(e) => return e.error_response(),
    };
    let (response, session, stream) = match actix_ws::handle(&req, body) {
        Ok(upgrade) => upgrade,
        Err(e) => return e.error_response(),
    };
    let stream = stream
        .max_frame_size(MAX_FRAME)
        .aggregate_continuations()
        .max_continuation_size(MAX_FRAME);
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.path().to_owned(), |pq| pq.as_str().to_owned());
    let record = SessionRecord::open(Arc::clone(&shared), path_and_query, cfg.record);
    let plan = Plan {
        refusal,
        key,
        version,
        knobs,
        cfg: Arc::clone(&cfg),
    };
    actix_web::rt::spawn(session::run(session, stream, record, plan));
    response
}

/// The caller's key, or the close that refuses it, in the order the REST routes judge
/// keys.
fn check_key(req: &HttpRequest, cfg: &MockConfig, knobs: &LiveKnobs) -> Result<String, Close> {
    let query = Query::parse(req.query_string());
    let key = header_str(req, "x-goog-api-key")
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .or_else(|| query.key.as_deref().filter(|k| !k.is_empty()));
    let Some(key) = key else {
        return Err(Close::for_error(&ApiError::unregistered()));
    };
    if let Some(refusal) = cfg.key_refusals.get(key) {
        return Err(Close::for_error(&refusal.error(key)));
    }
    let not_accepted = cfg.accepted_keys.as_ref().is_some_and(|a| !a.contains(key));
    if not_accepted || knobs.fault == Some(LiveFault::RefuseKey) {
        return Err(Close::for_error(&ApiError::api_key_invalid()));
    }
    Ok(key.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_three_versions_of_bidi_generate_content_only() {
        let rpc = |v: &str| format!("{RPC_PREFIX}{v}{RPC_SUFFIX}");
        assert_eq!(rpc_version(&rpc("v1")), Some("v1"));
        assert_eq!(rpc_version(&rpc("v1beta")), Some("v1beta"));
        assert_eq!(rpc_version(&rpc("v1alpha")), Some("v1alpha"));
        assert_eq!(rpc_version(&rpc("v2")), None);
        assert_eq!(
            rpc_version(&format!("{RPC_PREFIX}v1alpha{RPC_SUFFIX}Constrained")),
            None
        );
    }

    #[test]
    fn only_live_models_are_served() {
        assert!(is_live_model("v1beta", "gemini-2.0-flash-live-001"));
        assert!(is_live_model(
            "v1",
            "gemini-2.5-flash-native-audio-preview-09-2025"
        ));
        assert!(is_live_model("v1alpha", "mock-anything"));
        assert!(!is_live_model("v1beta", "gemini-2.5-flash"));
        assert!(!is_live_model("v1beta", ""));
        assert!(!is_live_model("v1beta", "Gemini-Live"));
    }

    #[test]
    fn close_reasons_are_cut_to_what_a_close_frame_holds() {
        let e = ApiError::model_not_found(
            "models/gemini-2.0-flash-001",
            "v1alpha",
            "bidiGenerateContent",
        );
        let close = Close::for_error(&e);
        // The reason a python client printed for this very model and version
        // (google/adk-samples #23).
        assert_eq!(
            close,
            Close {
                code: 1008,
                reason: "models/gemini-2.0-flash-001 is not found for API version v1alpha, \
                         or is not supported for bidiGenerateContent. Call ListMod"
                    .to_owned()
            }
        );
        let cut = Close::new(1011, &"é".repeat(100));
        assert_eq!(cut.reason.len(), 122);
        let quota = ApiError::quota(crate::errors::QuotaWindow::InputTokensPerMinute, "m", None);
        assert_eq!(Close::for_error(&quota).code, 1011);
        assert_eq!(Close::for_error(&ApiError::api_key_invalid()).code, 1007);
    }
}
