//! What one request did, gathered as it is handled and written out once at its
//! end: the access log line, the per-client metrics and the rate-limit headers.

use crate::keys::RateLimitSnapshot;
use actix_web::{HttpMessage, HttpRequest};
use std::cell::RefCell;
use std::rc::Rc;
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
    /// The client's `RateLimit-Policy` header: every limit it has.
    pub rate_policy: Option<actix_web::http::header::HeaderValue>,
    /// A Live API session's counts, for its access line.
    pub live: Option<Arc<crate::upstream::live::LiveTally>>,
    /// An API route handled this request, so it counts in the per-client metrics.
    pub api: bool,
}

/// The log shared between the middleware and the request's extensions, so the
/// middleware can still read it when the request is dropped mid-way (the
/// client went away and the request itself is gone).
#[derive(Clone, Default)]
pub struct SharedLog(pub Rc<RefCell<RequestLog>>);

impl RequestLog {
    /// Updates the request's log, if the middleware installed one.
    pub fn update(req: &HttpRequest, f: impl FnOnce(&mut RequestLog)) {
        let shared = req.extensions().get::<SharedLog>().cloned();
        if let Some(shared) = shared {
            f(&mut shared.0.borrow_mut());
        }
    }
}
