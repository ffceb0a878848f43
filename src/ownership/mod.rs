//! Who made each Gemini resource, and with which server key.
//!
//! Files, cached contents, batches, interactions and upload sessions live in
//! the Google project of the key that created them: a later call about one of
//! them must go out with that same key (any other key's project answers 403 or
//! 404), and only for the client that made it (the pool's keys are shared, so
//! Gemini alone cannot tell one client's file from another's). This module
//! remembers both, for as long as Gemini keeps the resource.
//!
//! With one replica the records live in process ([`Ownership::memory`]); with
//! several, in Redis as well ([`Ownership::redis`]) so a file uploaded through
//! one replica can be used through another. Redis is asked only when the local
//! map misses and never waited on longer than the Redis timeout: a Redis that
//! is down makes other replicas' resources unknown here (the caller refuses
//! them), it never makes a request hang.
//!
//! [`references`] finds the resources a request body names, so the caller can
//! look each one up before forwarding the body.

pub mod background;
pub mod chunks;
mod memory;
mod redis_store;
pub mod references;
pub mod seal;

use memory::{AtShare, Memory};
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use background::BackgroundRuns;
pub use chunks::{Busy, ChunkGate, ChunkSlot};
pub use redis_store::connect;
pub use references::{scan, References, Unreadable};

/// Longest id the store accepts: far above any id Gemini hands out, short
/// enough that a Redis key stays small.
pub const MAX_ID_LEN: usize = 256;

/// Longest time a record is kept, whatever the caller asks: Gemini keeps files
/// 48 hours and batches and interactions for days, and a caller's mistake (a
/// `Duration::MAX`) must not pin an entry forever or overflow an `Instant`.
pub const MAX_TTL: Duration = Duration::from_secs(400 * 24 * 3600);

/// Upload sessions kept in this process at most (in a table of their own).
pub const MAX_UPLOAD_SESSIONS: usize = 100_000;
/// Upload sessions one client may hold open at once: no client can fill the
/// table and push out another's unfinished uploads.
pub const MAX_UPLOADS_PER_CLIENT: usize = 1_000;

/// A client's share of a resource table: a fifth of a production-sized one
/// (no client can push out everyone else's records), the whole of a small one.
fn client_share(max_entries: usize) -> usize {
    if max_entries >= 10_000 {
        max_entries / 5
    } else {
        max_entries
    }
}

/// The kinds of resource Gemini keeps per project. Each is its own namespace:
/// a file and a batch may share an id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    File,
    CachedContent,
    Batch,
    Interaction,
    /// A resumable upload session; its id is the `upload_id` of the session URL.
    Upload,
}

impl Kind {
    /// The kind's part of a Redis key: short, fixed and free of `:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::CachedContent => "cache",
            Kind::Batch => "batch",
            Kind::Interaction => "interaction",
            Kind::Upload => "upload",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Names a server key without holding it: the first 8 bytes of its SHA-256, in
/// hex. Enough to tell the pool's keys apart, useless to call Gemini with, so it
/// may be stored in Redis and written to logs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyFingerprint(String);

/// Hex characters in a fingerprint (8 bytes).
const FINGERPRINT_LEN: usize = 16;

impl KeyFingerprint {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Reads a fingerprint back (from Redis): exactly 16 lowercase hex digits.
    pub fn parse(text: &str) -> Option<KeyFingerprint> {
        let hex = text.len() == FINGERPRINT_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        hex.then(|| KeyFingerprint(text.to_owned()))
    }
}

impl fmt::Display for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The fingerprint of a server key.
pub fn fingerprint(key: &[u8]) -> KeyFingerprint {
    let digest = Sha256::digest(key);
    KeyFingerprint(hex::encode(&digest[..FINGERPRINT_LEN / 2]))
}

/// Which key a resource was made with.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeyRef {
    /// One of the pool's server keys.
    Server(KeyFingerprint),
    /// The client's own Gemini key, passed through; it is never stored, so the
    /// client must send it again for every call about the resource.
    Own,
}

/// Who made a resource, and with which key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The client's name from the keys file.
    pub client: Arc<str>,
    pub key: KeyRef,
}

/// Can `id` be stored? ASCII letters, digits, `-`, `_` and `.`, at most
/// [`MAX_ID_LEN`] bytes: an id is part of a Redis key, so nothing that could
/// reach into another key's namespace (`:`, `*`, spaces) may pass. Routes use it
/// as the first check of an id taken from a path; [`valid_id`] is the stricter
/// one per kind.
pub fn is_resource_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Longest file id. Gemini documents "up to 40 characters that are lowercase
/// alphanumeric or dashes" for the names clients choose, but the files it
/// makes itself are longer (a batch's `responsesFile` is `files/batch-` and
/// the batch's 40-character id), and a reference the scan would not know for
/// one could slip past the ownership check: any length the store takes.
pub const MAX_FILE_ID: usize = MAX_ID_LEN;

/// Is `id` an id Gemini could have given a resource of this kind?
///
/// - files: lowercase letters, digits and `-` (Gemini's documented rule), up to
///   [`MAX_FILE_ID`];
/// - cached contents: the same characters, no documented length, so up to
///   [`MAX_ID_LEN`] (too strict would refuse real caches; Gemini rejects the rest);
/// - batches and interactions: letters of either case, digits, `-` and `_`
///   (interaction ids look like `v1_ChdTb21lT3BhcXVlSWQ`);
/// - upload sessions: whatever the store accepts ([`is_resource_id`]); Google's
///   `upload_id`s are opaque tokens.
pub fn valid_id(kind: Kind, id: &str) -> bool {
    let lower = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
    let mixed = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    let (max, allowed): (usize, &dyn Fn(u8) -> bool) = match kind {
        Kind::File => (MAX_FILE_ID, &lower),
        Kind::CachedContent => (MAX_ID_LEN, &lower),
        Kind::Batch | Kind::Interaction => (MAX_ID_LEN, &mixed),
        Kind::Upload => return is_resource_id(id),
    };
    (1..=max).contains(&id.len()) && id.bytes().all(allowed)
}

/// The ownership records, shared by every HTTP worker: clone it freely (one
/// `Arc`). Send and Sync; no lock is held across an `.await`.
#[derive(Clone)]
pub struct Ownership {
    inner: Arc<Inner>,
}

struct Inner {
    memory: Memory,
    /// Upload sessions apart: cheap to open, so they must never push a
    /// resource's record out.
    uploads: Memory,
    redis: Option<redis_store::Shared>,
    background: BackgroundRuns,
    chunks: ChunkGate,
}

impl fmt::Debug for Ownership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = match self.inner.redis {
            Some(_) => "redis",
            None => "memory",
        };
        f.debug_struct("Ownership")
            .field("backend", &backend)
            .finish_non_exhaustive()
    }
}

impl Ownership {
    /// Records kept in this process only, at most `max_entries` of them.
    pub fn memory(max_entries: usize) -> Ownership {
        Ownership {
            inner: Arc::new(Inner {
                memory: Memory::new(max_entries, client_share(max_entries), AtShare::EvictOwn),
                uploads: Memory::new(MAX_UPLOAD_SESSIONS, MAX_UPLOADS_PER_CLIENT, AtShare::Refuse),
                redis: None,
                background: BackgroundRuns::default(),
                chunks: ChunkGate::default(),
            }),
        }
    }

    /// Records kept in Redis, shared with every replica, and in this process
    /// (at most `max_entries`), which answers alone when Redis does not within
    /// `timeout`. Build `manager` with [`connect`].
    pub fn redis(
        manager: redis::aio::ConnectionManager,
        timeout: Duration,
        max_entries: usize,
    ) -> Ownership {
        Ownership {
            inner: Arc::new(Inner {
                memory: Memory::new(max_entries, client_share(max_entries), AtShare::EvictOwn),
                uploads: Memory::new(MAX_UPLOAD_SESSIONS, MAX_UPLOADS_PER_CLIENT, AtShare::Refuse),
                redis: Some(redis_store::Shared::new(manager, timeout)),
                background: BackgroundRuns::default(),
                chunks: ChunkGate::default(),
            }),
        }
    }

    /// Remembers that `owner` made the resource, for `ttl` (at most
    /// [`MAX_TTL`]). An id the store refuses ([`is_resource_id`]) or a zero
    /// `ttl` records nothing.
    /// Whether it was recorded: not when another client holds the id, nor
    /// when this client already holds its share of this process's table.
    pub async fn record(&self, kind: Kind, id: &str, owner: Owner, ttl: Duration) -> bool {
        if !is_resource_id(id) || ttl.is_zero() {
            return false;
        }
        let ttl = ttl.min(MAX_TTL);
        let memory = self.memory_for(kind);
        // Never taken over: a record another client holds stays theirs.
        if let Some(held) = memory.get(kind, id, Instant::now()) {
            if held.client != owner.client {
                log::warn!(
                    "ownership: a {kind} another client holds was named again; its record is kept"
                );
                return false;
            }
        }
        // Local first: the answer to this very request may be followed by a
        // call about the resource before Redis has answered.
        if !memory.insert(kind, id, owner.clone(), ttl, Instant::now()) {
            return false;
        }
        if let Some(redis) = &self.inner.redis {
            if redis.record(kind, id, &owner, ttl).await == Some(false) {
                // Redis holds it already: its record stands, and this
                // replica reads it on the next lookup.
                memory.remove(kind, id);
            }
        }
        true
    }

    /// Who made the resource, if it is known and not expired. With Redis, a
    /// local miss asks Redis (within the timeout) and keeps what it answers.
    pub async fn lookup(&self, kind: Kind, id: &str) -> Option<Owner> {
        if !is_resource_id(id) {
            return None;
        }
        if let Some(owner) = self.memory_for(kind).get(kind, id, Instant::now()) {
            return Some(owner);
        }
        let (owner, ttl) = self.inner.redis.as_ref()?.lookup(kind, id).await?;
        self.memory_for(kind)
            .insert(kind, id, owner.clone(), ttl, Instant::now());
        Some(owner)
    }

    /// Forgets the resource (Gemini deleted it), here and in Redis.
    pub async fn forget(&self, kind: Kind, id: &str) {
        if !is_resource_id(id) {
            return;
        }
        self.memory_for(kind).remove(kind, id);
        if let Some(redis) = &self.inner.redis {
            redis.forget(kind, id).await;
        }
    }

    /// The resource now lives `ttl` from now (a cached content whose TTL was
    /// patched). Unknown resources stay unknown.
    pub async fn extend(&self, kind: Kind, id: &str, ttl: Duration) {
        if !is_resource_id(id) {
            return;
        }
        if ttl.is_zero() {
            return self.forget(kind, id).await;
        }
        let ttl = ttl.min(MAX_TTL);
        self.memory_for(kind).extend(kind, id, ttl, Instant::now());
        if let Some(redis) = &self.inner.redis {
            redis.extend(kind, id, ttl).await;
        }
    }

    /// How many live records this replica knows for a server key: for the log
    /// line when Gemini refuses that key (its resources become unreachable).
    /// Records only in Redis (made through other replicas) are not counted.
    pub fn held_by(&self, key: &KeyFingerprint) -> usize {
        self.inner.memory.held_by(key, Instant::now())
    }

    fn memory_for(&self, kind: Kind) -> &Memory {
        match kind {
            Kind::Upload => &self.inner.uploads,
            _ => &self.inner.memory,
        }
    }

    /// Upload chunks in flight on this replica.
    pub fn chunks(&self) -> &ChunkGate {
        &self.inner.chunks
    }

    /// Background interactions whose tokens are still to charge.
    pub fn background(&self) -> &BackgroundRuns {
        &self.inner.background
    }
}

#[cfg(test)]
mod tests;
