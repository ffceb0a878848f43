//! Settings, read once from the environment into typed values (docs/configuration.md).
//!
//! Parsing is a pure function of a variable lookup, so tests pass a map instead of
//! mutating the process environment. A bad value is refused with a message that
//! names the variable and never repeats a secret.

mod parse;
mod proxy;

use crate::model_id::ModelId;
use crate::tls::roots::ExtraRoots;
use crate::tls::TlsFiles;
use crate::upstream::egress::Egress;
use awc::http::Uri;
use parse::{
    cors, log_level, non_zero, number, rate_limit_backend, seconds, secret_list, socket_address,
};
use secrecy::SecretString;
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
    "MAX_NATIVE_BODY_BYTES",
    "MAX_UPLOAD_BYTES",
    "PUBLIC_BASE_URL",
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
    "METRICS_ADDR",
    "DRAIN_TIMEOUT_SECS",
    "QUOTA_TIMEZONE",
    "LIVE_IDLE_TIMEOUT_SECS",
    "QUOTA_STATE_FILE",
    "TLS_CERT_FILE",
    "TLS_KEY_FILE",
    "UPSTREAM_CA_FILE",
    "UPSTREAM_PROXY",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
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
    /// Request bodies of the native, OpenAI and resource routes: images and
    /// PDFs travel inline there, and Gemini takes up to 20 MB.
    pub max_native_body_bytes: NonZeroUsize,
    /// The largest file upload passed through (streamed, never held).
    pub max_upload_bytes: u64,
    /// The origin clients reach the service at, for the upload URLs it hands
    /// out; `None` = the request's own origin.
    pub public_base_url: Option<BaseUrl>,
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
    /// When set, `/metrics` is served on this listener only, not on the public port.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// How long `SIGTERM` waits for in-flight requests and streams.
    pub drain_timeout: Duration,
    /// A Live API session where neither side sent anything for this long is closed.
    pub live_idle_timeout: Duration,
    /// Where a day of the daily quotas starts.
    pub quota_timezone: QuotaTimeZone,
    /// Where the memory backend keeps daily usage across restarts; `None` = nowhere.
    pub quota_state_file: Option<PathBuf>,
    /// With both `TLS_CERT_FILE` and `TLS_KEY_FILE`: the public listener
    /// speaks TLS. The files were read and checked when the settings were.
    pub tls: Option<TlsFiles>,
    /// `UPSTREAM_CA_FILE`: roots every upstream call trusts besides the
    /// built-in ones; read and checked when the settings were.
    pub upstream_ca: Option<ExtraRoots>,
    /// The proxies upstream calls leave through (`UPSTREAM_PROXY`, else the
    /// conventional variables); none = straight to Gemini.
    pub upstream_proxy: Egress,
}

/// `QUOTA_TIMEZONE`: the zone and the name it was given by.
#[derive(Clone, Debug)]
pub struct QuotaTimeZone {
    pub name: String,
    pub zone: jiff::tz::TimeZone,
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

    /// Refuses a URL with a path: the service's routes sit at the root.
    fn origin_only(self) -> Result<BaseUrl, String> {
        let uri: Uri = self
            .0
            .parse()
            .map_err(|_| "is not a valid URL".to_owned())?;
        match uri.path() {
            "" | "/" => Ok(self),
            _ => {
                Err("must be an origin only (`https://gemini.example.com`), without a path".into())
            }
        }
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
        let keys_file_path = keys_file.path.clone();
        let default_model = get("DEFAULT_MODEL").unwrap_or_else(|| "gemini-2.5-flash".into());
        let default_model = ModelId::parse(default_model.trim())
            .map_err(|e| invalid("DEFAULT_MODEL", e.to_string()))?;
        let base_url = get("GEMINI_BASE_URL")
            .unwrap_or_else(|| "https://generativelanguage.googleapis.com".into());
        let gemini_base_url =
            BaseUrl::parse(base_url.trim()).map_err(|e| invalid("GEMINI_BASE_URL", e))?;
        let upstream_host = gemini_base_url
            .as_str()
            .parse::<Uri>()
            .ok()
            .and_then(|uri| uri.host().map(str::to_owned))
            .unwrap_or_default();

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
            max_native_body_bytes: non_zero(&get, "MAX_NATIVE_BODY_BYTES", 20 * 1024 * 1024)?,
            max_upload_bytes: non_zero(&get, "MAX_UPLOAD_BYTES", 2 * 1024 * 1024 * 1024)?.get()
                as u64,
            public_base_url: match get("PUBLIC_BASE_URL") {
                None => None,
                Some(raw) => Some(
                    BaseUrl::parse(raw.trim())
                        .and_then(BaseUrl::origin_only)
                        .map_err(|e| invalid("PUBLIC_BASE_URL", e))?,
                ),
            },
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
            metrics_addr: socket_address(&get, "METRICS_ADDR")?,
            drain_timeout: seconds(&get, "DRAIN_TIMEOUT_SECS", 30)?,
            rate_limit_backend: rate_limit_backend(&get)?,
            quota_timezone: parse::time_zone(get("QUOTA_TIMEZONE"))?,
            live_idle_timeout: seconds(&get, "LIVE_IDLE_TIMEOUT_SECS", 600)?,
            quota_state_file: match get("QUOTA_STATE_FILE").as_deref().map(str::trim) {
                Some("none") => None,
                Some(path) => Some(PathBuf::from(path)),
                None => Some(crate::quota::state_file::beside(&keys_file_path)),
            },
            tls: parse::tls(&get)?,
            upstream_ca: parse::upstream_ca(&get)?,
            upstream_proxy: proxy::egress(&get, &upstream_host)?,
        })
    }

    /// The settings in effect, for the start-up log: secrets shown only as a count.
    pub fn summary(&self) -> String {
        format!(
            "host={} port={} gemini_api_keys={} api_keys={} keys_file={}{} default_model={} \
             gemini_base_url={} max_prompt_chars={} max_body_bytes={} max_native_body_bytes={} \
             max_upload_bytes={} public_base_url={} upstream_timeout={}s \
             upstream_connect_timeout={}s cors_allowed_origins={} log_format={:?} \
             max_in_flight={} upstream_actors={} workers={} rate_limit_backend={} \
             metrics_addr={} drain_timeout={}s quota_timezone={} quota_state_file={} \
             live_idle_timeout={}s tls={} upstream_ca_file={} upstream_proxy={}",
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
            self.max_native_body_bytes,
            self.max_upload_bytes,
            self.public_base_url
                .as_ref()
                .map_or("the request's origin", BaseUrl::as_str),
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
            self.metrics_addr
                .map_or_else(|| "the public port".to_owned(), |a| a.to_string()),
            self.drain_timeout.as_secs(),
            self.quota_timezone.name,
            self.quota_state_file
                .as_ref()
                .map_or_else(|| "none".to_owned(), |p| p.display().to_string()),
            self.live_idle_timeout.as_secs(),
            self.tls.as_ref().map_or_else(
                || "off".to_owned(),
                |files| format!("cert {} key {}", files.cert.display(), files.key.display())
            ),
            self.upstream_ca.as_ref().map_or_else(
                || "none".to_owned(),
                |ca| format!("{} ({} roots)", ca.file.display(), ca.roots.len())
            ),
            self.upstream_proxy.describe(),
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

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
