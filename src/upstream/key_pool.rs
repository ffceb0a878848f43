//! The server's own Gemini keys, used round-robin, shared by every upstream actor.
//!
//! The keys are shared by every client, so what happens to a key must follow
//! only from what Gemini says about the key itself, never from what one client
//! asked (docs/upstream.md):
//! - a quota answer rests the key **for one model only** (Gemini's quotas are
//!   per project and model): until its `RetryInfo` delay, 60 s without one, or
//!   the next midnight Pacific time for a per-day quota, never more than 24 h;
//! - a key-level refusal takes the key out of rotation until a re-check
//!   ([`super::recheck`]) finds it accepted again, or until `SIGHUP`.

use super::day::until_next_midnight_pacific;
use crate::metrics::Metrics;
use crate::ownership::seal::Sealer;
use crate::ownership::{fingerprint, KeyFingerprint};
use awc::http::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

/// A key that gets Gemini's 429 without a `RetryInfo` rests this long.
pub const DEFAULT_QUOTA_REST: Duration = Duration::from_secs(60);
/// No rest is longer: a per-day quota resets within a day, and a wrong
/// `RetryInfo` must not bench a key for longer.
pub const MAX_REST: Duration = Duration::from_secs(24 * 3600);
/// A key whose answer looked like a refusal without saying so is asked by
/// itself at most this often, so a client that provokes such answers on
/// purpose costs one extra call a minute, not one a request.
const PROBE_INTERVAL: Duration = Duration::from_secs(60);
/// Models a key may rest for at once; past this the oldest-ending rest is
/// dropped. Gemini names only real models, so this bounds memory, not behaviour.
const MAX_RESTING_MODELS: usize = 256;

/// Which of Gemini's quota windows made a key rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestScope {
    Minute,
    Day,
}

impl RestScope {
    pub fn label(self) -> &'static str {
        match self {
            RestScope::Minute => "minute",
            RestScope::Day => "day",
        }
    }
}

/// How long a key rests after a quota answer for one model.
pub fn rest_length(retry_delay: Option<Duration>, scope: RestScope, now: SystemTime) -> Duration {
    let length = match scope {
        RestScope::Minute => retry_delay.unwrap_or(DEFAULT_QUOTA_REST),
        // A per-day quota's RetryInfo can be shorter than the real wait; it
        // counts only when it is longer.
        RestScope::Day => until_next_midnight_pacific(now).max(retry_delay.unwrap_or_default()),
    };
    length.min(MAX_REST)
}

#[derive(Clone, Debug, Default)]
struct KeyState {
    refused: bool,
    /// When the key was last asked by itself after a suspect answer.
    last_probe: Option<Instant>,
    /// Model id (without `models/`; empty for calls that name none) → end of rest.
    rests: HashMap<String, Instant>,
}

impl KeyState {
    fn forget_ended_rests(&mut self, now: Instant) {
        self.rests.retain(|_, until| *until > now);
    }
}

/// A key chosen for one attempt. The header value is marked sensitive so it is
/// never printed by the HTTP stack.
#[derive(Clone)]
pub struct PickedKey {
    pub index: usize,
    pub header: HeaderValue,
}

/// Why no key could be chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoKey {
    /// No server key is configured.
    Unconfigured,
    /// Every key still in rotation rests for this model; the shortest rest ends after this.
    AllResting(Duration),
    /// Every key was refused by Gemini (or tried already by this request).
    NoneLeft,
}

pub struct KeyPool {
    headers: Vec<HeaderValue>,
    /// What resource records name each key by: the same on every replica,
    /// whatever order its keys were given in.
    fingerprints: Vec<KeyFingerprint>,
    /// Seals the service's page tokens (src/ownership/seal.rs): derived from
    /// the keys, so every replica with the same keys opens every token.
    sealer: Sealer,
    states: Mutex<Vec<KeyState>>,
    next: AtomicUsize,
    metrics: Arc<Metrics>,
    /// Where probes of suspect keys are asked for (the re-check actor).
    prober: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<usize>>,
}

impl KeyPool {
    pub fn new(keys: &[SecretString], metrics: Arc<Metrics>) -> KeyPool {
        let headers: Vec<HeaderValue> = keys
            .iter()
            .filter_map(|key| {
                let mut value = HeaderValue::from_str(key.expose_secret()).ok()?;
                value.set_sensitive(true);
                Some(value)
            })
            .collect();
        let fingerprints = headers
            .iter()
            .map(|header| fingerprint(header.as_bytes()))
            .collect();
        let sealer = Sealer::from_keys(headers.iter().map(HeaderValue::as_bytes));
        let pool = KeyPool {
            fingerprints,
            sealer,
            states: Mutex::new(vec![KeyState::default(); headers.len()]),
            headers,
            next: AtomicUsize::new(0),
            metrics,
            prober: std::sync::OnceLock::new(),
        };
        for index in 0..pool.headers.len() {
            for scope in [RestScope::Minute, RestScope::Day] {
                pool.metrics
                    .key_rests
                    .with_label_values(&[&index.to_string(), scope.label()]);
            }
        }
        pool.publish();
        pool
    }

    /// Seals the tokens the service hands out (src/ownership/seal.rs).
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    pub fn fingerprint(&self, index: usize) -> Option<&KeyFingerprint> {
        self.fingerprints.get(index)
    }

    /// The key a resource record names, if this replica has it.
    pub fn index_of(&self, fingerprint: &KeyFingerprint) -> Option<usize> {
        self.fingerprints.iter().position(|f| f == fingerprint)
    }

    /// Every key with its fingerprint, in fingerprint order: an order every
    /// replica agrees on, whatever order it was given its keys in.
    pub fn clone_order(&self) -> Vec<(usize, KeyFingerprint)> {
        let mut order: Vec<(usize, KeyFingerprint)> =
            self.fingerprints.iter().cloned().enumerate().collect();
        order.sort_by(|a, b| a.1.as_str().cmp(b.1.as_str()));
        order
    }

    /// Whether key `index` is in rotation (Gemini has not refused it).
    pub fn usable(&self, index: usize) -> bool {
        self.states().get(index).is_some_and(|state| !state.refused)
    }

    pub fn len(&self) -> usize {
        self.headers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }

    fn states(&self) -> MutexGuard<'_, Vec<KeyState>> {
        // A panic while the lock was held cannot leave the states half-written
        // (every update is one assignment), so a poisoned lock is still usable.
        self.states.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next key in rotation, not resting for `model`, that this request
    /// has not tried yet.
    /// `only`: the call may use this key and no other.
    pub fn pick(
        &self,
        model: &str,
        tried: &[usize],
        only: Option<usize>,
    ) -> Result<PickedKey, NoKey> {
        self.pick_at(model, tried, only, Instant::now())
    }

    fn pick_at(
        &self,
        model: &str,
        tried: &[usize],
        only: Option<usize>,
        now: Instant,
    ) -> Result<PickedKey, NoKey> {
        if self.headers.is_empty() {
            return Err(NoKey::Unconfigured);
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut shortest_rest: Option<Duration> = None;
        let states = self.states();
        for offset in 0..self.headers.len() {
            let index = (start + offset) % self.headers.len();
            let state = &states[index];
            if state.refused || only.is_some_and(|only| only != index) {
                continue;
            }
            // Checked before `tried`: a key this request just rested still
            // says when the model is served again.
            if let Some(until) = state.rests.get(model).filter(|until| **until > now) {
                let rest = *until - now;
                shortest_rest = Some(shortest_rest.map_or(rest, |s| s.min(rest)));
                continue;
            }
            if !tried.contains(&index) {
                return Ok(PickedKey {
                    index,
                    header: self.headers[index].clone(),
                });
            }
        }
        Err(shortest_rest.map_or(NoKey::NoneLeft, NoKey::AllResting))
    }

    /// Rests a key for one model after a quota answer; returns how long.
    pub fn rest(
        &self,
        index: usize,
        model: &str,
        retry_delay: Option<Duration>,
        scope: RestScope,
    ) -> Duration {
        self.rest_at(
            index,
            model,
            retry_delay,
            scope,
            Instant::now(),
            SystemTime::now(),
        )
    }

    fn rest_at(
        &self,
        index: usize,
        model: &str,
        retry_delay: Option<Duration>,
        scope: RestScope,
        now: Instant,
        wall: SystemTime,
    ) -> Duration {
        let length = rest_length(retry_delay, scope, wall);
        {
            let mut states = self.states();
            let Some(state) = states.get_mut(index) else {
                return length;
            };
            state.forget_ended_rests(now);
            if state.rests.len() >= MAX_RESTING_MODELS && !state.rests.contains_key(model) {
                if let Some(soonest) = state
                    .rests
                    .iter()
                    .min_by_key(|(_, until)| **until)
                    .map(|(m, _)| m.clone())
                {
                    state.rests.remove(&soonest);
                }
            }
            let until = now + length;
            let slot = state.rests.entry(model.to_owned()).or_insert(until);
            *slot = (*slot).max(until);
        }
        self.metrics
            .key_rests
            .with_label_values(&[&index.to_string(), scope.label()])
            .inc();
        log::warn!(
            "server key #{index} reached a Gemini {} quota for `{model}`; it rests {} s for that model",
            scope.label(),
            length.as_secs()
        );
        self.publish();
        length
    }

    /// Takes a key Gemini refused at key level out of rotation.
    pub fn refuse(&self, index: usize) {
        let newly = {
            let mut states = self.states();
            match states.get_mut(index) {
                Some(state) if !state.refused => {
                    state.refused = true;
                    true
                }
                _ => false,
            }
        };
        if newly {
            log::error!(
                "Gemini refused server key #{index} (GEMINI_API_KEY entry {}) at key level; it is out of rotation until a re-check finds it accepted, or SIGHUP",
                index + 1
            );
            self.publish();
        }
    }

    /// Connects the re-check actor, which probes the keys [`KeyPool::probe`] names.
    pub fn connect_prober(&self, probes: tokio::sync::mpsc::UnboundedSender<usize>) {
        // Connected once at start-up; a second connection would be a wiring bug.
        let _ = self.prober.set(probes);
    }

    /// Asks for key `index` to be checked by itself (at most once a
    /// [`PROBE_INTERVAL`]): Gemini answered it in a way that may mean the key
    /// is refused, or may be about the request alone.
    pub fn probe(&self, index: usize) {
        let now = Instant::now();
        let due = {
            let mut states = self.states();
            match states.get_mut(index) {
                Some(state)
                    if !state.refused
                        && state
                            .last_probe
                            .is_none_or(|last| now.duration_since(last) >= PROBE_INTERVAL) =>
                {
                    state.last_probe = Some(now);
                    true
                }
                _ => false,
            }
        };
        if let (true, Some(prober)) = (due, self.prober.get()) {
            let _ = prober.send(index);
        }
    }

    /// Puts a refused key back in rotation (a re-check found it accepted).
    pub fn restore(&self, index: usize) {
        let was_refused = {
            let mut states = self.states();
            states
                .get_mut(index)
                .map(|state| std::mem::replace(&mut state.refused, false))
                .unwrap_or(false)
        };
        if was_refused {
            log::info!("server key #{index} is accepted by Gemini again; back in rotation");
            self.publish();
        }
    }

    /// Key `index`'s header value, to ask it by itself.
    pub fn header(&self, index: usize) -> Option<HeaderValue> {
        self.headers.get(index).cloned()
    }

    /// The keys out of rotation, with their header values, for the re-check.
    pub fn refused(&self) -> Vec<PickedKey> {
        let states = self.states();
        states
            .iter()
            .enumerate()
            .filter(|(_, state)| state.refused)
            .map(|(index, _)| PickedKey {
                index,
                header: self.headers[index].clone(),
            })
            .collect()
    }

    /// Puts every refused key back in rotation (on SIGHUP); rests stay, since
    /// Gemini's quotas did not change.
    pub fn restore_all(&self) {
        for state in self.states().iter_mut() {
            state.refused = false;
        }
        self.publish();
    }

    /// Mirrors each key's state into `gemini_proxy_upstream_key_available` and
    /// `gemini_proxy_upstream_key_resting_models`; called on every change and
    /// before each scrape, so ended rests leave the gauge too.
    pub fn publish(&self) {
        let now = Instant::now();
        let mut states = self.states();
        for (index, state) in states.iter_mut().enumerate() {
            state.forget_ended_rests(now);
            let label = index.to_string();
            self.metrics
                .key_available
                .with_label_values(&[&label])
                .set(i64::from(!state.refused));
            self.metrics
                .key_resting_models
                .with_label_values(&[&label])
                .set(i64::try_from(state.rests.len()).unwrap_or(i64::MAX));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> KeyPool {
        let keys: Vec<SecretString> = (0..n)
            .map(|i| SecretString::from(format!("key-{i}")))
            .collect();
        KeyPool::new(&keys, Arc::new(Metrics::new().unwrap()))
    }

    #[test]
    fn keys_are_used_in_turn() {
        let pool = pool(3);
        let picks: Vec<usize> = (0..6)
            .map(|_| pool.pick("m", &[], None).unwrap().index)
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn a_rest_is_for_one_model_only() {
        let pool = pool(2);
        pool.rest(0, "gemini-2.5-pro", None, RestScope::Minute);
        for _ in 0..4 {
            assert_eq!(pool.pick("gemini-2.5-pro", &[], None).unwrap().index, 1);
        }
        let flash: Vec<usize> = (0..4)
            .map(|_| pool.pick("gemini-2.5-flash", &[], None).unwrap().index)
            .collect();
        assert!(
            flash.contains(&0),
            "key 0 still serves other models: {flash:?}"
        );
        match pool.pick("gemini-2.5-pro", &[1], None) {
            Err(NoKey::AllResting(rest)) => {
                assert!(
                    rest <= DEFAULT_QUOTA_REST
                        && rest > DEFAULT_QUOTA_REST - Duration::from_secs(1)
                )
            }
            other => panic!("expected all resting, got {:?}", other.map(|k| k.index)),
        }
    }

    #[test]
    fn a_rest_ends_on_time() {
        let pool = pool(1);
        let now = Instant::now();
        pool.rest_at(
            0,
            "m",
            Some(Duration::from_secs(5)),
            RestScope::Minute,
            now,
            SystemTime::now(),
        );
        assert!(pool
            .pick_at("m", &[], None, now + Duration::from_secs(4))
            .is_err());
        assert_eq!(
            pool.pick_at("m", &[], None, now + Duration::from_secs(5))
                .unwrap()
                .index,
            0
        );
    }

    #[test]
    fn a_pinned_call_gets_its_key_or_says_why_not() {
        let pool = pool(3);
        for _ in 0..6 {
            assert_eq!(pool.pick("m", &[], Some(2)).unwrap().index, 2);
        }
        pool.rest(2, "m", Some(Duration::from_secs(30)), RestScope::Minute);
        assert!(matches!(
            pool.pick("m", &[], Some(2)),
            Err(NoKey::AllResting(_))
        ));
        assert_eq!(pool.pick("other", &[], Some(2)).unwrap().index, 2);
        pool.refuse(1);
        assert_eq!(pool.pick("m", &[], Some(1)).err(), Some(NoKey::NoneLeft));
        assert!(!pool.usable(1) && pool.usable(0));
        assert_eq!(pool.pick("m", &[0], Some(0)).err(), Some(NoKey::NoneLeft));
    }

    #[test]
    fn fingerprints_name_keys_in_an_order_every_replica_shares() {
        let forward = pool(3);
        let keys: Vec<SecretString> = (0..3)
            .rev()
            .map(|i| SecretString::from(format!("key-{i}")))
            .collect();
        let backward = KeyPool::new(&keys, Arc::new(Metrics::new().unwrap()));
        let names = |p: &KeyPool| -> Vec<String> {
            p.clone_order()
                .iter()
                .map(|(_, f)| f.as_str().to_owned())
                .collect()
        };
        assert_eq!(names(&forward), names(&backward));
        let first = forward.fingerprint(0).unwrap().clone();
        assert_eq!(backward.index_of(&first), Some(2));
        assert_eq!(forward.index_of(&first), Some(0));
    }

    #[test]
    fn refused_keys_leave_until_restored_and_sighup_keeps_rests() {
        let pool = pool(3);
        pool.refuse(1);
        pool.rest(0, "m", Some(Duration::from_secs(30)), RestScope::Minute);
        for _ in 0..4 {
            assert_eq!(pool.pick("m", &[], None).unwrap().index, 2);
        }
        assert_eq!(
            pool.refused().iter().map(|k| k.index).collect::<Vec<_>>(),
            [1]
        );
        pool.restore_all();
        assert!(pool.refused().is_empty());
        let picks: Vec<usize> = (0..4)
            .map(|_| pool.pick("m", &[], None).unwrap().index)
            .collect();
        assert!(!picks.contains(&0), "SIGHUP ended a rest: {picks:?}");
        assert!(picks.contains(&1));
        pool.refuse(2);
        pool.restore(2);
        assert!(pool.refused().is_empty());
    }

    #[test]
    fn an_empty_or_exhausted_pool_says_why() {
        assert_eq!(
            pool(0).pick("m", &[], None).err(),
            Some(NoKey::Unconfigured)
        );
        let pool = pool(1);
        pool.refuse(0);
        assert_eq!(pool.pick("m", &[], None).err(), Some(NoKey::NoneLeft));
    }

    #[test]
    fn rests_are_capped_and_per_day_waits_for_midnight() {
        let now = SystemTime::now();
        assert_eq!(
            rest_length(Some(Duration::from_secs(1_000_000)), RestScope::Minute, now),
            MAX_REST
        );
        assert_eq!(
            rest_length(None, RestScope::Minute, now),
            DEFAULT_QUOTA_REST
        );
        let day = rest_length(Some(Duration::from_secs(26)), RestScope::Day, now);
        assert_eq!(
            day,
            until_next_midnight_pacific(now).max(Duration::from_secs(26))
        );
        assert!(day <= MAX_REST);
    }

    #[test]
    fn a_suspect_key_is_probed_at_most_once_a_minute() {
        let pool = pool(2);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        pool.connect_prober(tx);
        for _ in 0..5 {
            pool.probe(1);
        }
        assert_eq!(rx.try_recv().ok(), Some(1));
        assert!(rx.try_recv().is_err(), "one probe a minute");
        pool.refuse(0);
        pool.probe(0);
        assert!(rx.try_recv().is_err(), "a refused key is the re-check's");
    }

    #[test]
    fn memory_per_key_is_bounded() {
        let pool = pool(1);
        for i in 0..(MAX_RESTING_MODELS + 10) {
            pool.rest(0, &format!("m-{i}"), None, RestScope::Minute);
        }
        assert_eq!(pool.states()[0].rests.len(), MAX_RESTING_MODELS);
    }
}
