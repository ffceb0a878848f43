//! A retry budget: retries may add at most a fraction of the calls the clients
//! asked for, so a struggling Gemini is not hit harder because it struggles.
//!
//! Each call deposits [`RATIO`] of a retry; each retry withdraws one. A small
//! per-second allowance keeps retries possible at low traffic, and the balance
//! starts (and is capped) at [`CAP`] so a quiet service can ride out a blip.
//! Under sustained failure this bounds upstream calls to about
//! `1 + RATIO` per request (plus the allowance), whatever the failure rate —
//! the policy of Finagle's and Envoy's retry budgets.

use std::sync::Mutex;
use std::time::Instant;

/// Retries allowed per call made.
pub const RATIO: f64 = 0.2;
/// Retries allowed per second whatever the traffic.
const ALLOWANCE_PER_SEC: f64 = 2.0;
/// Retries that can be banked.
const CAP: f64 = 10.0;

pub struct RetryBudget {
    state: Mutex<State>,
}

struct State {
    balance: f64,
    refilled: Instant,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            state: Mutex::new(State {
                balance: CAP,
                refilled: Instant::now(),
            }),
        }
    }
}

impl RetryBudget {
    /// A call was made on a client's behalf.
    pub fn deposit(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.balance = (state.balance + RATIO).min(CAP);
        }
    }

    /// Takes one retry from the budget if there is one.
    pub fn try_withdraw(&self) -> bool {
        self.try_withdraw_at(Instant::now())
    }

    fn try_withdraw_at(&self, now: Instant) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        let elapsed = now.saturating_duration_since(state.refilled).as_secs_f64();
        state.balance = (state.balance + elapsed * ALLOWANCE_PER_SEC).min(CAP);
        state.refilled = now;
        if state.balance >= 1.0 {
            state.balance -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sustained_failure_costs_at_most_the_ratio_in_retries() {
        let budget = RetryBudget::default();
        let now = Instant::now();
        let mut retries = 0;
        let calls = 10_000;
        for _ in 0..calls {
            budget.deposit();
            // Every call fails and wants two retries, all in the same instant.
            for _ in 0..2 {
                if budget.try_withdraw_at(now) {
                    retries += 1;
                }
            }
        }
        let ratio = f64::from(retries) / f64::from(calls);
        assert!(ratio <= RATIO + 0.01, "retries per call {ratio}");
        assert!(
            ratio >= RATIO - 0.01,
            "the budget is spent, not hoarded: {ratio}"
        );
    }

    #[test]
    fn a_quiet_service_may_retry_a_blip() {
        let budget = RetryBudget::default();
        assert!((0..10).all(|_| budget.try_withdraw()));
    }
}
