//! An offline stand-in for generativelanguage.googleapis.com.
//!
//! The proxy's tests, its demo mode and its benchmarks need an upstream that answers like
//! Google's — the same bodies, error shapes, SSE framing and auth rules — and that can be
//! told to fail in every way the real one does (docs/gemini-wire.md). Scenarios are picked
//! per request (`x-mock-scenario`, a `mock-<name>` model, or a `[mock:<name>]` prompt), so
//! one mock serves a whole suite; `/__mock/*` routes expose the record and counters to a
//! mock running as a separate process.
//!
//! What the caller's key and project are allowed is configuration, changeable while the
//! mock runs: keys refused outright (`key_refusals`, judged on every route) and quotas
//! that ran out per key and model (`exhausted`), because a proxy sharing keys must tell
//! a dead key from a spent model quota and from a refused request. `start_not_http`
//! gives a port that does not speak HTTP at all.
//!
//! The Live API (`BidiGenerateContent`, a WebSocket) is served too: setup, turns answered
//! in several `serverContent` messages with usage, function calls, errors as close
//! frames, and scripted faults (`LiveFault`: `goaway`, `close-mid-session`, `silence`,
//! `no-answer`, `refuse-key`, `quota`, `quota-mid-session`) picked by `live_fault` or
//! per connection by `x-mock-live-fault`. The `live_*` fields of `MockConfig` (and
//! `x-mock-live-*` headers) set binary frames, the number and size of messages and the
//! pause between them. `live_sessions_open`, `live_sessions_opened`, `live_closes` and
//! `live_sessions` (every message each session received) are for tests; the live
//! module's documentation has the whole behaviour, and `testing::LiveClient` is a
//! WebSocket client for tests.
//!
//! Files and cached contents are held per project (`MockConfig::projects`): files come
//! in by Google's resumable upload (`/upload/{v}/files`, chunks streamed, counted and
//! hashed, never held whole), and are read, listed, downloaded and deleted on
//! `/{v}/files`; cached contents are made, read, listed, updated and deleted on
//! `/{v}/cachedContents`. A prompt naming a file or cache of its project works (a cache
//! adds `cachedContentTokenCount`); any other project gets Gemini's 403, a file still
//! PROCESSING (`file_processing`) its 400. `upload_url_google` makes upload URLs and
//! file URIs name Google's host, for a proxy's rewrite to be tested; `files` and
//! `cached_contents` (and `GET /__mock/files`, `/__mock/cached-contents`) show tests
//! what is held.
//!
//! `start_tls` serves the same over TLS with a certificate signed by a CA made at start
//! (`ca_pem` hands it out), offering `h2`, `http/1.1` or both by ALPN (`Alpn`), so a
//! client's HTTP/2 and HTTP/1.1 paths can each be forced; every `RecordedRequest` says
//! which HTTP version it came in.
//!
//! The Batch API (`models/{m}:batchGenerateContent`, `:asyncBatchEmbedContent`,
//! `batches/{id}` get, list, `:cancel`, delete) and the Interactions API
//! (`/{v}/interactions`: create with `previous_interaction_id`, `store`, `stream` and
//! `background`; get with `stream` and `last_event_id`; cancel; delete) keep what they
//! make in the project of the key that made it (`MockConfig::projects`); another
//! project's id answers 404 NOT_FOUND without details. Batches answer each request as
//! generateContent would and succeed after `batch_delay`; background interactions
//! complete after `interaction_delay`. `batches()` and `interactions()` (and
//! `GET /__mock/jobs`) list them with the key and project that made them.
//!
//! Known limits:
//! - A batch's `responsesFile` cannot be downloaded.
//! - Batches never fail or expire, and answer every request with the plain echo (no
//!   scenarios, no files read); each request's usage is in its `usageMetadata`. Their
//!   create and an interaction's are refused by an exhausted quota like a model call;
//!   scenarios do not reach them.
//! - Interactions answer text only: tools, function calls (`requires_action`),
//!   multimodal output, `requires_continuation`, webhooks and the Live Interactions
//!   WebSocket are not served; `include_input` is ignored. A stream opened on a background
//!   interaction shows the events as planned when it was opened, so a cancel made
//!   meanwhile is not seen on it. `reset` keeps batches and interactions.
//! - Uploads: only the resumable protocol (no multipart or single-request media
//!   uploads, no `POST /{v}/files` metadata-only create); upload URLs do not take a key
//!   in place of the session id, a key on a chunk is ignored, and sessions never
//!   expire. The answers to a wrong offset, an unknown session and a short finalize are
//!   inferred, not captured. Scenarios, delays and the transport faults do not apply to
//!   `/upload/...`.
//! - Files: bytes are kept up to `KEPT_FILE_BYTES` for downloads (Gemini serves only
//!   generated files); no FAILED state, no video metadata, no per-project storage quota
//!   (20 GB) or file size limit (2 GB); a download answers the common MIME types as
//!   themselves and others as `application/octet-stream`.
//! - Cached contents: tokens are counted as words (files count nothing), the minimum
//!   size is a knob (`cache_min_tokens`, 0) rather than per model, `tools` and
//!   `toolConfig` are not stored, and an `expireTime` is written back with microseconds.
//! - Quotas are switched on and off, never counted: no request or token is metered,
//!   and nothing resets at midnight Pacific time.
//! - Key-level bodies always name project 123456789012; only CONSUMER_SUSPENDED and
//!   SERVICE_DISABLED of the 403 reasons are reproduced (no API_KEY_*_BLOCKED,
//!   BILLING_DISABLED), and no rate limit follows the source IP.
//! - With `chunk_text_bytes`, events of a non-ASCII prompt can be a few bytes off the
//!   size (cuts never split a character).
//! - `split_usage` applies to normal deliveries only: the transport scenarios (trickle,
//!   cuts, truncation) slice the body their own way.
//! - Over HTTP/2, a handler that has not written yet (`hang`, a long first-byte delay)
//!   learns that the client reset its stream only when it writes (actix-http runs it
//!   to its first write), so `in_flight` stays up until then.
//! - No gzip; recorded headers come sorted by name (actix does not keep arrival order
//!   across names).
//! - Live sessions answer in text only (no audio, transcriptions, session resumption
//!   or interruptions), answer turns in order, never end a session after `goAway`, and
//!   serve no ephemeral tokens (`BidiGenerateContentConstrained`).

mod answer;
mod auth;
mod batches;
mod bodies;
mod caches;
mod catalogue;
mod clock;
mod control;
mod deliver;
mod errors;
mod events;
mod files;
mod handler;
mod held_control;
mod interactions;
mod jobs;
mod live;
mod not_http;
mod openai;
mod paging;
mod project;
mod refusal;
mod reply;
mod request;
mod resource_api;
mod resources;
mod route;
mod scenario;
mod split;
mod state;
mod stream;
pub mod testing;
mod tls;

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{ServerHandle, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{web, App, HttpServer};

pub use batches::{BatchRecord, BatchState};
pub use caches::CachedContentInfo;
pub use files::{FileInfo, FileState, KEPT_FILE_BYTES};
pub use interactions::InteractionRecord;
pub use live::{LiveFault, LiveMessage, LiveSession};
pub use not_http::{start_not_http, NotHttpUpstream};
pub use refusal::KeyRefusal;
pub use state::RecordedRequest;
use state::Shared;
pub use tls::Alpn;

/// Request bodies the mock accepts; well above any prompt a test sends.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// How the mock behaves when a request names no scenario.
#[derive(Clone, Debug)]
pub struct MockConfig {
    /// None = any non-empty key is accepted; Some(set) = only these keys, others get the
    /// API_KEY_INVALID 400 body.
    pub accepted_keys: Option<HashSet<String>>,
    /// Keys Gemini refuses outright, on every route (models.get included), before any
    /// other check but a missing key. Removing a key makes it accepted again.
    pub key_refusals: HashMap<String, KeyRefusal>,
    /// Keys whose quota is exhausted: every model call with them answers the 429
    /// RESOURCE_EXHAUSTED body of a per-minute violation for the request's model.
    pub exhausted_keys: HashSet<String>,
    /// The project each key belongs to; a key not listed is a project of its own.
    /// Files, cached contents, batches and interactions are visible to every key of
    /// the project that made them, and to no other.
    pub projects: HashMap<String, String>,
    /// Quotas that ran out, per key and model: a model call matching an entry answers
    /// 429 with that entry's violation. The first matching entry wins.
    pub exhausted: Vec<Exhaustion>,
    /// RetryInfo `retryDelay` of 429 answers, as Gemini writes it ("26s", "1.5s");
    /// None = omit RetryInfo. Default "26s", from a real capture.
    pub retry_delay: Option<String>,
    /// Before response headers.
    pub first_byte_delay: Duration,
    /// Between stream events.
    pub chunk_delay: Duration,
    /// Stream events per streamed answer.
    pub chunks: usize,
    /// Text bytes in each stream event (SSE, JSON array and OpenAI streams): the answer
    /// padded with filler words. `None` splits the answer over the events. With
    /// `chunks` 5000 and 16384 here a stream is about 80 MB, for tests of clients that
    /// stop reading. Per request: `x-mock-chunk-text-bytes`.
    pub chunk_text_bytes: Option<usize>,
    /// Cut every usage object (`usageMetadata`, OpenAI's `usage`) across two body chunks
    /// with a short pause between them, so a proxy that counts tokens from the bytes it
    /// relays sees the usage arrive in two reads. The bytes are unchanged; a unary answer
    /// that carries usage then goes out chunked. Per request: `x-mock-split-usage: 1`
    /// (or `0` to turn it off).
    pub split_usage: bool,
    /// Record requests; off for benchmarks, so memory does not grow.
    pub record: bool,
    /// Live API: server messages in binary frames (JSON in binary frames is what the
    /// service's captured traffic shows) rather than text frames. Per connection:
    /// `x-mock-live-binary: 1|0`.
    pub live_binary: bool,
    /// Live API: the fault every session plays; `None` = none. Per connection:
    /// `x-mock-live-fault: <name>`.
    pub live_fault: Option<LiveFault>,
    /// Live API: `modelTurn` messages per answered turn (at least 1). Per connection:
    /// `x-mock-live-chunks`.
    pub live_chunks: usize,
    /// Live API: text bytes in each `modelTurn` message, the answer padded with filler
    /// words; `None` splits the answer over the messages. Many large messages make a
    /// slow client felt. Per connection: `x-mock-live-chunk-bytes`.
    pub live_chunk_bytes: Option<usize>,
    /// Live API: the pause before each message of a turn after the first. Per
    /// connection: `x-mock-live-delay-ms`.
    pub live_delay: Duration,
    /// Batches: how long a batch takes from creation to `BATCH_STATE_SUCCEEDED`; it is
    /// pending for the first half and running for the second. Zero = done at once.
    pub batch_delay: Duration,
    /// Interactions: how long a `background: true` interaction stays `in_progress`
    /// before it completes (others complete at once).
    pub interaction_delay: Duration,
    /// Upload URLs and file `uri`s name `https://generativelanguage.googleapis.com`, as
    /// Gemini's do, rather than the mock's own origin: a proxy that hands them to its
    /// clients unchanged sends them to Google. Off by default.
    pub upload_url_google: bool,
    /// How long a new file stays PROCESSING (refused in prompts) before it is ACTIVE.
    /// Default zero: ACTIVE at once.
    pub file_processing: Duration,
    /// How long a file lives; Gemini's is 48 hours. An expired file is gone.
    pub file_ttl: Duration,
    /// The fewest tokens (here: words) a cached content may hold; fewer → Gemini's 400
    /// "Cached content is too small". Gemini's is 1024 or more by model; default 0, so
    /// tests can cache a short prompt.
    pub cache_min_tokens: u32,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            accepted_keys: None,
            key_refusals: HashMap::new(),
            exhausted_keys: HashSet::new(),
            projects: HashMap::new(),
            exhausted: Vec::new(),
            retry_delay: Some("26s".to_owned()),
            first_byte_delay: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            chunks: 3,
            chunk_text_bytes: None,
            split_usage: false,
            record: true,
            live_binary: false,
            live_fault: None,
            live_chunks: 3,
            live_chunk_bytes: None,
            live_delay: Duration::ZERO,
            batch_delay: Duration::from_secs(1),
            interaction_delay: Duration::from_secs(1),
            upload_url_google: false,
            file_processing: Duration::ZERO,
            file_ttl: Duration::from_secs(48 * 3600),
            cache_min_tokens: 0,
        }
    }
}

/// One exhausted quota. Gemini counts quotas per project and per model, so a 429 for
/// one model says nothing about the key's other models.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exhaustion {
    /// The key whose quota ran out; `None` = every key.
    pub key: Option<String>,
    /// The model id, with or without `models/`; `None` = every model.
    pub model: Option<String>,
    /// A per-day violation (it resets at midnight Pacific time) rather than per-minute.
    pub per_day: bool,
}

/// A running mock. Dropping it leaves the server running; `stop` stops it.
pub struct MockGemini {
    shared: Arc<Shared>,
    addr: SocketAddr,
    handle: ServerHandle,
    /// With TLS: the PEM certificate of the CA that signed the mock's own.
    ca_pem: Option<String>,
}

impl MockGemini {
    /// Binds 127.0.0.1 on a free port and starts serving on the current runtime.
    pub async fn start(config: MockConfig) -> std::io::Result<MockGemini> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        Self::start_on(listener, config, 1).await
    }

    /// Serves on an already-bound listener with `workers` worker threads (at least 1).
    pub async fn start_on(
        listener: TcpListener,
        config: MockConfig,
        workers: usize,
    ) -> std::io::Result<MockGemini> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config, format!("http://{addr}")));
        let data = web::Data::from(Arc::clone(&shared));
        let server = HttpServer::new(move || app(data.clone()))
            .workers(workers.max(1))
            // The owner of the mock (a test, or the binary) decides when it stops.
            .disable_signals()
            // A client that closes its side has given up: drop the handler, so `hang` and
            // slow answers end and `in_flight` falls, as an upstream would cancel the call.
            .h1_allow_half_closed(false)
            .shutdown_timeout(1)
            .listen(listener)?
            .run();
        let handle = server.handle();
        tokio::spawn(server);
        log::info!("mock-gemini listening on http://{addr}");
        Ok(MockGemini {
            shared,
            addr,
            handle,
            ca_pem: None,
        })
    }

    /// Binds 127.0.0.1 on a free port and serves TLS, offering `alpn`, with a
    /// certificate for `127.0.0.1` and `localhost` signed by a CA made now
    /// ([`MockGemini::ca_pem`]). `base_url` is then `https://127.0.0.1:PORT`.
    pub async fn start_tls(config: MockConfig, alpn: Alpn) -> std::io::Result<MockGemini> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        Self::start_tls_on(listener, config, 1, alpn).await
    }

    /// As [`MockGemini::start_tls`], on an already-bound listener with
    /// `workers` worker threads (at least 1).
    pub async fn start_tls_on(
        listener: TcpListener,
        config: MockConfig,
        workers: usize,
        alpn: Alpn,
    ) -> std::io::Result<MockGemini> {
        let addr = listener.local_addr()?;
        let certificates = tls::MockCertificates::generate(alpn)?;
        let shared = Arc::new(Shared::new(config, format!("https://{addr}")));
        let data = web::Data::from(Arc::clone(&shared));
        let server = tls::serve(listener, workers, alpn, &certificates, data)?;
        let handle = server.handle();
        tokio::spawn(server);
        log::info!("mock-gemini listening on https://{addr} (ALPN {alpn:?})");
        Ok(MockGemini {
            shared,
            addr,
            handle,
            ca_pem: Some(certificates.ca_pem),
        })
    }

    /// With TLS, the PEM certificate of the CA that signed the mock's
    /// certificate, for a client to trust; `None` in cleartext.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// `http://127.0.0.1:PORT`, or `https://127.0.0.1:PORT` with TLS.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Recorded upstream-route requests, oldest first (never `/__mock/*` control calls).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    /// Upstream-route requests received, counted even when recording is off.
    pub fn request_count(&self) -> usize {
        self.shared.stats().request_count
    }

    /// Clears the record, the counters, the Live sessions and closes, and the `flaky-N`
    /// and `fail-half` call counts. Running Live sessions go on but are no longer shown.
    pub fn reset(&self) {
        self.shared.reset();
    }

    pub fn update_config(&self, f: impl FnOnce(&mut MockConfig)) {
        self.shared.update_config(f);
    }

    /// Requests whose handler or response body is still running.
    pub fn in_flight(&self) -> usize {
        self.shared.stats().in_flight
    }

    /// Streamed bodies dropped before their planned end (the client went away).
    pub fn streams_cancelled(&self) -> usize {
        self.shared.stats().streams_cancelled
    }

    /// Streamed bodies that reached their planned end (a planned failure counts as an end).
    pub fn streams_completed(&self) -> usize {
        self.shared.stats().streams_completed
    }

    /// Live API sessions still running.
    pub fn live_sessions_open(&self) -> usize {
        self.shared.live.stats().live_sessions_open
    }

    /// Live API sessions opened (upgrades accepted) since the start or the last `reset`.
    pub fn live_sessions_opened(&self) -> usize {
        self.shared.live.stats().live_sessions_opened
    }

    /// The close frames Live clients sent, across sessions, in arrival order: the code
    /// (1005 for a close frame without one) and the reason.
    pub fn live_closes(&self) -> Vec<(u16, String)> {
        self.shared.live.closes()
    }

    /// Every Live session since the start or the last `reset`, oldest first, with the
    /// messages it received.
    pub fn live_sessions(&self) -> Vec<LiveSession> {
        self.shared.live.sessions()
    }

    /// Every batch made since the start (deleted ones included), oldest first: which
    /// key and project made it and where it stands.
    pub fn batches(&self) -> Vec<BatchRecord> {
        batches::records(&self.shared.jobs)
    }

    /// Every interaction made since the start (`store: false` and deleted ones
    /// included), oldest first: which key and project made it, its status and the
    /// interaction it continued.
    pub fn interactions(&self) -> Vec<InteractionRecord> {
        interactions::records(&self.shared.jobs)
    }

    /// Every stored file of every project, by id.
    pub fn files(&self) -> Vec<FileInfo> {
        self.shared.files.infos()
    }

    /// Every cached content of every project, by id.
    pub fn cached_contents(&self) -> Vec<CachedContentInfo> {
        self.shared.caches.infos()
    }

    /// Stops accepting and drops open connections without waiting for them.
    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

/// The mock's app, for the cleartext and the TLS servers alike.
fn app(
    data: web::Data<Shared>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(data)
        .app_data(web::PayloadConfig::new(MAX_BODY))
        .configure(routes)
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/__mock/requests", web::get().to(control::requests))
        .route("/__mock/reset", web::post().to(control::reset))
        .route("/__mock/config", web::post().to(control::config))
        .route("/__mock/stats", web::get().to(control::stats))
        .route("/__mock/live", web::get().to(control::live))
        .route("/__mock/jobs", web::get().to(jobs::control))
        .route("/__mock/files", web::get().to(held_control::files))
        .route(
            "/__mock/cached-contents",
            web::get().to(held_control::cached_contents),
        )
        .route(
            "/__mock/redirect-target",
            web::route().to(handler::redirect_target),
        )
        // The SDKs put a double slash before `ws/` after a base URL ending in `/`, and
        // the service accepts it; other methods fall through to the 404 page.
        // Uploads stream their bodies (files::upload), so they skip the buffering handler.
        .route("/upload/{tail:.*}", web::route().to(files::upload::serve))
        .service(
            web::resource(["/ws/{rpc}", "//ws/{rpc}"])
                .route(web::get().to(live::connect))
                .default_service(web::to(handler::upstream)),
        )
        .default_service(web::to(handler::upstream));
}
