//! State shared by every worker of one mock server: the live configuration, the request
//! record, the counters tests read, and the drop guards that keep those counters honest.
//!
//! Counters are bumped from guards rather than at the end of handlers, because a handler
//! or response body that is cancelled (the client went away) never reaches its end; only
//! `Drop` runs in every case. No lock here is ever held across an `.await`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use actix_web::http::Version;
use actix_web::HttpRequest;
use bytes::Bytes;

use super::jobs::Jobs;
use super::live::LiveLog;
use super::MockConfig;

/// One request the mock received on a Gemini route, as it arrived.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// The HTTP version it came in: `HTTP/2.0` when `h2` was negotiated over TLS.
    pub version: Version,
    /// Exactly as received, e.g. `/v1beta/models/gemini-2.5-flash:generateContent?alt=sse`.
    pub path_and_query: String,
    /// Names lower-cased. actix keeps headers in a hash map, so the order across names is
    /// sorted by name; several values of one name keep their arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl RecordedRequest {
    /// The first value of a header, matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The Gemini key the request carried: `x-goog-api-key`, else a Bearer
    /// token (the OpenAI-compatible paths).
    pub fn api_key(&self) -> Option<&str> {
        self.header("x-goog-api-key").or_else(|| {
            self.header("authorization")
                .and_then(|a| a.strip_prefix("Bearer "))
        })
    }

    /// The body parsed as JSON, or `None` when it is not JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    pub(crate) fn from_request(req: &HttpRequest, body: &Bytes) -> Self {
        let mut headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_ascii_lowercase(), value)
            })
            .collect();
        // Stable sort: values repeated under one name stay in arrival order.
        headers.sort_by(|a, b| a.0.cmp(&b.0));
        let path_and_query = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.path().to_owned(), |pq| pq.as_str().to_owned());
        RecordedRequest {
            method: req.method().as_str().to_owned(),
            version: req.version(),
            path_and_query,
            headers,
            body: body.clone(),
        }
    }
}

/// Everything the handlers of all workers share.
pub(crate) struct Shared {
    config: RwLock<Arc<MockConfig>>,
    record: Mutex<Vec<RecordedRequest>>,
    /// Calls seen per counted scenario name (`flaky-N`, `fail-half`).
    flaky: Mutex<HashMap<String, usize>>,
    request_count: AtomicUsize,
    in_flight: AtomicUsize,
    streams_cancelled: AtomicUsize,
    streams_completed: AtomicUsize,
    /// `http://host:port`, for the `redirect` scenario's `Location`.
    pub base_url: String,
    /// Live API sessions.
    pub live: LiveLog,
    /// Batches and interactions, per project.
    pub jobs: Jobs,
    /// Files and cached contents, per project.
    pub files: super::files::Files,
    pub caches: super::caches::Caches,
}

/// A poisoned lock only means another handler panicked; the data is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn new(config: MockConfig, base_url: String) -> Self {
        Shared {
            config: RwLock::new(Arc::new(config)),
            record: Mutex::new(Vec::new()),
            flaky: Mutex::new(HashMap::new()),
            request_count: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            streams_cancelled: AtomicUsize::new(0),
            streams_completed: AtomicUsize::new(0),
            base_url,
            live: LiveLog::default(),
            jobs: Jobs::default(),
            files: Default::default(),
            caches: Default::default(),
        }
    }

    /// A snapshot of the configuration; cheap (an `Arc` clone) so each request takes one.
    pub fn config(&self) -> Arc<MockConfig> {
        let guard = self.config.read().unwrap_or_else(|e| e.into_inner());
        Arc::clone(&guard)
    }

    pub fn update_config(&self, f: impl FnOnce(&mut MockConfig)) {
        let mut guard = self.config.write().unwrap_or_else(|e| e.into_inner());
        let mut next = MockConfig::clone(&guard);
        f(&mut next);
        *guard = Arc::new(next);
    }

    /// Counts a Gemini-route request and, when recording is on, stores it.
    pub fn note_request(&self, req: &HttpRequest, body: &Bytes, record: bool) {
        self.request_count.fetch_add(1, Ordering::Relaxed);
        if record {
            let entry = RecordedRequest::from_request(req, body);
            lock(&self.record).push(entry);
        }
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.record).clone()
    }

    /// Counts one more call of a `flaky-N` scenario and says whether it is still failing.
    pub fn flaky_should_fail(&self, name: &str, failures: usize) -> bool {
        self.count_call(name) <= failures
    }

    /// Counts one more call of `fail-half` and says whether this one fails (the odd ones).
    pub fn fail_half_should_fail(&self) -> bool {
        self.count_call("fail-half") % 2 == 1
    }

    /// One more call under a counted scenario name; answers how many so far, this one included.
    fn count_call(&self, name: &str) -> usize {
        let mut map = lock(&self.flaky);
        let seen = map.entry(name.to_owned()).or_insert(0);
        *seen += 1;
        *seen
    }

    pub fn reset(&self) {
        lock(&self.record).clear();
        lock(&self.flaky).clear();
        self.request_count.store(0, Ordering::Relaxed);
        self.streams_cancelled.store(0, Ordering::Relaxed);
        self.streams_completed.store(0, Ordering::Relaxed);
        self.live.reset();
        // `in_flight` is not reset: it tracks live work, and its guards will decrement it.
    }

    pub fn stats(&self) -> Stats {
        Stats {
            request_count: self.request_count.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::SeqCst),
            streams_cancelled: self.streams_cancelled.load(Ordering::SeqCst),
            streams_completed: self.streams_completed.load(Ordering::SeqCst),
            live: self.live.stats(),
        }
    }
}

/// The counters as `GET /__mock/stats` reports them.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub(crate) struct Stats {
    pub request_count: usize,
    pub in_flight: usize,
    pub streams_cancelled: usize,
    pub streams_completed: usize,
    #[serde(flatten)]
    pub live: super::live::LiveStats,
}

/// Held while a Gemini-route handler or its response body is alive.
pub(crate) struct InFlight(Arc<Shared>);

impl InFlight {
    pub fn new(shared: Arc<Shared>) -> Self {
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(shared)
    }

    pub fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.0)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Decides, when a streamed body is dropped, whether it reached its planned end.
pub(crate) struct StreamOutcome {
    shared: Arc<Shared>,
    finished: bool,
}

impl StreamOutcome {
    pub fn new(shared: Arc<Shared>) -> Self {
        StreamOutcome {
            shared,
            finished: false,
        }
    }

    /// The body produced everything it planned (including a planned error).
    pub fn finish(&mut self) {
        self.finished = true;
    }
}

impl Drop for StreamOutcome {
    fn drop(&mut self) {
        let counter = if self.finished {
            &self.shared.streams_completed
        } else {
            &self.shared.streams_cancelled
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}
