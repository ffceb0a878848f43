//! Client rate limits kept in Redis, so every replica draws on one bucket per
//! client (`RATE_LIMIT_BACKEND=redis`).
//!
//! One Lua script ([`gcra.lua`](gcra.lua)) runs per check: Redis runs a script
//! atomically, so two replicas checking the same client at once cannot both
//! take its last token, and the script reads Redis's clock, so replicas whose
//! own clocks drift still agree. It is governor's GCRA, so a client gets what
//! it would get from one replica with the memory backend.
//!
//! Every wait is bounded by `REDIS_TIMEOUT_MS`: this module answers "no answer"
//! quickly and the registry falls back to the in-process limit. Errors are
//! described here in words of our own, since nothing Redis sends back may
//! repeat the URL or its password.

use super::limiter::{Decision, RateLimitSnapshot};
use super::policy::Limits;
use crate::errors::whole_seconds_up;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, RedisResult, Script};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Prefix of every key the service writes, so it can share a Redis with others
/// and an operator can find (or delete) its keys with one pattern.
pub const KEY_PREFIX: &str = "gemini-proxy:rl:";

/// Longest wait for a new connection. The manager connects in the background,
/// so this bounds a connection attempt, never a request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A command still unanswered after this fails inside the connection, so a
/// Redis that hangs cannot pile up waiting commands.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// A probe's `PING` may wait for a connection attempt and then an answer.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The key of one client's bucket. The limits are part of it: a client whose
/// limits change starts with a new, full bucket (as with the memory backend),
/// and the old key expires by itself. Client names hold no `:` (the keys file
/// allows letters, digits, `-`, `_`, `.`), so keys cannot collide.
pub fn bucket_key(name: &str, limits: Limits) -> String {
    format!(
        "{KEY_PREFIX}{name}:{}:{}",
        limits.requests_per_minute, limits.burst
    )
}

/// The GCRA script; the redis crate sends it by its SHA-1 (`EVALSHA`) and
/// loads it first when Redis does not know it (after a restart, say).
pub fn gcra_script() -> Script {
    Script::new(include_str!("gcra.lua"))
}

/// GCRA's emission interval in microseconds: 60 s / requests per minute, as
/// governor's `Quota::per_minute` (which rounds down, in nanoseconds).
pub(super) fn emission_interval_us(limits: Limits) -> u64 {
    (60_000_000 / u64::from(limits.requests_per_minute.get())).max(1)
}

/// Runs the script once: takes one token from the bucket at `key` if there is
/// one. `now_us` replaces Redis's clock; only tests pass it.
pub async fn take(
    conn: &mut impl ConnectionLike,
    script: &Script,
    key: &str,
    limits: Limits,
    now_us: Option<u64>,
) -> RedisResult<Decision> {
    let mut invocation = script.key(key);
    invocation
        .arg(emission_interval_us(limits))
        .arg(limits.burst.get());
    if let Some(now) = now_us {
        invocation.arg(now);
    }
    let (allowed, remaining, retry_after_us, reset_us): (i64, i64, i64, i64) =
        invocation.invoke_async(conn).await?;
    Ok(decision(
        limits,
        allowed == 1,
        remaining,
        retry_after_us,
        reset_us,
    ))
}

/// The script's answer as the in-process limiter gives it, so the headers do
/// not depend on the backend.
pub(super) fn decision(
    limits: Limits,
    allowed: bool,
    remaining: i64,
    retry_after_us: i64,
    reset_us: i64,
) -> Decision {
    let micros = |us: i64| Duration::from_micros(u64::try_from(us).unwrap_or(0));
    let burst = limits.burst.get();
    let snapshot = RateLimitSnapshot {
        limit: burst,
        remaining: u32::try_from(remaining).unwrap_or(0).min(burst),
        reset_secs: whole_seconds_up(micros(reset_us)),
    };
    if allowed {
        Decision::Allowed(snapshot)
    } else {
        Decision::Limited {
            snapshot: RateLimitSnapshot {
                remaining: 0,
                ..snapshot
            },
            retry_after_secs: whole_seconds_up(micros(retry_after_us)).max(1),
        }
    }
}

/// Why Redis gave no usable answer. The text never holds the URL or a password.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("no answer within {0} ms")]
    Timeout(u128),
    #[error("{0}")]
    Redis(String),
}

impl From<RedisError> for CheckError {
    fn from(error: RedisError) -> CheckError {
        let words = if error.is_connection_refusal() {
            "connection refused".to_owned()
        } else if error.is_timeout() {
            "I/O timeout".to_owned()
        } else if error.is_io_error() {
            "connection lost or unusable".to_owned()
        } else {
            // The category and the server's error code (`WRONGPASS`, `NOSCRIPT`,
            // …), never its message, which may quote what we sent.
            match (error.category(), error.code()) {
                ("", Some(code)) => code.to_owned(),
                (category, Some(code)) => format!("{category} ({code})"),
                (category, None) => category.to_owned(),
            }
        };
        CheckError::Redis(words)
    }
}

/// A reconnecting Redis client, the script and the time a check may take.
/// Cheap to use from many requests at once: one multiplexed connection.
pub struct RedisLimiter {
    conn: ConnectionManager,
    script: Arc<Script>,
    timeout: Duration,
}

impl RedisLimiter {
    /// Prepares the connection without opening it, so a Redis that is down at
    /// start-up does not stop the service. Must run on the runtime that will
    /// drive the connection (the registry's arbiter).
    pub fn connect(client: redis::Client, timeout: Duration) -> Result<RedisLimiter, CheckError> {
        // No retries inside the manager: the registry's probe asks again every
        // interval, which is also when a failed connection is tried anew.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(RedisLimiter {
            conn,
            script: Arc::new(gcra_script()),
            timeout,
        })
    }

    /// The quota windows on the same connection.
    pub fn quotas(
        &self,
        context: Arc<crate::keys::quota_gate::QuotaContext>,
    ) -> crate::keys::redis_quota::SharedQuotas {
        crate::keys::redis_quota::SharedQuotas {
            conn: self.conn.clone(),
            script: Arc::new(crate::keys::redis_quota::quota_script()),
            timeout: self.timeout,
            context,
        }
    }

    /// Takes one token from the shared bucket at `key`, or says why it could
    /// not within the timeout.
    pub fn check(
        &self,
        key: Arc<str>,
        limits: Limits,
    ) -> impl Future<Output = Result<Decision, CheckError>> + 'static {
        let mut conn = self.conn.clone();
        let script = self.script.clone();
        let timeout = self.timeout;
        async move {
            let check = take(&mut conn, &script, &key, limits, None);
            match tokio::time::timeout(timeout, check).await {
                Ok(result) => Ok(result?),
                Err(_) => Err(CheckError::Timeout(timeout.as_millis())),
            }
        }
    }

    /// Asks whether Redis answers as fast as a check must: a `PING` that may
    /// take as long as (re)connecting does, then loading the script within
    /// the check's timeout on the connection now open. A Redis that always
    /// answers, but slower than checks may wait, stays down rather than
    /// flapping up at each probe and down at the next request. Loading the
    /// script also means the first check after a Redis restart needs one
    /// round trip, not three.
    pub fn probe(&self) -> impl Future<Output = Result<(), CheckError>> + 'static {
        let mut conn = self.conn.clone();
        let script = self.script.clone();
        let timeout = self.timeout;
        async move {
            let ping = redis::cmd("PING");
            let ping = ping.query_async::<String>(&mut conn);
            match tokio::time::timeout(PING_TIMEOUT, ping).await {
                Ok(result) => result.map(drop)?,
                Err(_) => return Err(CheckError::Timeout(PING_TIMEOUT.as_millis())),
            }
            match tokio::time::timeout(timeout, script.load_async(&mut conn)).await {
                Ok(result) => result.map(drop).map_err(CheckError::from),
                Err(_) => Err(CheckError::Timeout(timeout.as_millis())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    fn limits(rpm: u32, burst: u32) -> Limits {
        Limits {
            requests_per_minute: NonZeroU32::new(rpm).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
        }
    }

    #[test]
    fn keys_are_namespaced_by_client_and_limits() {
        assert_eq!(
            bucket_key("billing-service", limits(600, 50)),
            "gemini-proxy:rl:billing-service:600:50"
        );
    }

    #[test]
    fn the_emission_interval_is_governors() {
        assert_eq!(emission_interval_us(limits(60, 1)), 1_000_000);
        assert_eq!(emission_interval_us(limits(7, 1)), 8_571_428);
        assert_eq!(emission_interval_us(limits(u32::MAX, 1)), 1, "never 0");
    }

    #[test]
    fn answers_become_the_same_decisions_as_the_memory_limiter_gives() {
        let l = limits(60, 3);
        assert_eq!(
            decision(l, true, 2, 0, 1_000_000),
            Decision::Allowed(RateLimitSnapshot {
                limit: 3,
                remaining: 2,
                reset_secs: 1
            })
        );
        assert_eq!(
            decision(l, false, 0, 1_400_000, 3_000_000),
            Decision::Limited {
                snapshot: RateLimitSnapshot {
                    limit: 3,
                    remaining: 0,
                    reset_secs: 3
                },
                retry_after_secs: 2,
            },
            "1.4 s rounds up"
        );
        // A refusal always asks for at least a second, as the memory limiter does.
        assert!(matches!(
            decision(l, false, 0, 10, 10),
            Decision::Limited {
                retry_after_secs: 1,
                ..
            }
        ));
    }

    #[test]
    fn error_words_never_quote_redis() {
        let error = RedisError::from((
            redis::ErrorKind::AuthenticationFailed,
            "auth",
            "secret-password-here".to_owned(),
        ));
        let text = CheckError::from(error).to_string();
        assert!(!text.contains("secret"), "{text}");
        assert_eq!(text, "authentication failed");
    }
}
