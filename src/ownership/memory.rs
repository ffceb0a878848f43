//! The records this process holds: a map per kind, and an index by expiry so
//! the oldest are found without a scan.
//!
//! Expired entries are never returned; they leave the map when the next insert
//! sweeps the front of the index (each entry is swept once, so the cost per
//! insert stays logarithmic) and memory stays bounded by `max_entries`, past
//! which the entries that would expire soonest make room. The clock is a
//! parameter so tests move it instead of sleeping.

use super::{KeyFingerprint, KeyRef, Kind, Owner, MAX_TTL};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Evictions are logged at most this often: a full table evicts on every
/// insert, and one line a minute with a count says as much.
const EVICTION_LOG_INTERVAL: Duration = Duration::from_secs(60);

const KINDS: usize = 5;

fn slot(kind: Kind) -> usize {
    match kind {
        Kind::File => 0,
        Kind::CachedContent => 1,
        Kind::Batch => 2,
        Kind::Interaction => 3,
        Kind::Upload => 4,
    }
}

struct Entry {
    owner: Owner,
    /// This entry's key in the expiry index.
    due: Due,
}

/// When an entry expires, and a sequence number that keeps two entries due at
/// the same instant apart.
type Due = (Instant, u64);

#[derive(Default)]
struct Table {
    entries: [HashMap<Box<str>, Entry>; KINDS],
    /// Live entries per client, so none can take the whole table.
    per_client: HashMap<Arc<str>, usize>,
    by_expiry: BTreeMap<Due, (Kind, Box<str>)>,
    next_seq: u64,
    evicted_unlogged: u64,
    last_eviction_log: Option<Instant>,
}

pub(super) struct Memory {
    table: Mutex<Table>,
    max_entries: usize,
    max_per_client: usize,
    at_share: AtShare,
}

/// What a client's record does when the client holds its share already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AtShare {
    /// Is not kept (an upload session: its start is refused, clearly).
    Refuse,
    /// Takes the place of the client's own record that expires soonest (a
    /// resource Gemini has made must stay reachable).
    EvictOwn,
}

impl Memory {
    /// At most `max_entries` in all, `max_per_client` of them one client's.
    pub(super) fn new(max_entries: usize, max_per_client: usize, at_share: AtShare) -> Memory {
        Memory {
            table: Mutex::new(Table::default()),
            max_entries,
            max_per_client,
            at_share,
        }
    }

    /// A panic elsewhere while the lock was held leaves a table that is still
    /// consistent (every change is made in one place), so it stays usable.
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the record was kept: not when its client already holds its
    /// share of the table.
    pub(super) fn insert(
        &self,
        kind: Kind,
        id: &str,
        owner: Owner,
        ttl: Duration,
        now: Instant,
    ) -> bool {
        if self.max_entries == 0 || ttl.is_zero() {
            return false;
        }
        let Some(expires) = now.checked_add(ttl.min(MAX_TTL)) else {
            return false;
        };
        let log = {
            let mut table = self.table();
            table.sweep(now);
            let replaced = table.entries[slot(kind)].remove(id);
            if let Some(old) = replaced {
                table.by_expiry.remove(&old.due);
                table.forget_one(&old.owner.client);
            } else if table.per_client.get(&owner.client).copied().unwrap_or(0)
                >= self.max_per_client
            {
                match self.at_share {
                    AtShare::Refuse => return false,
                    AtShare::EvictOwn => table.evict_soonest_of(&owner.client),
                }
            } else if table.len() >= self.max_entries {
                table.evict_soonest();
            }
            let due = table.due(expires);
            table.by_expiry.insert(due, (kind, id.into()));
            *table.per_client.entry(owner.client.clone()).or_default() += 1;
            table.entries[slot(kind)].insert(id.into(), Entry { owner, due });
            table.eviction_log(now)
        };
        if let Some(evicted) = log {
            log::warn!(
                "ownership: {evicted} records evicted before they expired, to stay within {} entries; \
                 calls about those resources are refused as unknown (raise the limit)",
                self.max_entries
            );
        }
        true
    }

    pub(super) fn get(&self, kind: Kind, id: &str, now: Instant) -> Option<Owner> {
        let table = self.table();
        let entry = table.entries[slot(kind)].get(id)?;
        (entry.due.0 > now).then(|| entry.owner.clone())
    }

    pub(super) fn remove(&self, kind: Kind, id: &str) {
        let mut table = self.table();
        if let Some(old) = table.entries[slot(kind)].remove(id) {
            table.by_expiry.remove(&old.due);
            table.forget_one(&old.owner.client);
        }
    }

    /// Moves a live entry's expiry to `ttl` from now; an expired or unknown one
    /// is left alone (an expired record must not come back).
    pub(super) fn extend(&self, kind: Kind, id: &str, ttl: Duration, now: Instant) {
        let Some(expires) = now.checked_add(ttl.min(MAX_TTL)) else {
            return;
        };
        let mut table = self.table();
        let old = match table.entries[slot(kind)].get(id) {
            Some(entry) if entry.due.0 > now => entry.due,
            _ => return,
        };
        let due = table.due(expires);
        if let Some(entry) = table.entries[slot(kind)].get_mut(id) {
            entry.due = due;
        }
        if let Some(key) = table.by_expiry.remove(&old) {
            table.by_expiry.insert(due, key);
        }
    }

    pub(super) fn held_by(&self, key: &KeyFingerprint, now: Instant) -> usize {
        let mut table = self.table();
        table.sweep(now);
        table
            .entries
            .iter()
            .flat_map(HashMap::values)
            .filter(|e| matches!(&e.owner.key, KeyRef::Server(k) if k == key))
            .count()
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.table().len()
    }
}

impl Table {
    fn len(&self) -> usize {
        self.by_expiry.len()
    }

    fn due(&mut self, expires: Instant) -> Due {
        self.next_seq += 1;
        (expires, self.next_seq)
    }

    /// Drops every entry whose time has come.
    fn sweep(&mut self, now: Instant) {
        while let Some(entry) = self.by_expiry.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (kind, id) = entry.remove();
            if let Some(old) = self.entries[slot(kind)].remove(&id) {
                self.forget_one(&old.owner.client);
            }
        }
    }

    /// Drops the client's own record that expires soonest.
    fn evict_soonest_of(&mut self, client: &Arc<str>) {
        let due = self.by_expiry.iter().find_map(|(due, (kind, id))| {
            let entry = self.entries[slot(*kind)].get(id)?;
            (entry.owner.client == *client).then_some(*due)
        });
        if let Some((kind, id)) = due.and_then(|due| self.by_expiry.remove(&due)) {
            if let Some(old) = self.entries[slot(kind)].remove(&id) {
                self.forget_one(&old.owner.client);
            }
            self.evicted_unlogged += 1;
        }
    }

    fn forget_one(&mut self, client: &Arc<str>) {
        if let Some(count) = self.per_client.get_mut(client) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_client.remove(client);
            }
        }
    }

    fn evict_soonest(&mut self) {
        if let Some((_, (kind, id))) = self.by_expiry.pop_first() {
            if let Some(old) = self.entries[slot(kind)].remove(&id) {
                self.forget_one(&old.owner.client);
            }
            self.evicted_unlogged += 1;
        }
    }

    /// How many evictions to log now, if it is time to.
    fn eviction_log(&mut self, now: Instant) -> Option<u64> {
        if self.evicted_unlogged == 0 {
            return None;
        }
        let due = self
            .last_eviction_log
            .is_none_or(|last| now.saturating_duration_since(last) >= EVICTION_LOG_INTERVAL);
        if !due {
            return None;
        }
        self.last_eviction_log = Some(now);
        Some(std::mem::take(&mut self.evicted_unlogged))
    }
}
