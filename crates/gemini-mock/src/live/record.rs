//! What tests see of Live sessions: how many are open, every message each one received
//! (so a test can check a relay passed a message on unchanged) and the close frames
//! the mock got from its client and sent to it.
//!
//! A session's record is updated by its own task while it runs, so records are kept by
//! id: a `reset` in the middle of a session forgets the session, and its later updates
//! go nowhere rather than into a stranger's record.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use serde::Serialize;

use crate::state::Shared;

/// A data message a client sent on a Live session, as it arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveMessage {
    /// A binary frame rather than a text frame.
    pub binary: bool,
    pub data: Bytes,
}

impl LiveMessage {
    /// The payload parsed as JSON, or `None` when it is not JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.data).ok()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// One Live session, from its upgrade on.
#[derive(Clone, Debug, Default)]
pub struct LiveSession {
    /// 1 for the first session the mock ever opened; never reused, even after `reset`.
    pub id: usize,
    /// The upgrade request's path and query, exactly as received.
    pub path_and_query: String,
    /// Data messages received, in order (empty when `MockConfig::record` is off).
    pub messages: Vec<LiveMessage>,
    /// The close frame the client sent: its code (1005 when the frame carried none, as
    /// RFC 6455 reports it) and reason.
    pub client_close: Option<(u16, String)>,
    /// The close frame the mock sent.
    pub mock_close: Option<(u16, String)>,
    /// Still running: neither side has finished closing and the connection is up.
    pub open: bool,
}

#[derive(Default)]
struct Log {
    sessions: BTreeMap<usize, LiveSession>,
    /// Close frames received from clients, across sessions, in arrival order.
    closes: Vec<(u16, String)>,
}

/// The Live part of the mock's shared state.
#[derive(Default)]
pub(crate) struct LiveLog {
    log: Mutex<Log>,
    next_id: AtomicUsize,
    open: AtomicUsize,
    opened: AtomicUsize,
}

/// Counters as `/__mock/stats` reports them.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct LiveStats {
    pub live_sessions_open: usize,
    pub live_sessions_opened: usize,
}

fn lock(m: &Mutex<Log>) -> MutexGuard<'_, Log> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LiveLog {
    pub fn sessions(&self) -> Vec<LiveSession> {
        lock(&self.log).sessions.values().cloned().collect()
    }

    pub fn closes(&self) -> Vec<(u16, String)> {
        lock(&self.log).closes.clone()
    }

    pub fn stats(&self) -> LiveStats {
        LiveStats {
            live_sessions_open: self.open.load(Ordering::SeqCst),
            live_sessions_opened: self.opened.load(Ordering::SeqCst),
        }
    }

    /// Forgets finished and running sessions alike; `open` keeps counting the running
    /// ones, whose guards will bring it down.
    pub fn reset(&self) {
        let mut log = lock(&self.log);
        log.sessions.clear();
        log.closes.clear();
        self.opened.store(0, Ordering::SeqCst);
    }

    fn update(&self, id: usize, f: impl FnOnce(&mut LiveSession)) {
        if let Some(session) = lock(&self.log).sessions.get_mut(&id) {
            f(session);
        }
    }
}

/// Held by a session's task: records what happens to the session, and marks it closed
/// and no longer open when dropped, whichever way the task ends.
pub(crate) struct SessionRecord {
    shared: Arc<Shared>,
    id: usize,
    record: bool,
}

impl SessionRecord {
    pub fn open(shared: Arc<Shared>, path_and_query: String, record: bool) -> Self {
        let live = &shared.live;
        let id = live.next_id.fetch_add(1, Ordering::SeqCst) + 1;
        live.open.fetch_add(1, Ordering::SeqCst);
        live.opened.fetch_add(1, Ordering::SeqCst);
        let session = LiveSession {
            id,
            path_and_query,
            open: true,
            ..LiveSession::default()
        };
        lock(&live.log).sessions.insert(id, session);
        SessionRecord { shared, id, record }
    }

    pub fn message(&self, binary: bool, data: &Bytes) {
        if self.record {
            let message = LiveMessage {
                binary,
                data: data.clone(),
            };
            self.shared
                .live
                .update(self.id, |s| s.messages.push(message));
        }
    }

    pub fn client_close(&self, code: u16, reason: &str) {
        let entry = (code, reason.to_owned());
        let live = &self.shared.live;
        let mut log = lock(&live.log);
        log.closes.push(entry.clone());
        if let Some(s) = log.sessions.get_mut(&self.id) {
            s.client_close = Some(entry);
        }
    }

    pub fn mock_close(&self, code: u16, reason: &str) {
        let entry = (code, reason.to_owned());
        self.shared
            .live
            .update(self.id, |s| s.mock_close = Some(entry));
    }
}

impl Drop for SessionRecord {
    fn drop(&mut self) {
        let live = &self.shared.live;
        live.update(self.id, |s| s.open = false);
        live.open.fetch_sub(1, Ordering::SeqCst);
    }
}
