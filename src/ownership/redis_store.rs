//! Ownership records in Redis, so every replica knows every resource.
//!
//! One key per resource, `gemini-proxy:own:{kind}:{id}`, holding
//! `{client}|{fingerprint}` (or `{client}|own`) and expiring with the resource
//! (`SET … PX`). Client names hold only letters, digits, `-`, `_` and `.`, and
//! ids are checked before they get here, so neither the separator nor a key
//! from another namespace can be smuggled in.
//!
//! Every command waits at most the Redis timeout. A failure is logged once when
//! Redis stops answering and once when it answers again, in words that never
//! hold the URL (the error conversion of [`CheckError`]).

use super::{KeyFingerprint, KeyRef, Kind, Owner};
use crate::keys::redis_limiter::CheckError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Prefix of every ownership key: beside the rate limits' `gemini-proxy:rl:`,
/// so one pattern finds (or deletes) all of them.
pub const KEY_PREFIX: &str = "gemini-proxy:own:";

/// What a key without an expiry (written by hand, say) is kept locally for:
/// short, since nothing says how long the resource lives.
const LOCAL_TTL_WITHOUT_EXPIRY: Duration = Duration::from_secs(60);

/// Longest wait for a new connection; the manager connects in the background,
/// and every command is bounded by the caller's timeout anyway.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A command still unanswered after this fails inside the connection, so a
/// Redis that hangs cannot pile up waiting commands.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);

/// A reconnecting connection set up as the rate limiter's is, without opening
/// it: a Redis that is down at start-up does not stop the service. Must run
/// inside the Tokio runtime that will drive the connection, one that lives as
/// long as the server (the connection task is spawned there); the handle may
/// then be used from every worker.
pub fn connect(client: redis::Client) -> Result<ConnectionManager, CheckError> {
    // No retries inside the manager: the next command tries a new connection.
    let config = ConnectionManagerConfig::new()
        .set_number_of_retries(0)
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    Ok(ConnectionManager::new_lazy_with_config(client, config)?)
}

/// The Redis key of one resource.
pub(super) fn key(kind: Kind, id: &str) -> String {
    format!("{KEY_PREFIX}{kind}:{id}")
}

/// The value stored for an owner.
pub(super) fn encode(owner: &Owner) -> String {
    let key = match &owner.key {
        KeyRef::Server(fingerprint) => fingerprint.as_str(),
        KeyRef::Own => "own",
    };
    format!("{}|{key}", owner.client)
}

/// An owner read back; `None` for anything this module did not write.
pub(super) fn decode(value: &str) -> Option<Owner> {
    let (client, key) = value.split_once('|')?;
    let client_ok = !client.is_empty()
        && client
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !client_ok {
        return None;
    }
    let key = match key {
        "own" => KeyRef::Own,
        other => KeyRef::Server(KeyFingerprint::parse(other)?),
    };
    Some(Owner {
        client: Arc::from(client),
        key,
    })
}

/// How long a lookup's answer may be kept locally, from `PTTL`'s reply.
fn remaining(pttl: i64) -> Option<Duration> {
    match pttl {
        // -1: the key has no expiry.
        -1 => Some(LOCAL_TTL_WITHOUT_EXPIRY),
        ms => u64::try_from(ms)
            .ok()
            .filter(|&ms| ms > 0)
            .map(Duration::from_millis),
    }
}

pub(super) struct Shared {
    conn: ConnectionManager,
    timeout: Duration,
    /// Did the last command fail? Logs only the changes.
    failing: AtomicBool,
}

impl Shared {
    pub(super) fn new(conn: ConnectionManager, timeout: Duration) -> Shared {
        Shared {
            conn,
            timeout,
            failing: AtomicBool::new(false),
        }
    }

    /// Writes the record unless one is there already (`NX`): a record is
    /// never taken over by another client. `Some(false)`: Redis holds
    /// another; `None`: Redis did not answer.
    pub(super) async fn record(
        &self,
        kind: Kind,
        id: &str,
        owner: &Owner,
        ttl: Duration,
    ) -> Option<bool> {
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut set = redis::cmd("SET");
        set.arg(key(kind, id))
            .arg(encode(owner))
            .arg("PX")
            .arg(millis)
            .arg("NX");
        let mut conn = self.conn.clone();
        self.bounded("record", async move {
            set.query_async::<Option<String>>(&mut conn).await
        })
        .await
        .ok()
        .map(|written| written.is_some())
    }

    /// The owner and how long the record has left, if Redis has it.
    pub(super) async fn lookup(&self, kind: Kind, id: &str) -> Option<(Owner, Duration)> {
        let key = key(kind, id);
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(&key).cmd("PTTL").arg(&key);
        let mut conn = self.conn.clone();
        let (value, pttl) = self
            .bounded("lookup", async move {
                pipe.query_async::<(Option<String>, i64)>(&mut conn).await
            })
            .await
            .ok()?;
        let value = value?;
        let Some(owner) = decode(&value) else {
            log::warn!(
                "ownership: the Redis record of {kind} {id} is not one this service wrote; ignored"
            );
            return None;
        };
        Some((owner, remaining(pttl)?))
    }

    pub(super) async fn forget(&self, kind: Kind, id: &str) {
        let mut del = redis::cmd("DEL");
        del.arg(key(kind, id));
        let mut conn = self.conn.clone();
        let _ = self
            .bounded(
                "forget",
                async move { del.query_async::<i64>(&mut conn).await },
            )
            .await;
    }

    pub(super) async fn extend(&self, kind: Kind, id: &str, ttl: Duration) {
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut pexpire = redis::cmd("PEXPIRE");
        pexpire.arg(key(kind, id)).arg(millis);
        let mut conn = self.conn.clone();
        let _ = self
            .bounded("extend", async move {
                pexpire.query_async::<i64>(&mut conn).await
            })
            .await;
    }

    /// Runs one command within the timeout and logs a change of state.
    async fn bounded<T>(
        &self,
        what: &str,
        command: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, CheckError> {
        let result = match tokio::time::timeout(self.timeout, command).await {
            Ok(answer) => answer.map_err(CheckError::from),
            Err(_) => Err(CheckError::Timeout(self.timeout.as_millis())),
        };
        match &result {
            Ok(_) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    log::info!(
                        "ownership: Redis answers again; records are shared by every replica"
                    );
                }
            }
            Err(error) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    log::warn!(
                        "ownership: Redis failed a {what} ({error}); until it answers, this replica \
                         knows only the resources made through it"
                    );
                }
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ownership::fingerprint;

    #[test]
    fn keys_are_namespaced_by_kind() {
        assert_eq!(key(Kind::File, "abc-1"), "gemini-proxy:own:file:abc-1");
        assert_eq!(key(Kind::CachedContent, "x"), "gemini-proxy:own:cache:x");
        assert_eq!(
            key(Kind::Upload, "AbC_d.e"),
            "gemini-proxy:own:upload:AbC_d.e"
        );
    }

    #[test]
    fn owners_survive_the_round_trip_and_nothing_else_decodes() {
        let server = Owner {
            client: "billing.svc-1_a".into(),
            key: KeyRef::Server(fingerprint(b"AIza-secret")),
        };
        let own = Owner {
            client: "alice".into(),
            key: KeyRef::Own,
        };
        for owner in [server, own] {
            assert_eq!(decode(&encode(&owner)).as_ref(), Some(&owner));
        }
        assert!(!encode(&Owner {
            client: "a".into(),
            key: KeyRef::Server(fingerprint(b"AIza-secret"))
        })
        .contains("secret"));
        for bad in [
            "",
            "alice",
            "|own",
            "al ice|own",
            "alice|",
            "alice|mine",
            "alice|0123456789ABCDEF",
            "alice|0123456789abcde",
            "alice|own|x",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_remaining_time_comes_from_pttl() {
        assert_eq!(remaining(1500), Some(Duration::from_millis(1500)));
        assert_eq!(remaining(-1), Some(LOCAL_TTL_WITHOUT_EXPIRY));
        assert_eq!(remaining(-2), None, "gone");
        assert_eq!(remaining(0), None);
    }
}
