//! The Files API: files uploaded by the resumable protocol (`upload`), read, listed,
//! downloaded and deleted by the project that uploaded them (`api`), and checked when
//! a request names one.
//!
//! A file belongs to the project of the key that started its upload; any other project
//! that names it gets the same 403 as for a file that never existed, because Gemini does
//! not tell a caller that someone else's file exists. Expired files are gone, as on
//! Gemini after 48 hours.

pub(crate) mod api;
mod session;
pub(crate) mod upload;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use bytes::Bytes;
use serde::Serialize;

use super::clock::rfc3339;
use super::errors::ApiError;
use session::Session;

/// Uploaded bytes kept per file, for downloads; a bigger file keeps only its hash, so a
/// 1 GiB upload does not stay in memory.
pub const KEPT_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// Gemini's chunk granularity for resumable uploads, and the SDKs' chunk size.
pub(crate) const CHUNK_GRANULARITY: u64 = 8 * 1024 * 1024;

/// Where Gemini's own URLs point, for `MockConfig::upload_url_google`.
pub(crate) const GOOGLE_ORIGIN: &str = "https://generativelanguage.googleapis.com";

/// A file's processing state. Gemini also has FAILED, which the mock never reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileState {
    Processing,
    Active,
}

impl FileState {
    fn wire(self) -> &'static str {
        match self {
            FileState::Processing => "PROCESSING",
            FileState::Active => "ACTIVE",
        }
    }
}

/// A stored file as tests see it (`MockGemini::files`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileInfo {
    /// The id, without `files/`.
    pub id: String,
    pub project: String,
    pub display_name: Option<String>,
    pub mime_type: String,
    pub size: u64,
    /// Lowercase hex SHA-256 of the uploaded bytes.
    pub sha256: String,
    pub state: FileState,
}

#[derive(Clone, Debug)]
pub(crate) struct StoredFile {
    pub project: String,
    pub display_name: Option<String>,
    pub mime_type: String,
    pub size: u64,
    pub sha256_hex: String,
    pub created: SystemTime,
    /// PROCESSING until then (`MockConfig::file_processing`).
    pub active_at: SystemTime,
    pub expires: SystemTime,
    /// The bytes, when at most `KEPT_FILE_BYTES`.
    pub data: Option<Bytes>,
}

impl StoredFile {
    pub fn state(&self, now: SystemTime) -> FileState {
        if now < self.active_at {
            FileState::Processing
        } else {
            FileState::Active
        }
    }

    /// The `File` resource. `origin` and `version` make its `uri`, as Gemini names the
    /// file by the URL of its `GET`.
    pub fn resource<'a>(&'a self, id: &'a str, origin: &str, version: &str) -> FileResource<'a> {
        let now = SystemTime::now();
        let state = self.state(now);
        // Gemini's `updateTime` moves when processing ends.
        let updated = if state == FileState::Active {
            self.active_at.max(self.created)
        } else {
            self.created
        };
        FileResource {
            name: format!("files/{id}"),
            display_name: self.display_name.as_deref(),
            mime_type: &self.mime_type,
            size_bytes: self.size.to_string(),
            create_time: rfc3339(self.created),
            update_time: rfc3339(updated),
            expiration_time: rfc3339(self.expires),
            sha256_hash: sha256_field(&self.sha256_hex),
            uri: format!("{origin}/{version}/files/{id}"),
            state: state.wire(),
            source: "UPLOADED",
        }
    }
}

/// `sha256Hash` as Gemini writes it: base64 of the hex digest's characters (88
/// characters, not 44), as real answers show; the SDK types only say "base64".
fn sha256_field(hex: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(hex.as_bytes())
}

/// The `File` JSON, in Gemini's key order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FileResource<'a> {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<&'a str>,
    mime_type: &'a str,
    size_bytes: String,
    create_time: String,
    update_time: String,
    expiration_time: String,
    sha256_hash: String,
    uri: String,
    state: &'static str,
    source: &'static str,
}

/// Files and unfinished upload sessions of every project.
#[derive(Default)]
pub(crate) struct Files {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    files: HashMap<String, StoredFile>,
    sessions: HashMap<String, Session>,
}

impl Files {
    /// The store with expired files dropped: an expired file is gone, not hidden.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let now = SystemTime::now();
        inner.files.retain(|_, f| f.expires > now);
        inner
    }

    /// The file `id` if `project` holds it, else Gemini's 403.
    pub fn get(&self, project: &str, id: &str) -> Result<StoredFile, ApiError> {
        self.lock()
            .files
            .get(id)
            .filter(|f| f.project == project)
            .cloned()
            .ok_or_else(|| ApiError::file_denied(id))
    }

    pub fn delete(&self, project: &str, id: &str) -> Result<(), ApiError> {
        let mut inner = self.lock();
        match inner.files.get(id) {
            Some(f) if f.project == project => {
                inner.files.remove(id);
                Ok(())
            }
            _ => Err(ApiError::file_denied(id)),
        }
    }

    /// `project`'s files, newest first (ties by id, so pages are stable).
    pub fn list(&self, project: &str) -> Vec<(String, StoredFile)> {
        let mut out: Vec<(String, StoredFile)> = self
            .lock()
            .files
            .iter()
            .filter(|(_, f)| f.project == project)
            .map(|(id, f)| (id.clone(), f.clone()))
            .collect();
        out.sort_by(|a, b| b.1.created.cmp(&a.1.created).then_with(|| a.0.cmp(&b.0)));
        out
    }

    /// Whether a request of `project` may use file `id` in a prompt: Gemini's 403 when
    /// the project does not hold it, its 400 while it is still processing.
    pub fn check_usable(&self, project: &str, id: &str) -> Result<(), ApiError> {
        let file = self.get(project, id)?;
        match file.state(SystemTime::now()) {
            FileState::Active => Ok(()),
            FileState::Processing => Err(ApiError::new(
                400,
                "FAILED_PRECONDITION",
                format!("The File {id} is not in an ACTIVE state and usage is not allowed."),
            )),
        }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.lock().files.contains_key(id)
    }

    fn insert(&self, id: String, file: StoredFile) {
        self.lock().files.insert(id, file);
    }

    /// A file Gemini made in `project` (a batch's answers), once.
    pub fn put_generated(&self, project: &str, id: String, data: &'static [u8]) {
        use sha2::Digest as _;
        let mut inner = self.lock();
        if inner.files.contains_key(&id) {
            return;
        }
        let now = SystemTime::now();
        inner.files.insert(
            id,
            StoredFile {
                project: project.to_owned(),
                display_name: None,
                mime_type: "application/jsonl".to_owned(),
                size: data.len() as u64,
                sha256_hex: sha2::Sha256::digest(data)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect(),
                created: now,
                active_at: now,
                expires: now + std::time::Duration::from_secs(48 * 3600),
                data: Some(Bytes::from_static(data)),
            },
        );
    }

    pub fn infos(&self) -> Vec<FileInfo> {
        let now = SystemTime::now();
        let mut out: Vec<FileInfo> = self
            .lock()
            .files
            .iter()
            .map(|(id, f)| FileInfo {
                id: id.clone(),
                project: f.project.clone(),
                display_name: f.display_name.clone(),
                mime_type: f.mime_type.clone(),
                size: f.size,
                sha256: f.sha256_hex.clone(),
                state: f.state(now),
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    fn sessions(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A fresh id in Gemini's style: 12 lowercase letters and digits.
pub(crate) fn new_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..12)
        .map(|_| char::from(ALPHABET[fastrand::usize(..ALPHABET.len())]))
        .collect()
}

/// Gemini's file ids: lowercase letters, digits and dashes, 1 to 40 characters, not
/// starting or ending with a dash.
/// Clients name files in at most 40 characters; the files Gemini makes itself are
/// longer (a batch's answers: `batch-` and the batch's 40-character id).
const MAX_GENERATED_ID: usize = 64;

pub(crate) fn valid_id(id: &str) -> bool {
    (1..=MAX_GENERATED_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-')
}
