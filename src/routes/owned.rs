//! Resources clients make in Gemini through the shared server keys — files,
//! cached contents, batches, interactions — and who may use them
//! (docs/api.md#files-caches-batches-and-interactions).
//!
//! Each lives in the project of the key that made it, so a later call that
//! names it must go out with that key (any other gets Gemini's 403 or 404),
//! and only for the client that made it: to anyone else it does not exist.
//! Calls made with a client's own Gemini key are that client's business and
//! pass through untouched.

use crate::errors::{ApiError, ErrorCode};
use crate::ownership::{references, KeyRef, Kind, Owner};
use crate::state::AppState;
use crate::upstream::{Reply, ReplyBody};
use std::sync::Arc;
use std::time::Duration;

/// How long a record is kept when Gemini's answer gives no expiry: files and
/// batches 48 h (Gemini's own file lifetime), interactions 55 days (what
/// Gemini keeps stored interactions on the paid tier), cached contents 1 h
/// (their default TTL).
pub fn default_ttl(kind: Kind) -> Duration {
    const HOUR: u64 = 3600;
    Duration::from_secs(match kind {
        Kind::File | Kind::Batch => 48 * HOUR,
        // Renewed by every chunk: a session idle this long is abandoned.
        Kind::Upload => 24 * HOUR,
        Kind::CachedContent => HOUR,
        Kind::Interaction => 55 * 24 * HOUR,
    })
}

/// The collection a kind's names start with (`files/abc`).
pub fn collection(kind: Kind) -> &'static str {
    match kind {
        Kind::File => "files",
        Kind::CachedContent => "cachedContents",
        Kind::Batch => "batches",
        Kind::Interaction => "interactions",
        Kind::Upload => "uploads",
    }
}

/// 404 in the route's shape: what a resource the client does not own is.
pub fn not_found(kind: Kind) -> ApiError {
    let what = match kind {
        Kind::File => "file",
        Kind::CachedContent => "cached content",
        Kind::Batch => "batch",
        Kind::Interaction => "interaction",
        Kind::Upload => "upload",
    };
    ApiError::new(
        ErrorCode::NotFound,
        format!("there is no such {what} for this client"),
    )
}

/// A resource id from a path segment, or NOT_FOUND when it could not be one.
pub fn id_from_path(kind: Kind, raw: &str) -> Result<String, ApiError> {
    if crate::ownership::valid_id(kind, raw) {
        Ok(raw.to_owned())
    } else {
        Err(ApiError::new(
            ErrorCode::NotFound,
            format!("`{}` is not a valid {} id", shorten(raw), collection(kind)),
        ))
    }
}

fn shorten(raw: &str) -> String {
    raw.chars().take(64).collect()
}

/// Every resource the call names: in its path and in its body. A body that
/// may name one but cannot be read is refused, since Gemini might read in it
/// what the service could not.
pub fn named(path: Option<&(Kind, String)>, body: &[u8]) -> Result<Vec<(Kind, String)>, ApiError> {
    let mut named: Vec<(Kind, String)> = path.cloned().into_iter().collect();
    if body.is_empty() {
        return Ok(named);
    }
    let refs = references::scan(body).map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            "the request body names a resource but is not JSON the service can read",
        )
    })?;
    named.extend(refs.files.into_iter().map(|id| (Kind::File, id)));
    named.extend(
        refs.cached_contents
            .into_iter()
            .map(|id| (Kind::CachedContent, id)),
    );
    named.extend(
        refs.interactions
            .into_iter()
            .map(|id| (Kind::Interaction, id)),
    );
    Ok(named)
}

/// The server key every named resource lives with, checked to be `client`'s
/// own; `None` when the call names none. A resource another client made, or
/// one nobody made through the service, does not exist for this client.
pub async fn pin(
    state: &AppState,
    client: &str,
    named: &[(Kind, String)],
) -> Result<Option<usize>, ApiError> {
    let context = state.upstream.context();
    let mut pinned: Option<usize> = None;
    for (kind, id) in named {
        let owner = context.ownership.lookup(*kind, id).await;
        let Some(Owner {
            client: owner,
            key: KeyRef::Server(fingerprint),
        }) = owner
        else {
            return Err(not_found(*kind));
        };
        if *owner != *client {
            return Err(not_found(*kind));
        }
        let Some(index) = context.keys.index_of(&fingerprint) else {
            // Another replica holds a key this one was not given.
            return Err(ApiError::new(
                ErrorCode::UpstreamUnavailable,
                "the server key that holds this resource is not configured on this replica",
            ));
        };
        match pinned {
            Some(other) if other != index => {
                return Err(ApiError::new(
                    ErrorCode::InvalidRequest,
                    "the resources this request names were made with different server keys \
                     and cannot be used together",
                ))
            }
            _ => pinned = Some(index),
        }
    }
    Ok(pinned)
}

/// Who a successful call's resources belong to: the client, with the server
/// key it went out with, or its own key.
pub fn owner_of(
    state: &AppState,
    client: &Arc<str>,
    own: bool,
    server_key: Option<usize>,
) -> Option<Owner> {
    let key = if own {
        KeyRef::Own
    } else {
        KeyRef::Server(
            state
                .upstream
                .context()
                .keys
                .fingerprint(server_key?)?
                .clone(),
        )
    };
    Some(Owner {
        client: client.clone(),
        key,
    })
}

/// Records the resource a successful create made, named in Gemini's answer.
/// Resources made with a client's own key are not recorded: nothing is
/// checked for them.
pub async fn record_created(state: &AppState, kind: Kind, owner: &Owner, reply: &Reply) {
    if matches!(owner.key, KeyRef::Own) {
        return;
    }
    let ReplyBody::Full(body) = &reply.body else {
        return;
    };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    record_from_value(state, kind, owner, &value).await;
}

/// A finished batch whose input was a file writes its answers to a file
/// (`responsesFile`) in the same project: it belongs to the batch's client,
/// who downloads it with the batch's key.
pub async fn record_batch_output(state: &AppState, owner: &Owner, reply: &Reply) {
    if matches!(owner.key, KeyRef::Own) {
        return;
    }
    let ReplyBody::Full(body) = &reply.body else {
        return;
    };
    if memchr::memmem::find(body, b"responsesFile").is_none() {
        return;
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    let named = [
        value.pointer("/response/responsesFile"),
        value.pointer("/metadata/output/responsesFile"),
    ];
    for name in named.into_iter().flatten().filter_map(|v| v.as_str()) {
        if let Some(id) = name.strip_prefix("files/") {
            if crate::ownership::valid_id(Kind::File, id) {
                state
                    .upstream
                    .context()
                    .ownership
                    .record(Kind::File, id, owner.clone(), default_ttl(Kind::File))
                    .await;
            }
        }
    }
}

/// Records the resource `value` (a create's answer, or an event carrying it) describes.
pub async fn record_from_value(
    state: &AppState,
    kind: Kind,
    owner: &Owner,
    value: &serde_json::Value,
) {
    let Some(id) = created_id(kind, value) else {
        log::warn!(
            "Gemini's answer to a {} create names no resource; nothing recorded",
            collection(kind)
        );
        return;
    };
    let ttl = expiry(value).unwrap_or_else(|| default_ttl(kind));
    state
        .upstream
        .context()
        .ownership
        .record(kind, &id, owner.clone(), ttl)
        .await;
}

/// The id of the resource an answer describes: `name` (`files/abc`,
/// `cachedContents/abc`, `batches/abc`; a file under `file`), or an
/// interaction's `id`.
pub fn created_id(kind: Kind, value: &serde_json::Value) -> Option<String> {
    let object = match kind {
        Kind::File => value.get("file").unwrap_or(value),
        Kind::Interaction => value.get("interaction").unwrap_or(value),
        _ => value,
    };
    let id = match kind {
        Kind::Interaction => object.get("id")?.as_str()?,
        _ => {
            let name = object.get("name")?.as_str()?;
            name.strip_prefix(collection(kind))?.strip_prefix('/')?
        }
    };
    crate::ownership::valid_id(kind, id).then(|| id.to_owned())
}

/// Time until the expiry an answer states (`expirationTime` of a file,
/// `expireTime` of a cached content), if any and still ahead.
pub fn expiry(value: &serde_json::Value) -> Option<Duration> {
    let object = value.get("file").unwrap_or(value);
    let stamp = object
        .get("expireTime")
        .or_else(|| object.get("expirationTime"))?
        .as_str()?;
    let at: jiff::Timestamp = stamp.parse().ok()?;
    let left = at.duration_since(jiff::Timestamp::now());
    Duration::try_from(left).ok().filter(|d| !d.is_zero())
}
