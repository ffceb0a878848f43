//! Live reload of the keys file, and of the TLS certificate with it: on SIGHUP
//! and when one of the files changes on disk.
//!
//! The watcher observes the files' directories, not the files, because editors
//! and Kubernetes replace files by rename, which a watch on the old inode would
//! miss. Events are debounced, and a reload whose file bytes did not change is
//! skipped. A reload that fails keeps the clients (or the certificate) in
//! force, logs why and counts a failure.

use super::file::{load_clients, KeysFileError};
use super::registry::ReplaceClients;
use crate::metrics::Metrics;
use crate::settings::KeysFile;
use crate::tls::CertResolver;
use actix::Recipient;
use notify::{RecursiveMode, Watcher};
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::path::PathBuf;
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
    /// The listener's certificate, reloaded with the keys file, when TLS is on.
    tls: Option<Arc<CertResolver>>,
    /// SHA-256 of the files' bytes last loaded, to skip reloads that change nothing.
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
        tls: Option<Arc<CertResolver>>,
    ) -> Reloader {
        let reloader = Reloader {
            keys_file,
            api_keys,
            registry,
            metrics,
            tls,
            loaded: Mutex::new(None),
            sessions: None,
        };
        reloader.remember_files();
        reloader
    }

    /// Every file a reload reads: the keys file, then the certificate and key.
    fn files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.keys_file.path.clone()];
        if let Some(tls) = &self.tls {
            files.extend([tls.files().cert.clone(), tls.files().key.clone()]);
        }
        files
    }

    /// One digest of every file's bytes (a missing file counts as a state of
    /// its own), so a change to any of them is seen.
    fn files_digest(&self) -> [u8; 32] {
        let mut all = Sha256::new();
        for path in self.files() {
            match std::fs::read(&path) {
                Ok(bytes) => {
                    all.update([1]);
                    all.update(Sha256::digest(&bytes));
                }
                Err(_) => all.update([0]),
            }
        }
        all.finalize().into()
    }

    fn remember_files(&self) {
        let digest = self.files_digest();
        if let Ok(mut loaded) = self.loaded.lock() {
            *loaded = Some(digest);
        }
    }

    /// Ends the Live sessions of client keys a reload removes.
    pub fn ending_sessions(mut self, sessions: Arc<crate::live_sessions::LiveSessions>) -> Self {
        self.sessions = Some(sessions);
        self
    }

    /// Reloads the clients, and the certificate when TLS is on; whatever fails
    /// to load stays as it was. One reload counts once: a failure when either
    /// part failed. Answers the clients' outcome.
    pub async fn reload(&self, why: &str) -> Result<usize, KeysFileError> {
        let digest = self.files_digest();
        let keys = self.reload_keys(why).await;
        let tls_loaded = self.reload_tls(why);
        let result = if keys.is_ok() && tls_loaded {
            if let Ok(mut loaded) = self.loaded.lock() {
                *loaded = Some(digest);
            }
            "success"
        } else {
            "failure"
        };
        self.metrics
            .config_reloads
            .with_label_values(&[result])
            .inc();
        keys
    }

    async fn reload_keys(&self, why: &str) -> Result<usize, KeysFileError> {
        match load_clients(&self.keys_file, &self.api_keys) {
            Ok(clients) => {
                let count = clients.len();
                let kept: Vec<_> = clients
                    .iter()
                    .map(|c| (c.name.clone(), c.key_hash))
                    .collect();
                if let Err(e) = self.registry.send(ReplaceClients { clients }).await {
                    log::error!("keys reload ({why}): the key registry is gone: {e}");
                }
                if let Some(sessions) = &self.sessions {
                    sessions.keep_only(&kept);
                }
                log::info!("keys reloaded ({why}): {count} clients in force");
                Ok(count)
            }
            Err(error) => {
                log::error!(
                    "keys reload ({why}) failed, the previous clients stay in force: {error}"
                );
                Err(error)
            }
        }
    }

    /// Whether the certificate (if any) loaded; new handshakes present it.
    fn reload_tls(&self, why: &str) -> bool {
        let Some(tls) = &self.tls else {
            return true;
        };
        match tls.reload() {
            Ok(true) => {
                log::info!(
                    "TLS certificate reloaded ({why}): new connections get the one in {}",
                    tls.files().cert.display()
                );
                true
            }
            Ok(false) => {
                log::debug!("TLS certificate reloaded ({why}): unchanged");
                true
            }
            Err(error) => {
                log::error!(
                    "TLS certificate reload ({why}) failed, the previous certificate stays in force: {error}"
                );
                false
            }
        }
    }

    /// Reloads only if some file's bytes differ from the last load.
    async fn reload_if_changed(&self) {
        let digest = self.files_digest();
        let unchanged = self
            .loaded
            .lock()
            .map(|l| *l == Some(digest))
            .unwrap_or(false);
        if !unchanged {
            let _ = self.reload("file changed").await;
        }
    }
}

/// Keeps the file watchers alive; dropping it stops watching.
pub struct WatchGuard {
    _watchers: Vec<notify::RecommendedWatcher>,
}

/// Watches the directories of the keys file and the TLS files, and reloads
/// after changes settle. Must be called inside the actix System (it spawns
/// the debounce task).
pub fn watch(reloader: Arc<Reloader>) -> WatchGuard {
    let files = reloader.files();
    let mut dirs: Vec<PathBuf> = Vec::new();
    for file in &files {
        let dir = match file.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    let names: Arc<Vec<OsString>> = Arc::new(
        files
            .iter()
            .filter_map(|f| f.file_name().map(ToOwned::to_owned))
            .collect(),
    );
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut watchers = Vec::new();
    for dir in dirs {
        let (tx, names) = (tx.clone(), names.clone());
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|event| is_change(&event, &names)) {
                let _ = tx.send(());
            }
        })
        .and_then(|mut watcher| {
            watcher.watch(&dir, RecursiveMode::NonRecursive)?;
            Ok(watcher)
        });
        match watcher {
            Ok(watcher) => watchers.push(watcher),
            Err(e) => log::warn!(
                "not watching {} for changes ({e}); reload with SIGHUP",
                dir.display()
            ),
        }
    }
    if watchers.is_empty() {
        return WatchGuard {
            _watchers: watchers,
        };
    }
    actix_rt::spawn(async move {
        while rx.recv().await.is_some() {
            settle(&mut rx).await;
            reloader.reload_if_changed().await;
        }
    });
    WatchGuard {
        _watchers: watchers,
    }
}

/// Whether a watcher event may mean the directory's contents changed. Opening
/// or reading a file changes nothing; counting it would make every reload (which
/// reads the file) wake the watcher again, so the file would be read, and a bad
/// one refused and logged, every debounce period for ever.
fn is_change(event: &notify::Event, file_names: &[OsString]) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
    let about_the_file = event.paths.iter().any(|path| {
        path.file_name()
            .is_some_and(|name| file_names.iter().any(|n| n == name))
    });
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
            log::warn!("cannot listen for SIGHUP ({e}); the keys file (and TLS certificate) reload on change only");
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
