//! One resumable upload: what the start request declared, and the bytes received so
//! far (counted and hashed as they stream in, kept only up to `KEPT_FILE_BYTES`).

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::super::state::Shared;

pub(crate) struct Session {
    pub project: String,
    pub version: &'static str,
    pub display_name: Option<String>,
    pub mime_type: String,
    /// `X-Goog-Upload-Header-Content-Length` (or the body's `sizeBytes`) of the start.
    pub declared: Option<u64>,
    /// An id the start body asked for (`file.name`).
    pub wanted_id: Option<String>,
    /// `None` while a chunk streams in: a second chunk at the same time is refused.
    pub progress: Option<Progress>,
    /// The file made by the finalize, once there is one.
    pub file_id: Option<String>,
}

#[derive(Clone, Default)]
pub(crate) struct Progress {
    pub received: u64,
    pub hasher: Sha256,
    /// The bytes so far, while they fit in `KEPT_FILE_BYTES`.
    pub data: Option<Vec<u8>>,
}

impl Progress {
    pub fn new() -> Self {
        Progress {
            received: 0,
            hasher: Sha256::new(),
            data: Some(Vec::new()),
        }
    }

    pub fn hex_digest(&self) -> String {
        let digest = self.hasher.clone().finalize();
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A session's progress taken out while its chunk streams in. Whatever ends the
/// handler (an error, or the client going away and actix dropping it), the progress
/// goes back on drop: unchanged unless `commit` ran, so a chunk cut short counts for
/// nothing and the client's `query` finds the offset to resume from.
pub(crate) struct Receiving {
    shared: Arc<Shared>,
    upload_id: String,
    progress: Option<Progress>,
}

impl Receiving {
    pub fn new(shared: Arc<Shared>, upload_id: String, progress: Progress) -> Self {
        Receiving {
            shared,
            upload_id,
            progress: Some(progress),
        }
    }

    pub fn progress(&mut self) -> &mut Progress {
        self.progress.get_or_insert_with(Progress::new)
    }
}

impl Drop for Receiving {
    fn drop(&mut self) {
        let mut inner = self.shared.files.sessions();
        if let Some(session) = inner.sessions.get_mut(&self.upload_id) {
            session.progress = self.progress.take();
        }
    }
}
