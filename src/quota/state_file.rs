//! The memory backend's daily usage on disk, so a restart does not hand every
//! client a fresh day. Written when something changed (checked every
//! [`SAVE_INTERVAL`]) and at shutdown, to a temporary file renamed over the
//! old one, so a crash mid-write leaves the previous state whole. A missing,
//! unreadable or corrupt file is logged and the service starts from zero: a
//! lost count must never stop it.

use super::usage::UsageStore;
use super::window::DayCount;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const SAVE_INTERVAL: Duration = Duration::from_secs(10);
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    clients: BTreeMap<String, ClientDays>,
}

#[derive(Serialize, Deserialize)]
struct ClientDays {
    total: DayCount,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    groups: BTreeMap<String, DayCount>,
}

/// Where the state file of `keys_file` goes: beside it, named after it.
pub fn beside(keys_file: &Path) -> PathBuf {
    let stem = keys_file
        .file_stem()
        .map_or("keys".into(), |s| s.to_string_lossy().into_owned());
    keys_file.with_file_name(format!("{stem}.usage.json"))
}

/// Reads the file into `store`; logs and keeps zero on any problem.
pub fn load(path: &Path, store: &UsageStore) {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            log::info!(
                "no quota state file at {} yet; daily usage starts from zero",
                path.display()
            );
            return;
        }
        Err(e) => {
            log::warn!(
                "cannot read the quota state file {} ({e}); daily usage starts from zero",
                path.display()
            );
            return;
        }
    };
    let state: StateFile = match serde_json::from_str(&text) {
        Ok(state) => state,
        Err(e) => {
            log::warn!(
                "the quota state file {} is not valid (line {}: {}); daily usage starts from zero",
                path.display(),
                e.line(),
                e.classify_name()
            );
            return;
        }
    };
    if state.version != VERSION {
        log::warn!(
            "the quota state file {} has version {}, not {VERSION}; daily usage starts from zero",
            path.display(),
            state.version
        );
        return;
    }
    let count = state.clients.len();
    for (name, days) in state.clients {
        let usage = store.of(&name.into());
        usage.restore_days(days.total, days.groups.into_iter().collect());
    }
    log::info!(
        "daily usage of {count} clients restored from {}",
        path.display()
    );
}

/// Writes `store` if anything changed since the last write (or `always`).
pub fn save(path: &Path, store: &UsageStore, always: bool) {
    let clients = store.all();
    if !always && !clients.iter().any(|(_, usage)| usage.is_dirty()) {
        return;
    }
    let state = StateFile {
        version: VERSION,
        clients: clients
            .into_iter()
            .map(|(name, usage)| {
                let (total, groups) = usage.days();
                let days = ClientDays {
                    total,
                    groups: groups.into_iter().collect(),
                };
                (name.to_string(), days)
            })
            .collect(),
    };
    if let Err(e) = write_atomically(path, &state) {
        log::warn!(
            "cannot write the quota state file {} ({e}); will try again",
            path.display()
        );
    }
}

fn write_atomically(path: &Path, state: &StateFile) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    let temporary = path.with_extension("json.tmp");
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, path)
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "not JSON",
            serde_json::error::Category::Data => "unexpected content",
            serde_json::error::Category::Eof => "cut short",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::{Days, QuotaLimits};
    use std::num::NonZeroU64;
    use std::sync::Arc;

    #[test]
    fn the_file_sits_beside_the_keys_file() {
        assert_eq!(
            beside(Path::new("config/keys.toml")),
            PathBuf::from("config/keys.usage.json")
        );
    }

    #[test]
    fn daily_usage_survives_a_save_and_load_and_a_corrupt_file_starts_from_zero() {
        let dir = std::env::temp_dir().join(format!("gemini-proxy-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys.usage.json");
        let days = Days::new(jiff::tz::TimeZone::UTC);
        let now = jiff::Timestamp::now();
        let limits = QuotaLimits {
            requests_per_day: NonZeroU64::new(10),
            ..QuotaLimits::default()
        };
        let store = UsageStore::default();
        let name: Arc<str> = "billing".into();
        for _ in 0..3 {
            store.of(&name).admit(&limits, None, now, &days).unwrap();
        }
        save(&path, &store, false);

        let restored = UsageStore::default();
        load(&path, &restored);
        let (total, _) = restored.of(&name).days();
        assert_eq!(total.requests, 3);

        std::fs::write(&path, "{ not json").unwrap();
        let fresh = UsageStore::default();
        load(&path, &fresh);
        assert!(fresh.all().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
