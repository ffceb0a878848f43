//! The Live API sessions open now, so a reload that removes a client key and a
//! shutdown can end them with a close frame, and `gemini_proxy_live_sessions`
//! counts them.

use crate::keys::{ClientPolicy, KeyHash};
use crate::metrics::Metrics;
use actix_ws::{CloseCode, CloseReason};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;

/// Why the service ends a session itself.
pub type Stop = watch::Receiver<Option<CloseReason>>;

struct Open {
    client: Arc<str>,
    key_hash: KeyHash,
    stop: watch::Sender<Option<CloseReason>>,
}

pub struct LiveSessions {
    open: Mutex<HashMap<u64, Open>>,
    next: AtomicU64,
    metrics: Arc<Metrics>,
    /// Set once the service drains: sessions that start after it end at once.
    draining: std::sync::atomic::AtomicBool,
}

/// One open session; leaves the registry (and the gauge) when dropped.
pub struct SessionGuard {
    id: u64,
    sessions: Arc<LiveSessions>,
    pub stop: Stop,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let removed = self.sessions.lock().remove(&self.id);
        if let Some(open) = removed {
            self.sessions
                .metrics
                .live_sessions
                .with_label_values(&[&open.client])
                .dec();
        }
    }
}

impl LiveSessions {
    pub fn new(metrics: Arc<Metrics>) -> LiveSessions {
        LiveSessions {
            open: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            metrics,
            draining: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Open>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a session of `client`.
    pub fn open(self: &Arc<Self>, client: &ClientPolicy) -> SessionGuard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, stop) = watch::channel(None);
        if self.draining.load(Ordering::Acquire) {
            let _ = tx.send(Some(going_away()));
        }
        self.metrics
            .live_sessions
            .with_label_values(&[&client.name])
            .inc();
        self.lock().insert(
            id,
            Open {
                client: client.name.clone(),
                key_hash: client.key_hash,
                stop: tx,
            },
        );
        SessionGuard {
            id,
            sessions: self.clone(),
            stop,
        }
    }

    /// After a reload: ends the sessions of client keys that are gone.
    pub fn keep_only(&self, clients: &[(Arc<str>, KeyHash)]) {
        for open in self.lock().values() {
            let kept = clients
                .iter()
                .any(|(name, hash)| *name == open.client && hash.ct_eq(&open.key_hash));
            if !kept {
                let _ = open.stop.send(Some(CloseReason {
                    code: CloseCode::Policy,
                    description: Some("UNAUTHORIZED: the client key was removed".into()),
                }));
            }
        }
    }

    /// At shutdown: ends every session with a going-away close frame.
    pub fn close_all(&self) {
        self.draining.store(true, Ordering::Release);
        for open in self.lock().values() {
            let _ = open.stop.send(Some(going_away()));
        }
    }

    pub fn count(&self) -> usize {
        self.lock().len()
    }
}

fn going_away() -> CloseReason {
    CloseReason {
        code: CloseCode::Away,
        description: Some("the service is shutting down".into()),
    }
}
