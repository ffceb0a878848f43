//! What every handler reads: the request limits, the metrics, and this HTTP
//! worker's own handles — the actor that admits clients and the upstream
//! actor that calls Gemini — built once per worker when the server starts
//! (in the server's factory, before `app::create_app`), so a handler never
//! looks anything up at call time.

use crate::keys::{Admit, ReadUsage};
use crate::metrics::Metrics;
use crate::model_id::ModelId;
use crate::upstream::Upstream;
use actix::Recipient;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The request limits handlers apply.
#[derive(Clone, Debug)]
pub struct RequestLimits {
    pub max_body_bytes: usize,
    /// Bodies of the native, OpenAI and resource routes.
    pub max_native_body_bytes: usize,
    pub max_upload_bytes: u64,
    /// `PUBLIC_BASE_URL`, without a trailing slash.
    pub public_base_url: Option<Arc<str>>,
    pub max_prompt_chars: usize,
    pub default_model: ModelId,
    pub upstream_timeout: Duration,
    /// A Live session where neither side sent anything for this long is closed.
    pub live_idle_timeout: Duration,
    /// A client that takes none of a stream's or a session's data for this long is cut.
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
    /// The registry actor, for `GET /usage`.
    pub usage: Recipient<ReadUsage>,
    /// This worker's way to Gemini.
    pub upstream: Upstream,
    /// The Live API sessions open now (every worker's).
    pub live_sessions: Arc<crate::live_sessions::LiveSessions>,
    /// Shared by every worker: starting, ready or draining.
    pub readiness: Arc<Readiness>,
}

/// Whether the service takes work, for `GET /ready`: starting until the keys
/// file and the listeners are in place, ready, then draining from the first
/// stop signal on, so a load balancer sends no new work to a replica that is
/// going away.
#[derive(Debug, Default)]
pub struct Readiness(AtomicU8);

/// The phases of [`Readiness`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Starting,
    Ready,
    Draining,
}

impl Readiness {
    pub fn phase(&self) -> Phase {
        match self.0.load(Ordering::Acquire) {
            0 => Phase::Starting,
            1 => Phase::Ready,
            _ => Phase::Draining,
        }
    }

    /// Moves on to `phase`; a draining service never becomes ready again.
    pub fn set(&self, phase: Phase) {
        let value = match phase {
            Phase::Starting => 0,
            Phase::Ready => 1,
            Phase::Draining => 2,
        };
        self.0.fetch_max(value, Ordering::AcqRel);
    }
}
