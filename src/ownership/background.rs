//! Interactions that run in the background (`"background": true`) report
//! their tokens only when they end, in the answer to a later poll. Their
//! tokens are charged once, on the first poll that sees them ended; this set
//! remembers which are still to charge. Kept per replica: a run polled only
//! through another replica is not charged (docs/api.md#interactions).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Runs remembered at most; past it the oldest are dropped (uncharged).
const MAX_RUNS: usize = 100_000;
/// A run not polled to its end in this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Default)]
pub struct BackgroundRuns {
    runs: Mutex<HashMap<String, Instant>>,
}

impl BackgroundRuns {
    pub fn started(&self, id: &str) {
        let now = Instant::now();
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        if runs.len() >= MAX_RUNS {
            runs.retain(|_, at| now.duration_since(*at) < FORGET_AFTER);
        }
        if runs.len() >= MAX_RUNS {
            if let Some(oldest) = runs
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(id, _)| id.clone())
            {
                runs.remove(&oldest);
            }
        }
        runs.insert(id.to_owned(), now);
    }

    pub fn is_pending(&self, id: &str) -> bool {
        let runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        runs.contains_key(id)
    }

    /// Whether `id` was still to charge; it is not any more.
    pub fn ended(&self, id: &str) -> bool {
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        runs.remove(id).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_charged_once() {
        let runs = BackgroundRuns::default();
        runs.started("v1_a");
        assert!(runs.is_pending("v1_a"));
        assert!(runs.ended("v1_a"));
        assert!(!runs.ended("v1_a"));
        assert!(!runs.is_pending("v1_b"));
    }
}
