//! Live reload of the keys file: on SIGHUP and when the file changes on disk.
//!
//! The watcher observes the file's directory, not the file, because editors and
//! Kubernetes replace files by rename, which a watch on the old inode would miss.
//! Events are debounced, and a reload whose file bytes did not change is skipped.
//! A reload that fails keeps the clients in force, logs why and counts a failure.

use super::file::{load_clients, KeysFileError};
use super::registry::ReplaceClients;
use crate::metrics::Metrics;
use crate::settings::KeysFile;
use actix::Recipient;
use notify::{RecursiveMode, Watcher};
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Quiet time after the last change event before reloading: editors write a
/// file in several steps, and one reload should see the finished file.
const DEBOUNCE: Duration = Duration::from_millis(300);
/// Longest wait from the first change event to the reload: a directory that is
/// never quiet (another file written constantly) must not hold back the reload
/// docs/keys-file.md#reload promises within 5 s.
const MAX_SETTLE: Duration = Duration::from_secs(2);

/// Where the clients come from, and who must learn of a new set.
pub struct Reloader {
    keys_file: KeysFile,
    api_keys: Vec<SecretString>,
    registry: Recipient<ReplaceClients>,
    metrics: Arc<Metrics>,
    /// SHA-256 of the file bytes last loaded, to skip reloads that change nothing.
    loaded: Mutex<Option<[u8; 32]>>,
    /// Live sessions, ended when their client key leaves the file.
    sessions: Option<Arc<crate::live_sessions::LiveSessions>>,
}

impl Reloader {
    pub fn new(
        keys_file: KeysFile,
        api_keys: Vec<SecretString>,
        registry: Recipient<ReplaceClients>,
        metrics: Arc<Metrics>,
    ) -> Reloader {
        let reloader = Reloader {
            keys_file,
            api_keys,
            registry,
            metrics,
            loaded: Mutex::new(None),
            sessions: None,
        };
        reloader.remember_file();
        reloader
    }

    fn file_digest(&self) -> Option<[u8; 32]> {
        std::fs::read(&self.keys_file.path)
            .ok()
            .map(|bytes| Sha256::digest(&bytes).into())
    }

    fn remember_file(&self) {
        let digest = self.file_digest();
        if let Ok(mut loaded) = self.loaded.lock() {
            *loaded = digest;
        }
    }

    /// Reloads the clients; the old ones stay in force on error.
    /// Ends the Live sessions of client keys a reload removes.
    pub fn ending_sessions(mut self, sessions: Arc<crate::live_sessions::LiveSessions>) -> Self {
        self.sessions = Some(sessions);
        self
    }

    pub async fn reload(&self, why: &str) -> Result<usize, KeysFileError> {
        let digest = self.file_digest();
        let result = load_clients(&self.keys_file, &self.api_keys);
        match result {
            Ok(clients) => {
                let count = clients.len();
                let kept: Vec<_> = clients
                    .iter()
                    .map(|c| (c.name.clone(), c.key_hash))
                    .collect();
                if let Err(e) = self.registry.send(ReplaceClients { clients }).await {
                    log::error!("keys reload ({why}): the key registry is gone: {e}");
                }
                if let Ok(mut loaded) = self.loaded.lock() {
                    *loaded = digest;
                }
                if let Some(sessions) = &self.sessions {
                    sessions.keep_only(&kept);
                }
                self.metrics
                    .config_reloads
                    .with_label_values(&["success"])
                    .inc();
                log::info!("keys reloaded ({why}): {count} clients in force");
                Ok(count)
            }
            Err(error) => {
                self.metrics
                    .config_reloads
                    .with_label_values(&["failure"])
                    .inc();
                log::error!(
                    "keys reload ({why}) failed, the previous clients stay in force: {error}"
                );
                Err(error)
            }
        }
    }

    /// Reloads only if the file's bytes differ from the last load.
    async fn reload_if_changed(&self) {
        let digest = self.file_digest();
        let unchanged = self.loaded.lock().map(|l| *l == digest).unwrap_or(false);
        if !unchanged {
            let _ = self.reload("file changed").await;
        }
    }
}

/// Keeps the file watcher alive; dropping it stops watching.
pub struct WatchGuard {
    _watcher: Option<notify::RecommendedWatcher>,
}

/// Watches the keys file's directory and reloads after changes settle.
/// Must be called inside the actix System (it spawns the debounce task).
pub fn watch(reloader: Arc<Reloader>) -> WatchGuard {
    let dir = match reloader.keys_file.path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let file_name = reloader.keys_file.path.file_name().map(ToOwned::to_owned);
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|event| is_change(&event, file_name.as_deref())) {
            let _ = tx.send(());
        }
    })
    .and_then(|mut watcher| {
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        Ok(watcher)
    });
    let watcher = match watcher {
        Ok(watcher) => watcher,
        Err(e) => {
            log::warn!(
                "not watching {} for changes ({e}); reload with SIGHUP",
                dir.display()
            );
            return WatchGuard { _watcher: None };
        }
    };
    actix_rt::spawn(async move {
        while rx.recv().await.is_some() {
            settle(&mut rx).await;
            reloader.reload_if_changed().await;
        }
    });
    WatchGuard {
        _watcher: Some(watcher),
    }
}

/// Whether a watcher event may mean the directory's contents changed. Opening
/// or reading a file changes nothing; counting it would make every reload (which
/// reads the file) wake the watcher again, so the file would be read, and a bad
/// one refused and logged, every debounce period for ever.
fn is_change(event: &notify::Event, file_name: Option<&std::ffi::OsStr>) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
    let about_the_file = event.paths.iter().any(|path| path.file_name() == file_name);
    match event.kind {
        // Closing a file written in place: the moment its new bytes are complete.
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => about_the_file,
        EventKind::Access(_) => false,
        // Entries appearing, disappearing or renamed may be a replace-by-rename
        // or a symlink swap (Kubernetes' `..data`) under any name.
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_)) => {
            true
        }
        // Writes to other files in the directory (a log file, say) are not ours.
        _ => about_the_file,
    }
}

/// Returns once no change event came for [`DEBOUNCE`], or [`MAX_SETTLE`] after
/// it was called, whichever is first.
async fn settle(rx: &mut mpsc::UnboundedReceiver<()>) {
    let give_up = tokio::time::Instant::now() + MAX_SETTLE;
    loop {
        let quiet_until = (tokio::time::Instant::now() + DEBOUNCE).min(give_up);
        match tokio::time::timeout_at(quiet_until, rx.recv()).await {
            Ok(Some(())) => continue,
            Ok(None) | Err(_) => return,
        }
    }
}

/// Reloads on every SIGHUP; `also` runs first (the server key pool is reset too).
pub fn reload_on_sighup(reloader: Arc<Reloader>, also: impl Fn() + 'static) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(stream) => stream,
        Err(e) => {
            log::warn!("cannot listen for SIGHUP ({e}); the keys file reloads on change only");
            return;
        }
    };
    actix_rt::spawn(async move {
        while hangups.recv().await.is_some() {
            also();
            let _ = reloader.reload("SIGHUP").await;
        }
    });
}
