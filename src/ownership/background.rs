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

/// Runs still to charge: when each started, and its model.
#[derive(Default)]
pub struct BackgroundRuns {
    runs: Mutex<HashMap<String, (Instant, String)>>,
}

impl BackgroundRuns {
    pub fn started(&self, id: &str, model: &str) {
        let now = Instant::now();
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        if runs.len() >= MAX_RUNS {
            runs.retain(|_, (at, _)| now.duration_since(*at) < FORGET_AFTER);
        }
        if runs.len() >= MAX_RUNS {
            if let Some(oldest) = runs
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(id, _)| id.clone())
            {
                runs.remove(&oldest);
            }
        }
        runs.insert(id.to_owned(), (now, model.to_owned()));
    }

    /// The model of a run still to charge.
    pub fn pending(&self, id: &str) -> Option<String> {
        let runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        runs.get(id).map(|(_, model)| model.clone())
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
        runs.started("v1_a", "gemini-2.5-pro");
        assert_eq!(runs.pending("v1_a").as_deref(), Some("gemini-2.5-pro"));
        assert!(runs.ended("v1_a"));
        assert!(!runs.ended("v1_a"));
        assert_eq!(runs.pending("v1_a"), None);
    }
}
