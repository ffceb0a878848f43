//! The keys file (`KEYS_FILE`, docs/keys-file.md): clients, their keys (or key hashes),
//! limits and permissions, merged with the `API_KEYS` clients.
//!
//! Every refusal names the file, the line or the entry's name (never its key),
//! and what to fix, because an operator reads it while editing the file.

use super::file_quota::{quota_groups, quota_limits, QuotaGroupToml, RawQuotaLimits};
use super::policy::{ClientPolicy, KeyHash, Limits};
use crate::model_id::ModelId;
use crate::quota::{QuotaLimits, Quotas};
use crate::settings::KeysFile;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::num::NonZeroU32;

/// Client names appear in logs and metric labels, so they are kept plain.
const MAX_NAME_LEN: usize = 64;
/// Longest time, in years, an empty bucket may take to refill. Governor keeps
/// time in u64 nanoseconds (584 years) and adds the bucket's span to the uptime,
/// so a longer span overflows: a panic that stops the key registry, or a
/// silently wrong limit. No real limit comes near it.
const MAX_REFILL_YEARS: u128 = 100;
const NANOS_PER_YEAR: u128 = 365 * 24 * 3600 * 1_000_000_000;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileToml {
    #[serde(default)]
    defaults: Option<DefaultsToml>,
    #[serde(default, rename = "client")]
    clients: Vec<ClientToml>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DefaultsToml {
    requests_per_minute: Option<i64>,
    burst: Option<i64>,
    models: Option<Vec<String>>,
    allow_own_key: Option<bool>,
    tokens_per_minute: Option<i64>,
    requests_per_day: Option<i64>,
    tokens_per_day: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientToml {
    name: String,
    key: Option<String>,
    key_sha256: Option<String>,
    requests_per_minute: Option<i64>,
    burst: Option<i64>,
    models: Option<Vec<String>>,
    allow_own_key: Option<bool>,
    tokens_per_minute: Option<i64>,
    requests_per_day: Option<i64>,
    tokens_per_day: Option<i64>,
    /// `[[client.quota]]` tables.
    #[serde(default)]
    quota: Vec<QuotaGroupToml>,
}

/// A keys file that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {problem}")]
pub struct KeysFileError {
    pub file: String,
    pub problem: String,
}

/// What every client gets unless its entry says otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Defaults {
    limits: Limits,
    models: Option<BTreeSet<String>>,
    allow_own_key: bool,
    /// Only the client-wide limits: groups are a client's own.
    quotas: QuotaLimits,
}

/// The clients of a keys file (none when the default file is absent) plus the
/// `API_KEYS` clients, validated together.
pub fn load_clients(
    keys_file: &KeysFile,
    api_keys: &[SecretString],
) -> Result<Vec<ClientPolicy>, KeysFileError> {
    let file = keys_file.path.display().to_string();
    let text = match std::fs::read_to_string(&keys_file.path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !keys_file.required => None,
        Err(e) => {
            return Err(KeysFileError {
                file,
                problem: format!("cannot read the file: {e}"),
            })
        }
    };
    parse_clients(&file, text.as_deref().unwrap_or(""), api_keys)
}

/// Parses and validates keys-file text; `file` names it in errors.
pub fn parse_clients(
    file: &str,
    text: &str,
    api_keys: &[SecretString],
) -> Result<Vec<ClientPolicy>, KeysFileError> {
    let fail = |problem: String| KeysFileError {
        file: file.to_owned(),
        problem,
    };
    let parsed: FileToml = toml::from_str(text).map_err(|e| fail(describe_toml_error(text, &e)))?;
    let defaults = defaults(parsed.defaults.unwrap_or_default())
        .map_err(|p| fail(format!("[defaults]: {p}")))?;

    let mut clients: Vec<ClientPolicy> = Vec::new();
    for (index, entry) in parsed.clients.into_iter().enumerate() {
        let label = entry_label(index, &entry.name);
        let client = client(entry, &defaults).map_err(|p| fail(format!("{label}: {p}")))?;
        if clients.iter().any(|c| c.name == client.name) {
            return Err(fail(format!(
                "{label}: the name is used by an earlier client; names must be unique"
            )));
        }
        if let Some(other) = clients.iter().find(|c| c.key_hash.ct_eq(&client.key_hash)) {
            return Err(fail(format!(
                "{label}: has the same key as client `{}`; every client needs its own key",
                other.name
            )));
        }
        clients.push(client);
    }
    for (index, key) in api_keys.iter().enumerate() {
        let name = format!("env-{}", index + 1);
        let key_hash = KeyHash::of(key.expose_secret());
        if let Some(other) = clients.iter().find(|c| c.key_hash.ct_eq(&key_hash)) {
            return Err(fail(format!(
                "API_KEYS entry {} has the same key as client `{}`; remove one of them",
                index + 1,
                other.name
            )));
        }
        if clients.iter().any(|c| *c.name == *name) {
            return Err(fail(format!(
                "a client is named `{name}`, which is reserved for API_KEYS entry {}; rename it",
                index + 1
            )));
        }
        clients.push(ClientPolicy {
            name: name.into(),
            key_hash,
            limits: defaults.limits,
            models: defaults.models.clone(),
            allow_own_key: defaults.allow_own_key,
            quotas: Quotas {
                total: defaults.quotas,
                groups: Vec::new(),
            },
        });
    }
    Ok(clients)
}

fn entry_label(index: usize, name: &str) -> String {
    if name.is_empty() {
        format!("[[client]] #{}", index + 1)
    } else {
        format!("[[client]] #{} (`{name}`)", index + 1)
    }
}

/// toml's own Display quotes the offending line, which may hold a key; this
/// gives the line number and toml's message only, without any value it quotes.
fn describe_toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = without_value(error.message().trim_end());
    match error.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message,
    }
}

/// serde's type and value errors quote the value they refused ("invalid type:
/// integer `1234`, expected a string"), and that value may be a key written
/// without quotes or on the wrong line; this keeps the kind of value only.
fn without_value(message: &str) -> String {
    ["invalid type: ", "invalid value: "]
        .iter()
        .find_map(|prefix| {
            let rest = message.strip_prefix(prefix)?;
            let (found, expected) = match rest.split_once(", expected ") {
                Some((found, expected)) => (found, Some(expected)),
                None => (rest, None),
            };
            let kind = found
                .split(['`', '"'])
                .next()
                .unwrap_or_default()
                .trim_end();
            Some(match expected {
                Some(expected) => format!("{prefix}{kind}, expected {expected}"),
                None => format!("{prefix}{kind}"),
            })
        })
        .unwrap_or_else(|| message.to_owned())
}

fn defaults(raw: DefaultsToml) -> Result<Defaults, String> {
    let fallback = Limits::default();
    Ok(Defaults {
        limits: refill_fits(Limits {
            requests_per_minute: limit(
                "requests_per_minute",
                raw.requests_per_minute,
                fallback.requests_per_minute,
            )?,
            burst: limit("burst", raw.burst, fallback.burst)?,
        })?,
        models: raw.models.map(models).transpose()?,
        allow_own_key: raw.allow_own_key.unwrap_or(true),
        quotas: quota_limits(
            RawQuotaLimits {
                tokens_per_minute: raw.tokens_per_minute,
                requests_per_day: raw.requests_per_day,
                tokens_per_day: raw.tokens_per_day,
            },
            QuotaLimits::default(),
        )?,
    })
}

fn client(raw: ClientToml, defaults: &Defaults) -> Result<ClientPolicy, String> {
    check_name(&raw.name)?;
    let key_hash = match (raw.key, raw.key_sha256) {
        (Some(_), Some(_)) => {
            return Err("give `key` or `key_sha256`, not both".into());
        }
        (None, None) => {
            return Err("needs `key_sha256` (the SHA-256 of the key, from `gemini-proxy hash-key`) or `key`".into());
        }
        (Some(key), None) => {
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
                return Err("`key` must be non-empty visible ASCII without spaces".into());
            }
            KeyHash::of(&key)
        }
        (None, Some(hex)) => parse_sha256(&hex)?,
    };
    let limits = refill_fits(Limits {
        requests_per_minute: limit(
            "requests_per_minute",
            raw.requests_per_minute,
            defaults.limits.requests_per_minute,
        )?,
        burst: limit("burst", raw.burst, defaults.limits.burst)?,
    })?;
    let models = match raw.models {
        Some(list) => Some(models(list)?),
        None => defaults.models.clone(),
    };
    let total = quota_limits(
        RawQuotaLimits {
            tokens_per_minute: raw.tokens_per_minute,
            requests_per_day: raw.requests_per_day,
            tokens_per_day: raw.tokens_per_day,
        },
        defaults.quotas,
    )?;
    let groups = quota_groups(raw.quota, models.as_ref())?;
    Ok(ClientPolicy {
        name: raw.name.into(),
        key_hash,
        limits,
        models,
        allow_own_key: raw.allow_own_key.unwrap_or(defaults.allow_own_key),
        quotas: Quotas { total, groups },
    })
}

fn check_name(name: &str) -> Result<(), String> {
    let plain = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if name.is_empty() || name.len() > MAX_NAME_LEN || !plain {
        return Err(format!(
            "`name` must be 1–{MAX_NAME_LEN} characters of letters, digits, '-', '_' or '.' (it is a metric label)"
        ));
    }
    if name == "anonymous" {
        return Err(
            "`anonymous` is reserved for requests without a valid key; choose another name".into(),
        );
    }
    Ok(())
}

fn parse_sha256(hex_text: &str) -> Result<KeyHash, String> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_text.trim(), &mut bytes).map_err(|_| {
        "`key_sha256` must be 64 hexadecimal characters (the output of `gemini-proxy hash-key`)"
            .to_owned()
    })?;
    Ok(KeyHash(bytes))
}

fn limit(field: &str, value: Option<i64>, default: NonZeroU32) -> Result<NonZeroU32, String> {
    match value {
        None => Ok(default),
        Some(v) => u32::try_from(v)
            .ok()
            .and_then(NonZeroU32::new)
            .ok_or_else(|| {
                format!(
                    "`{field}` must be a whole number from 1 to {}, not {v}",
                    u32::MAX
                )
            }),
    }
}

/// Refuses limits whose empty bucket takes longer than [`MAX_REFILL_YEARS`] to
/// refill, which the limiter's clock cannot represent.
fn refill_fits(limits: Limits) -> Result<Limits, String> {
    let burst = limits.burst.get();
    let per_minute = limits.requests_per_minute.get();
    let refill_nanos = 60 * 1_000_000_000 * u128::from(burst) / u128::from(per_minute);
    if refill_nanos > MAX_REFILL_YEARS * NANOS_PER_YEAR {
        return Err(format!(
            "a `burst` of {burst} at {per_minute} `requests_per_minute` takes over \
             {MAX_REFILL_YEARS} years to refill; lower the burst or raise the rate"
        ));
    }
    Ok(limits)
}

fn models(list: Vec<String>) -> Result<BTreeSet<String>, String> {
    if list.is_empty() {
        return Err(
            "`models = []` would allow no model; remove the line to allow any model".into(),
        );
    }
    list.iter().map(|raw| model_id(raw)).collect()
}

/// A `models` entry as the allow-list and the quota groups compare it:
/// validated, without `models/`.
pub(super) fn model_id(raw: &str) -> Result<String, String> {
    ModelId::parse(raw)
        .map(|id| id.display_id())
        .map_err(|e| format!("`models` entry `{raw}`: {e}"))
}

#[cfg(test)]
#[path = "file_tests.rs"]
mod tests;
