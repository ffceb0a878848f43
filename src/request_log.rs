//! What one request did, gathered as it is handled and written out once at its
//! end: the access log line, the per-client metrics and the rate-limit headers.

use crate::keys::RateLimitSnapshot;
use actix_web::{HttpMessage, HttpRequest};
use std::sync::Arc;

/// Stored in the request's extensions by the observing middleware; handlers fill it in.
#[derive(Debug, Default, Clone)]
pub struct RequestLog {
    pub request_id: String,
    /// The client's configured name once its key is known.
    pub client: Option<Arc<str>>,
    /// The validated model id.
    pub model: Option<String>,
    pub attempts: u32,
    pub tokens: u64,
    /// The client's bucket after this request, for the `RateLimit-*` headers.
    pub rate: Option<RateLimitSnapshot>,
    /// An API route handled this request, so it counts in the per-client metrics.
    pub api: bool,
}

impl RequestLog {
    /// Updates the request's log, if the middleware installed one.
    pub fn update(req: &HttpRequest, f: impl FnOnce(&mut RequestLog)) {
        if let Some(log) = req.extensions_mut().get_mut::<RequestLog>() {
            f(log);
        }
    }
}
