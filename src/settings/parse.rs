//! Turning one variable's text into its typed value, with the message that
//! names the variable when it cannot be.

use super::{invalid, CorsOrigins, LogLevel, RateLimitBackend, RedisSettings, SettingsError};
use awc::http::Uri;
use secrecy::{ExposeSecret, SecretString};
use std::num::NonZeroUsize;
use std::time::Duration;

pub(super) fn number<T: std::str::FromStr>(
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

pub(super) fn non_zero(
    get: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: usize,
) -> Result<NonZeroUsize, SettingsError> {
    let value: usize = number(get, variable, default)?;
    NonZeroUsize::new(value).ok_or_else(|| invalid(variable, "must be greater than 0"))
}

pub(super) fn seconds(
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

pub(super) fn secret_list(
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
pub(super) fn rate_limit_backend(
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
pub(super) fn redis_connection(url: &str) -> Result<redis::ConnectionInfo, SettingsError> {
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

pub(super) fn cors(raw: Option<String>) -> Result<CorsOrigins, SettingsError> {
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

pub(super) fn log_level(
    rust_log: Option<String>,
    level: Option<String>,
) -> Result<LogLevel, SettingsError> {
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

/// An optional `IP:port` to listen on; unset or empty means none.
pub(super) fn socket_address(
    get: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
) -> Result<Option<std::net::SocketAddr>, SettingsError> {
    match get(variable).as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(raw) => raw.parse().map(Some).map_err(|_| {
            invalid(
                variable,
                "must be an IP address and port, such as 127.0.0.1:9464",
            )
        }),
    }
}

/// `QUOTA_TIMEZONE`: an IANA zone name; Gemini's own days start at midnight Pacific.
pub(super) fn time_zone(value: Option<String>) -> Result<super::QuotaTimeZone, SettingsError> {
    let name = value.map_or_else(|| "America/Los_Angeles".to_owned(), |v| v.trim().to_owned());
    let zone = jiff::tz::TimeZone::get(&name).map_err(|_| {
        invalid(
            "QUOTA_TIMEZONE",
            format!("`{name}` is not a time zone name (an IANA name such as `America/Los_Angeles`, `Europe/Berlin` or `UTC`)"),
        )
    })?;
    Ok(super::QuotaTimeZone { name, zone })
}

/// `TLS_CERT_FILE` and `TLS_KEY_FILE`: both or neither. Both files are read
/// and checked now, so a bad certificate stops start-up rather than the first
/// handshake; the message never quotes the key file.
pub(super) fn tls(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Option<crate::tls::TlsFiles>, SettingsError> {
    use crate::tls::{CERT_VARIABLE, KEY_VARIABLE};
    let path = |variable| get(variable).map(|p| std::path::PathBuf::from(p.trim()));
    let files = match (path(CERT_VARIABLE), path(KEY_VARIABLE)) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => crate::tls::TlsFiles { cert, key },
        (Some(_), None) => {
            return Err(invalid(
                KEY_VARIABLE,
                format!("is required when {CERT_VARIABLE} is set: set both {CERT_VARIABLE} and {KEY_VARIABLE} to serve TLS, or neither to serve plain HTTP"),
            ))
        }
        (None, Some(_)) => {
            return Err(invalid(
                CERT_VARIABLE,
                format!("is required when {KEY_VARIABLE} is set: set both {CERT_VARIABLE} and {KEY_VARIABLE} to serve TLS, or neither to serve plain HTTP"),
            ))
        }
    };
    crate::tls::load(&files).map_err(|e| invalid(e.variable, e.problem_in_file()))?;
    Ok(Some(files))
}

/// `UPSTREAM_CA_FILE`: read and checked now, so a bad file stops start-up
/// rather than every call to Gemini.
pub(super) fn upstream_ca(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Option<crate::tls::roots::ExtraRoots>, SettingsError> {
    use crate::tls::roots::{load, CA_VARIABLE};
    let Some(path) = get(CA_VARIABLE) else {
        return Ok(None);
    };
    load(std::path::Path::new(path.trim()))
        .map(Some)
        .map_err(|e| invalid(e.variable, e.problem_in_file()))
}
