//! The backstop that keeps server keys out of what clients read.
//!
//! Gemini's key-level errors quote the key they got (`Consumer
//! 'api_key:AIza…' has been suspended`). The pipeline never relays those, but
//! Gemini's wording can change, so every error body and message on its way to
//! a client is also checked here for a piece of any server key.
//!
//! The piece is [`WINDOW`] characters long, not shorter: Gemini echoes parts
//! of a request in its 400 messages (`Unknown name "…"`), so a check on short
//! pieces would let a client learn a key a few characters at a time by
//! sending guesses and watching which answers are withheld. Every Gemini key
//! starts with the same 6 characters; 16 leaves 10 unknown ones to guess at
//! once, which no client can.

use secrecy::{ExposeSecret, SecretString};
use std::collections::HashSet;

/// Characters of a key that count as a leak when they appear together.
pub const WINDOW: usize = 16;

/// The pieces of every server key, to look for in outgoing text.
#[derive(Default)]
pub struct LeakGuard {
    /// Every `WINDOW`-byte piece of every key (keys shorter than that, whole).
    pieces: HashSet<Vec<u8>>,
    /// The piece lengths present (`WINDOW`, and the lengths of shorter keys).
    lengths: Vec<usize>,
}

impl LeakGuard {
    pub fn new(keys: &[SecretString]) -> LeakGuard {
        let mut pieces = HashSet::new();
        let mut lengths = Vec::new();
        for key in keys {
            let key = key.expose_secret().as_bytes();
            if key.is_empty() {
                continue;
            }
            let window = key.len().min(WINDOW);
            if !lengths.contains(&window) {
                lengths.push(window);
            }
            for piece in key.windows(window) {
                pieces.insert(piece.to_vec());
            }
        }
        LeakGuard { pieces, lengths }
    }

    /// Whether `text` holds a piece of a server key.
    pub fn leaks(&self, text: &[u8]) -> bool {
        self.lengths.iter().any(|&length| {
            text.windows(length)
                .any(|piece| self.pieces.contains(piece))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AIzaSyServerKey0123456789abcdefghijk";

    fn guard() -> LeakGuard {
        LeakGuard::new(&[SecretString::from(KEY), SecretString::from("short")])
    }

    #[test]
    fn finds_a_whole_key_or_any_long_piece_of_one() {
        let guard = guard();
        assert!(guard.leaks(format!("Consumer 'api_key:{KEY}' has been suspended.").as_bytes()));
        assert!(guard.leaks(format!("…{}…", &KEY[10..26]).as_bytes()));
        assert!(guard.leaks(b"a short key"));
    }

    #[test]
    fn ignores_short_pieces_and_unrelated_text() {
        let guard = guard();
        assert!(!guard.leaks(&KEY.as_bytes()[..WINDOW - 1]));
        assert!(!guard.leaks(b"Request contains an invalid argument."));
        assert!(!LeakGuard::default().leaks(KEY.as_bytes()));
    }
}
