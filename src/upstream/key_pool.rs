//! The server's own Gemini keys, used round-robin, shared by every upstream actor.
//!
//! A key that hits its quota rests for Gemini's `RetryInfo` delay; a key Gemini
//! rejects leaves the rotation until the pool is reset (SIGHUP or restart).

use crate::metrics::Metrics;
use awc::http::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyState {
    Available,
    RestingUntil(Instant),
    Rejected,
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
    /// Every key still in rotation is resting; the shortest rest ends after this.
    AllResting(Duration),
    /// Every key was rejected by Gemini (or tried already by this request).
    NoneLeft,
}

pub struct KeyPool {
    headers: Vec<HeaderValue>,
    states: Mutex<Vec<KeyState>>,
    next: AtomicUsize,
    metrics: Arc<Metrics>,
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
        let pool = KeyPool {
            states: Mutex::new(vec![KeyState::Available; headers.len()]),
            headers,
            next: AtomicUsize::new(0),
            metrics,
        };
        pool.publish();
        pool
    }

    pub fn len(&self) -> usize {
        self.headers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }

    /// The next key in rotation that this request has not tried yet.
    pub fn pick(&self, tried: &[usize]) -> Result<PickedKey, NoKey> {
        if self.headers.is_empty() {
            return Err(NoKey::Unconfigured);
        }
        let now = Instant::now();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut shortest_rest: Option<Duration> = None;
        let Ok(mut states) = self.states.lock() else {
            return Err(NoKey::NoneLeft);
        };
        let mut woke = false;
        for offset in 0..self.headers.len() {
            let index = (start + offset) % self.headers.len();
            match states[index] {
                KeyState::RestingUntil(until) if until <= now => {
                    states[index] = KeyState::Available;
                    woke = true;
                }
                KeyState::RestingUntil(until) => {
                    let rest = until - now;
                    shortest_rest = Some(shortest_rest.map_or(rest, |s| s.min(rest)));
                    continue;
                }
                KeyState::Rejected => continue,
                KeyState::Available => {}
            }
            if tried.contains(&index) {
                continue;
            }
            drop(states);
            if woke {
                self.publish();
            }
            return Ok(PickedKey {
                index,
                header: self.headers[index].clone(),
            });
        }
        drop(states);
        if woke {
            self.publish();
        }
        Err(shortest_rest.map_or(NoKey::NoneLeft, NoKey::AllResting))
    }

    /// Rests a key that hit its quota.
    pub fn rest(&self, index: usize, rest: Duration) {
        self.set(index, KeyState::RestingUntil(Instant::now() + rest));
    }

    /// Takes a key Gemini rejected out of rotation.
    pub fn reject(&self, index: usize) {
        let newly = self
            .states
            .lock()
            .map(|s| s.get(index) != Some(&KeyState::Rejected))
            .unwrap_or(false);
        self.set(index, KeyState::Rejected);
        if newly {
            log::error!(
                "Gemini rejected server key #{index} (GEMINI_API_KEY entry {}); it is out of rotation until SIGHUP or restart",
                index + 1
            );
        }
    }

    /// Puts every key back in rotation (on SIGHUP).
    pub fn reset(&self) {
        if let Ok(mut states) = self.states.lock() {
            states.iter_mut().for_each(|s| *s = KeyState::Available);
        }
        self.publish();
    }

    fn set(&self, index: usize, state: KeyState) {
        if let Ok(mut states) = self.states.lock() {
            if let Some(slot) = states.get_mut(index) {
                *slot = state;
            }
        }
        self.publish();
    }

    /// Mirrors each key's availability into `gemini_proxy_upstream_key_available`.
    fn publish(&self) {
        let Ok(states) = self.states.lock() else {
            return;
        };
        let now = Instant::now();
        for (index, state) in states.iter().enumerate() {
            let available = match state {
                KeyState::Available => true,
                KeyState::RestingUntil(until) => *until <= now,
                KeyState::Rejected => false,
            };
            self.metrics
                .key_available
                .with_label_values(&[&index.to_string()])
                .set(i64::from(available));
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
        let picks: Vec<usize> = (0..6).map(|_| pool.pick(&[]).unwrap().index).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn resting_and_rejected_keys_are_skipped() {
        let pool = pool(3);
        pool.rest(0, Duration::from_secs(30));
        pool.reject(1);
        for _ in 0..4 {
            assert_eq!(pool.pick(&[]).unwrap().index, 2);
        }
        match pool.pick(&[2]) {
            Err(NoKey::AllResting(rest)) => {
                assert!(rest <= Duration::from_secs(30) && rest > Duration::from_secs(29))
            }
            other => panic!("expected all resting, got {:?}", other.map(|k| k.index)),
        }
        pool.reset();
        assert_eq!(pool.pick(&[1, 2]).unwrap().index, 0);
    }

    #[test]
    fn an_empty_or_exhausted_pool_says_why() {
        assert_eq!(pool(0).pick(&[]).err(), Some(NoKey::Unconfigured));
        let pool = pool(1);
        pool.reject(0);
        assert_eq!(pool.pick(&[]).err(), Some(NoKey::NoneLeft));
    }
}
