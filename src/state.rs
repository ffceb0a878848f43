//! What every handler reads: the request limits, the metrics, and this HTTP
//! worker's own handles — the actor that admits clients and the upstream
//! actor that calls Gemini — built once per worker when the server starts
//! (in the server's factory, before `app::create_app`), so a handler never
//! looks anything up at call time.

use crate::keys::Admit;
use crate::metrics::Metrics;
use crate::model_id::ModelId;
use crate::upstream::Upstream;
use actix::Recipient;
use std::sync::Arc;
use std::time::Duration;

/// The request limits handlers apply.
#[derive(Clone, Debug)]
pub struct RequestLimits {
    pub max_body_bytes: usize,
    pub max_prompt_chars: usize,
    pub default_model: ModelId,
    pub upstream_timeout: Duration,
    pub client_stall_timeout: Duration,
}

/// One HTTP worker's view of the service; each worker has its own, sharing
/// everything but the actors on its thread.
pub struct AppState {
    pub limits: RequestLimits,
    pub metrics: Arc<Metrics>,
    /// Admits a client and takes one request from its bucket: this worker's
    /// registry (in-process limits) or the registry actor (Redis).
    pub admission: Recipient<Admit>,
    /// This worker's way to Gemini.
    pub upstream: Upstream,
}
