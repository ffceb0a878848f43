//! What is charged when an answer ends.

/// Charges the tokens of one answer to its client's quota windows: with
/// [`Charge::tokens`] when Gemini reported some, or with none when it is
/// dropped (the request failed without an answer, or was cancelled before
/// any usage arrived). A Live session charges as usage arrives, with
/// [`Charge::add`]. The calls it makes do not block.
pub struct Charge(Option<Box<dyn FnMut(u64, bool) + Send>>);

impl Charge {
    /// Nothing to charge: a client without quotas.
    pub fn none() -> Charge {
        Charge(None)
    }

    /// `charge(tokens, last)`: `last` is true for the final call, which comes
    /// exactly once.
    pub fn new(charge: impl FnMut(u64, bool) + Send + 'static) -> Charge {
        Charge(Some(Box::new(charge)))
    }

    /// Charges `tokens` now; more may follow.
    pub fn add(&mut self, tokens: u64) {
        if let Some(charge) = self.0.as_mut() {
            charge(tokens, false);
        }
    }

    /// Charges `tokens` (Gemini's `totalTokenCount`) and ends.
    pub fn tokens(mut self, tokens: u64) {
        if let Some(mut charge) = self.0.take() {
            charge(tokens, true);
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if let Some(mut charge) = self.0.take() {
            charge(0, true);
        }
    }
}

impl std::fmt::Debug for Charge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Charge"
        } else {
            "Charge(none)"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    #[test]
    fn charges_once_with_the_tokens_or_with_none_when_dropped() {
        let total = Arc::new(AtomicU64::new(0));
        let calls = Arc::new(AtomicU64::new(0));
        let make = || {
            let (total, calls) = (total.clone(), calls.clone());
            Charge::new(move |t, _| {
                total.fetch_add(t, Ordering::Relaxed);
                calls.fetch_add(1, Ordering::Relaxed);
            })
        };
        make().tokens(42);
        drop(make());
        let mut live = make();
        live.add(5);
        live.add(6);
        drop(live);
        assert_eq!(total.load(Ordering::Relaxed), 53);
        assert_eq!(calls.load(Ordering::Relaxed), 5);
    }
}
