//! Settings, read once from the environment into typed values (SPEC §1).
//!
//! Parsing is a pure function of a variable lookup, so tests pass a map instead of
//! mutating the process environment. A bad value is refused with a message that
//! names the variable and never repeats a secret.

use crate::model_id::ModelId;
use awc::http::Uri;
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

/// The keys file used when `KEYS_FILE` is not set; its absence is fine.
pub const DEFAULT_KEYS_FILE: &str = "config/keys.toml";

/// Every setting the service reads, for `.env.example` and start-up checks.
pub const ALL_VARIABLES: &[&str] = &[
    "HOST",
    "PORT",
    "GEMINI_API_KEY",
    "API_KEYS",
    "KEYS_FILE",
    "DEFAULT_MODEL",
    "GEMINI_BASE_URL",
    "MAX_PROMPT_CHARS",
    "MAX_BODY_BYTES",
    "UPSTREAM_TIMEOUT_SECS",
    "UPSTREAM_CONNECT_TIMEOUT_SECS",
    "CORS_ALLOWED_ORIGINS",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "MAX_IN_FLIGHT",
    "UPSTREAM_ACTORS",
    "WORKERS",
    "RATE_LIMIT_BACKEND",
    "REDIS_URL",
    "REDIS_TIMEOUT_MS",
    "CLIENT_STALL_TIMEOUT_SECS",
    "KEY_RECHECK_SECS",
];

#[derive(Clone)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    /// The server's own Gemini keys, in pool order.
    pub gemini_api_keys: Vec<SecretString>,
    /// Client keys from `API_KEYS`, named `env-1`, `env-2`, … in this order.
    pub api_keys: Vec<SecretString>,
    pub keys_file: KeysFile,
    pub default_model: ModelId,
    pub gemini_base_url: BaseUrl,
    pub max_prompt_chars: NonZeroUsize,
    pub max_body_bytes: NonZeroUsize,
    pub upstream_timeout: Duration,
    pub upstream_connect_timeout: Duration,
    pub cors_allowed_origins: CorsOrigins,
    pub log_level: LogLevel,
    pub log_format: LogFormat,
    /// Requests allowed in the upstream pool at once; past it, 503 at once.
    pub max_in_flight: NonZeroUsize,
    /// Upstream actors (each on its own thread with its own connection pool).
    pub upstream_actors: Option<NonZeroUsize>,
    /// HTTP worker threads.
    pub workers: NonZeroUsize,
    /// Where client rate limits are kept.
    pub rate_limit_backend: RateLimitBackend,
    /// A stream whose client accepts no byte for this long is cut.
    pub client_stall_timeout: Duration,
    /// How often server keys Gemini refused are asked again.
    pub key_recheck_interval: Duration,
}

/// Where client rate limits are kept (`RATE_LIMIT_BACKEND`).
#[derive(Clone, Debug)]
pub enum RateLimitBackend {
    /// In process (governor): each replica limits on its own.
    Memory,
    /// In Redis, shared by every replica, with the in-process limit as fallback.
    Redis(RedisSettings),
}

/// How to reach Redis and how long a rate-limit check may wait for it.
#[derive(Clone)]
pub struct RedisSettings {
    /// Parsed `REDIS_URL`; may hold a password, so it is never printed whole.
    pub connection: redis::ConnectionInfo,
    /// Longest wait for one check before the replica uses its in-process limit.
    pub timeout: Duration,
}

impl RedisSettings {
    /// Where Redis is, for logs: address and database, credentials masked.
    pub fn display(&self) -> String {
        let redis = self.connection.redis_settings();
        let db = redis.db();
        let address = match self.connection.addr() {
            redis::ConnectionAddr::Tcp(host, port) if host.contains(':') => {
                format!("redis://[{host}]:{port}/{db}")
            }
            redis::ConnectionAddr::Tcp(host, port) => format!("redis://{host}:{port}/{db}"),
            redis::ConnectionAddr::TcpTls { host, port, .. } => {
                format!("rediss://{host}:{port}/{db}")
            }
            redis::ConnectionAddr::Unix(path) => format!("unix://{}?db={db}", path.display()),
            _ => format!("redis (another kind of address), db {db}"),
        };
        let credentials = match (redis.username(), redis.password()) {
            (_, Some(_)) => " (password masked)",
            (Some(_), None) => " (user set)",
            (None, None) => "",
        };
        format!("{address}{credentials}")
    }
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} timeout={:?}", self.display(), self.timeout)
    }
}

/// Where the per-client settings live, and whether the operator named the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeysFile {
    pub path: PathBuf,
    /// A file the operator named must exist; the default one may be absent.
    pub required: bool,
}

/// The upstream origin, without a trailing slash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl(String);

impl BaseUrl {
    pub fn parse(raw: &str) -> Result<BaseUrl, String> {
        let uri: Uri = raw.parse().map_err(|_| "is not a valid URL".to_owned())?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => return Err("must start with http:// or https://".into()),
        }
        let Some(authority) = uri.authority() else {
            return Err("has no host".into());
        };
        if authority.as_str().contains('@') {
            return Err("must not carry credentials (user:password@)".into());
        }
        if uri.query().is_some() {
            return Err("must not have a query string".into());
        }
        Ok(BaseUrl(raw.trim_end_matches('/').to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorsOrigins {
    None,
    Any,
    List(Vec<String>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogLevel {
    /// `RUST_LOG` was set and wins over `LOG_LEVEL`.
    Filter(String),
    Level(log::LevelFilter),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A setting that could not be used; the message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct SettingsError {
    pub variable: &'static str,
    pub problem: String,
}

fn invalid(variable: &'static str, problem: impl Into<String>) -> SettingsError {
    SettingsError {
        variable,
        problem: problem.into(),
    }
}

impl Settings {
    /// Reads the process environment (after `.env`, which never overrides it).
    pub fn from_env() -> Result<Settings, SettingsError> {
        Settings::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings from a map, as tests do.
    pub fn from_map(map: &HashMap<String, String>) -> Result<Settings, SettingsError> {
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, SettingsError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let cpus = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);

        let keys_file = match get("KEYS_FILE") {
            Some(path) => KeysFile {
                path: PathBuf::from(path.trim()),
                required: true,
            },
            None => KeysFile {
                path: PathBuf::from(DEFAULT_KEYS_FILE),
                required: false,
            },
        };
        let default_model = get("DEFAULT_MODEL").unwrap_or_else(|| "gemini-2.5-flash".into());
        let default_model = ModelId::parse(default_model.trim())
            .map_err(|e| invalid("DEFAULT_MODEL", e.to_string()))?;
        let base_url = get("GEMINI_BASE_URL")
            .unwrap_or_else(|| "https://generativelanguage.googleapis.com".into());
        let gemini_base_url =
            BaseUrl::parse(base_url.trim()).map_err(|e| invalid("GEMINI_BASE_URL", e))?;

        Ok(Settings {
            host: get("HOST").map_or_else(|| "0.0.0.0".into(), |h| h.trim().to_owned()),
            port: number(&get, "PORT", 5001)?,
            gemini_api_keys: secret_list(&get, "GEMINI_API_KEY")?,
            api_keys: secret_list(&get, "API_KEYS")?,
            keys_file,
            default_model,
            gemini_base_url,
            max_prompt_chars: non_zero(&get, "MAX_PROMPT_CHARS", 10_000)?,
            max_body_bytes: non_zero(&get, "MAX_BODY_BYTES", 262_144)?,
            upstream_timeout: seconds(&get, "UPSTREAM_TIMEOUT_SECS", 120)?,
            upstream_connect_timeout: seconds(&get, "UPSTREAM_CONNECT_TIMEOUT_SECS", 5)?,
            cors_allowed_origins: cors(get("CORS_ALLOWED_ORIGINS"))?,
            log_level: log_level(lookup("RUST_LOG"), get("LOG_LEVEL"))?,
            log_format: match get("LOG_FORMAT").as_deref().map(str::trim) {
                None | Some("text") => LogFormat::Text,
                Some("json") => LogFormat::Json,
                Some(other) => {
                    return Err(invalid(
                        "LOG_FORMAT",
                        format!("`{other}` is not `text` or `json`"),
                    ))
                }
            },
            max_in_flight: non_zero(&get, "MAX_IN_FLIGHT", 16_384)?,
            upstream_actors: match get("UPSTREAM_ACTORS") {
                None => None,
                Some(_) => Some(non_zero(&get, "UPSTREAM_ACTORS", cpus)?),
            },
            workers: non_zero(&get, "WORKERS", cpus)?,
            client_stall_timeout: seconds(&get, "CLIENT_STALL_TIMEOUT_SECS", 30)?,
            key_recheck_interval: seconds(&get, "KEY_RECHECK_SECS", 600)?,
            rate_limit_backend: rate_limit_backend(&get)?,
        })
    }

    /// The settings in effect, for the start-up log: secrets shown only as a count.
    pub fn summary(&self) -> String {
        format!(
            "host={} port={} gemini_api_keys={} api_keys={} keys_file={}{} default_model={} \
             gemini_base_url={} max_prompt_chars={} max_body_bytes={} upstream_timeout={}s \
             upstream_connect_timeout={}s cors_allowed_origins={} log_format={:?} \
             max_in_flight={} upstream_actors={} workers={} rate_limit_backend={}",
            self.host,
            self.port,
            masked_count(&self.gemini_api_keys),
            masked_count(&self.api_keys),
            self.keys_file.path.display(),
            if self.keys_file.required {
                ""
            } else {
                " (default)"
            },
            self.default_model,
            self.gemini_base_url.as_str(),
            self.max_prompt_chars,
            self.max_body_bytes,
            self.upstream_timeout.as_secs(),
            self.upstream_connect_timeout.as_secs(),
            match &self.cors_allowed_origins {
                CorsOrigins::None => "none".to_owned(),
                CorsOrigins::Any => "*".to_owned(),
                CorsOrigins::List(list) => list.join(","),
            },
            self.log_format,
            self.max_in_flight,
            self.upstream_actors
                .map_or_else(|| "one per worker".to_owned(), |n| n.to_string()),
            self.workers,
            match &self.rate_limit_backend {
                RateLimitBackend::Memory => "memory".to_owned(),
                RateLimitBackend::Redis(redis) => format!(
                    "redis redis_url={} redis_timeout={}ms",
                    redis.display(),
                    redis.timeout.as_millis()
                ),
            },
        )
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}

fn masked_count(keys: &[SecretString]) -> String {
    match keys.len() {
        0 => "none".into(),
        1 => "1 key (masked)".into(),
        n => format!("{n} keys (masked)"),
    }
}

fn number<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: T,
) -> Result<T, SettingsError> {
    match get(variable) {
        None => Ok(default),
        Some(raw) => raw.trim().parse().map_err(|_| {
            invalid(
                variable,
                format!("`{}` is not a valid whole number in range", raw.trim()),
            )
        }),
    }
}

fn non_zero(
    get: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: usize,
) -> Result<NonZeroUsize, SettingsError> {
    let value: usize = number(get, variable, default)?;
    NonZeroUsize::new(value).ok_or_else(|| invalid(variable, "must be greater than 0"))
}

fn seconds(
    get: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: u64,
) -> Result<Duration, SettingsError> {
    let value: u64 = number(get, variable, default)?;
    if value == 0 {
        return Err(invalid(variable, "must be greater than 0"));
    }
    // A day is far past any real request and keeps Instant arithmetic safe.
    if value > 86_400 {
        return Err(invalid(variable, "must be at most 86400 seconds"));
    }
    Ok(Duration::from_secs(value))
}

fn secret_list(
    get: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
) -> Result<Vec<SecretString>, SettingsError> {
    let Some(raw) = get(variable) else {
        return Ok(Vec::new());
    };
    let mut keys: Vec<SecretString> = Vec::new();
    for (index, part) in raw.split(',').map(str::trim).enumerate() {
        if part.is_empty() {
            return Err(invalid(
                variable,
                format!("entry {} is empty (check for a stray comma)", index + 1),
            ));
        }
        if part.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(invalid(
                variable,
                format!(
                    "entry {} contains whitespace or control characters",
                    index + 1
                ),
            ));
        }
        if keys.iter().any(|k| k.expose_secret() == part) {
            return Err(invalid(
                variable,
                format!("entry {} repeats an earlier key", index + 1),
            ));
        }
        keys.push(SecretString::from(part.to_owned()));
    }
    Ok(keys)
}

/// Longest `REDIS_TIMEOUT_MS`: a rate-limit check that may wait longer than
/// this would make Redis, not Gemini, the latency of the service.
const MAX_REDIS_TIMEOUT_MS: u64 = 1_000;

/// `RATE_LIMIT_BACKEND`, `REDIS_URL` and `REDIS_TIMEOUT_MS`. All three are read
/// whatever the backend, so every variable the service knows is checked.
fn rate_limit_backend(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<RateLimitBackend, SettingsError> {
    let url = get("REDIS_URL");
    let timeout_ms: u64 = number(get, "REDIS_TIMEOUT_MS", 5)?;
    if timeout_ms == 0 || timeout_ms > MAX_REDIS_TIMEOUT_MS {
        return Err(invalid(
            "REDIS_TIMEOUT_MS",
            format!("must be 1–{MAX_REDIS_TIMEOUT_MS} milliseconds"),
        ));
    }
    match get("RATE_LIMIT_BACKEND").as_deref().map(str::trim) {
        None | Some("memory") => Ok(RateLimitBackend::Memory),
        Some("redis") => {
            let url = url.ok_or_else(|| {
                invalid(
                    "REDIS_URL",
                    "is required when RATE_LIMIT_BACKEND is `redis` (redis://[:password@]host[:port][/db])",
                )
            })?;
            Ok(RateLimitBackend::Redis(RedisSettings {
                connection: redis_connection(url.trim())?,
                timeout: Duration::from_millis(timeout_ms),
            }))
        }
        Some(other) => Err(invalid(
            "RATE_LIMIT_BACKEND",
            format!("`{other}` is not `memory` or `redis`"),
        )),
    }
}

/// Parses `REDIS_URL`. The messages are this module's own: the URL may hold a
/// password, so neither it nor the redis crate's text about it is repeated.
fn redis_connection(url: &str) -> Result<redis::ConnectionInfo, SettingsError> {
    use redis::IntoConnectionInfo;
    let problem = |why: &str| invalid("REDIS_URL", why.to_owned());
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    match scheme {
        Some("redis" | "valkey" | "unix" | "redis+unix" | "valkey+unix") => {}
        Some("rediss" | "valkeys") => {
            return Err(problem(
                "TLS (rediss://) is not built into this service; reach Redis over a private network or a TLS sidecar with redis://",
            ))
        }
        _ => {
            return Err(problem(
                "must be a redis URL like redis://[:password@]host[:port][/db]",
            ))
        }
    }
    let info = url.into_connection_info().map_err(|e| {
        // Only the kind is used: the crate's messages do not quote the URL
        // today, but nothing promises that they never will.
        let why = match e.kind() {
            redis::ErrorKind::InvalidClientConfig => {
                "is not a valid redis URL (redis://[:password@]host[:port][/db], db a number)"
            }
            _ => "could not be read as a redis URL",
        };
        problem(why)
    })?;
    Ok(info)
}

fn cors(raw: Option<String>) -> Result<CorsOrigins, SettingsError> {
    let Some(raw) = raw else {
        return Ok(CorsOrigins::None);
    };
    let origins: Vec<String> = raw
        .split(',')
        .map(|o| o.trim().trim_end_matches('/').to_owned())
        .filter(|o| !o.is_empty())
        .collect();
    if origins.iter().any(|o| o == "*") {
        return if origins.len() == 1 {
            Ok(CorsOrigins::Any)
        } else {
            Err(invalid(
                "CORS_ALLOWED_ORIGINS",
                "`*` cannot be combined with named origins",
            ))
        };
    }
    for origin in &origins {
        let valid = origin
            .parse::<Uri>()
            .ok()
            .filter(|u| matches!(u.scheme_str(), Some("http" | "https")))
            .filter(|u| u.authority().is_some() && u.path() == "/" && u.query().is_none());
        if valid.is_none() {
            return Err(invalid(
                "CORS_ALLOWED_ORIGINS",
                format!("`{origin}` is not an origin like https://app.example.com"),
            ));
        }
    }
    Ok(if origins.is_empty() {
        CorsOrigins::None
    } else {
        CorsOrigins::List(origins)
    })
}

fn log_level(rust_log: Option<String>, level: Option<String>) -> Result<LogLevel, SettingsError> {
    if let Some(filter) = rust_log.filter(|f| !f.trim().is_empty()) {
        return Ok(LogLevel::Filter(filter));
    }
    let raw = level.unwrap_or_else(|| "info".into());
    match raw.trim().to_ascii_lowercase().as_str() {
        "error" => Ok(LogLevel::Level(log::LevelFilter::Error)),
        "warn" | "warning" => Ok(LogLevel::Level(log::LevelFilter::Warn)),
        "info" => Ok(LogLevel::Level(log::LevelFilter::Info)),
        "debug" => Ok(LogLevel::Level(log::LevelFilter::Debug)),
        "trace" => Ok(LogLevel::Level(log::LevelFilter::Trace)),
        other => Err(invalid(
            "LOG_LEVEL",
            format!("`{other}` is not one of error, warn, info, debug, trace"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let map = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_map(&map)
    }

    #[test]
    fn defaults_match_the_spec() {
        let s = parse(&[]).unwrap();
        assert_eq!(s.host, "0.0.0.0");
        assert_eq!(s.port, 5001);
        assert_eq!(s.default_model.name(), "gemini-2.5-flash");
        assert_eq!(
            s.gemini_base_url.as_str(),
            "https://generativelanguage.googleapis.com"
        );
        assert_eq!(s.max_prompt_chars.get(), 10_000);
        assert_eq!(s.max_body_bytes.get(), 262_144);
        assert_eq!(s.upstream_timeout, Duration::from_secs(120));
        assert_eq!(s.upstream_connect_timeout, Duration::from_secs(5));
        assert_eq!(s.cors_allowed_origins, CorsOrigins::None);
        assert_eq!(s.log_format, LogFormat::Text);
        assert!(!s.keys_file.required);
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        for (pairs, variable) in [
            (vec![("PORT", "eighty")], "PORT"),
            (vec![("PORT", "70000")], "PORT"),
            (vec![("MAX_PROMPT_CHARS", "0")], "MAX_PROMPT_CHARS"),
            (
                vec![("UPSTREAM_TIMEOUT_SECS", "-1")],
                "UPSTREAM_TIMEOUT_SECS",
            ),
            (vec![("LOG_LEVEL", "loud")], "LOG_LEVEL"),
            (vec![("LOG_FORMAT", "xml")], "LOG_FORMAT"),
            (vec![("GEMINI_BASE_URL", "ftp://x")], "GEMINI_BASE_URL"),
            (vec![("GEMINI_BASE_URL", "not a url")], "GEMINI_BASE_URL"),
            (vec![("DEFAULT_MODEL", "../x")], "DEFAULT_MODEL"),
            (
                vec![("CORS_ALLOWED_ORIGINS", "*,https://a.b")],
                "CORS_ALLOWED_ORIGINS",
            ),
            (
                vec![("CORS_ALLOWED_ORIGINS", "example.com")],
                "CORS_ALLOWED_ORIGINS",
            ),
            (vec![("API_KEYS", "a,,b")], "API_KEYS"),
        ] {
            let err = parse(&pairs).expect_err("should be refused");
            assert_eq!(err.variable, variable, "{pairs:?}: {err}");
        }
    }

    #[test]
    fn errors_and_summaries_never_show_a_secret() {
        let err = parse(&[("GEMINI_API_KEY", "AIzaSECRETSECRET,AIzaSECRETSECRET")])
            .err()
            .unwrap();
        assert!(!err.to_string().contains("SECRET"), "{err}");
        let s = parse(&[
            ("GEMINI_API_KEY", "AIzaSECRET1,AIzaSECRET2"),
            ("API_KEYS", "client-SECRET"),
        ])
        .unwrap();
        assert_eq!(s.gemini_api_keys.len(), 2);
        assert!(!s.summary().contains("SECRET"), "{}", s.summary());
        assert!(!format!("{s:?}").contains("SECRET"));
    }

    #[test]
    fn the_rate_limit_backend_is_memory_unless_redis_is_asked_for() {
        let s = parse(&[]).unwrap();
        assert!(matches!(s.rate_limit_backend, RateLimitBackend::Memory));
        // REDIS_URL alone does not switch backends.
        let s = parse(&[("REDIS_URL", "redis://127.0.0.1:6379")]).unwrap();
        assert!(matches!(s.rate_limit_backend, RateLimitBackend::Memory));
        let s = parse(&[
            ("RATE_LIMIT_BACKEND", "redis"),
            ("REDIS_URL", "redis://cache.internal:6380/2"),
        ])
        .unwrap();
        let RateLimitBackend::Redis(redis) = &s.rate_limit_backend else {
            panic!("expected redis: {s:?}");
        };
        assert_eq!(redis.timeout, Duration::from_millis(5), "the default");
        assert_eq!(redis.display(), "redis://cache.internal:6380/2");
    }

    #[test]
    fn redis_settings_are_refused_with_the_variable_named() {
        for (pairs, variable) in [
            (
                vec![("RATE_LIMIT_BACKEND", "memcached")],
                "RATE_LIMIT_BACKEND",
            ),
            (vec![("RATE_LIMIT_BACKEND", "redis")], "REDIS_URL"),
            (
                vec![("RATE_LIMIT_BACKEND", "redis"), ("REDIS_URL", "http://x")],
                "REDIS_URL",
            ),
            (
                vec![
                    ("RATE_LIMIT_BACKEND", "redis"),
                    ("REDIS_URL", "redis://h/not-a-db"),
                ],
                "REDIS_URL",
            ),
            (
                vec![
                    ("RATE_LIMIT_BACKEND", "redis"),
                    ("REDIS_URL", "rediss://h:6380"),
                ],
                "REDIS_URL",
            ),
            (vec![("REDIS_TIMEOUT_MS", "0")], "REDIS_TIMEOUT_MS"),
            (vec![("REDIS_TIMEOUT_MS", "5000")], "REDIS_TIMEOUT_MS"),
            (vec![("REDIS_TIMEOUT_MS", "fast")], "REDIS_TIMEOUT_MS"),
        ] {
            let err = parse(&pairs).expect_err("should be refused");
            assert_eq!(err.variable, variable, "{pairs:?}: {err}");
        }
    }

    #[test]
    fn a_redis_password_is_never_shown() {
        let secret = "PASSWORD-SECRET";
        for url in [
            format!("redis://:{secret}@cache.internal:6379/0"),
            format!("redis://user:{secret}@cache.internal"),
            format!("unix:///run/redis.sock?pass={secret}"),
        ] {
            let s = parse(&[
                ("RATE_LIMIT_BACKEND", "redis"),
                ("REDIS_URL", &url),
                ("REDIS_TIMEOUT_MS", "20"),
            ])
            .unwrap();
            let summary = s.summary();
            assert!(!summary.contains(secret), "{summary}");
            assert!(summary.contains("(password masked)"), "{summary}");
            assert!(summary.contains("redis_timeout=20ms"), "{summary}");
            assert!(!format!("{s:?}").contains(secret));
        }
        for url in [
            format!("redis://:{secret}@h/x"),
            format!("rediss://:{secret}@h"),
            secret.to_owned(),
            format!("redis://:{secret}@0.0.0.0"),
        ] {
            let err = parse(&[("RATE_LIMIT_BACKEND", "redis"), ("REDIS_URL", &url)])
                .expect_err("should be refused");
            assert!(!err.to_string().contains(secret), "{err}");
        }
    }

    #[test]
    fn rust_log_wins_over_log_level() {
        let s = parse(&[("RUST_LOG", "gemini_proxy=trace"), ("LOG_LEVEL", "loud")]).unwrap();
        assert_eq!(s.log_level, LogLevel::Filter("gemini_proxy=trace".into()));
    }

    #[test]
    fn cors_accepts_a_list_or_a_star() {
        let s = parse(&[(
            "CORS_ALLOWED_ORIGINS",
            "https://a.example, http://localhost:3000/",
        )])
        .unwrap();
        assert_eq!(
            s.cors_allowed_origins,
            CorsOrigins::List(vec![
                "https://a.example".into(),
                "http://localhost:3000".into()
            ])
        );
        let s = parse(&[("CORS_ALLOWED_ORIGINS", "*")]).unwrap();
        assert_eq!(s.cors_allowed_origins, CorsOrigins::Any);
    }
}
