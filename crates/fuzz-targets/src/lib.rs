//! Entry points for the fuzzers (`fuzz/`, cargo-fuzz on nightly) and for the
//! corpus replay that runs on stable in `cargo test` (`tests/corpus.rs`).
//!
//! Each takes arbitrary bytes, drives one parser that faces untrusted input,
//! and panics only if an invariant the service relies on is broken — so, unlike
//! the service's own code, this crate asserts on purpose. It lives outside the
//! service crate so the service library exports no function that panics.
#![allow(clippy::panic)]

use gemini_proxy::errors::ErrorCode;
use gemini_proxy::model_id::ModelId;
use gemini_proxy::proxy_request::ProxyRequest;
use gemini_proxy::upstream::classify::{classify_failure, read_answer, KeyOwner, KeyVerdict};

/// The `/gemini-proxy` body parser: never panics; refusals carry body codes only.
pub fn request_body(data: &[u8]) {
    if let Err(error) = ProxyRequest::parse(data, 100) {
        let code = gemini_proxy::errors::ApiError::from(error).code;
        assert!(
            matches!(
                code,
                ErrorCode::InvalidJson
                    | ErrorCode::InvalidRequest
                    | ErrorCode::PromptTooLong
                    | ErrorCode::ModelAndKeyRequired
                    | ErrorCode::InvalidModel
            ),
            "unexpected code {code}"
        );
    }
}

/// The model-id grammar: whatever it accepts is one safe path segment.
pub fn model_id(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(model) = ModelId::parse(text) {
        let name = model.name();
        assert!(!name.is_empty() && name.len() <= 128);
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'),
            "unsafe byte in {name:?}"
        );
        assert!(!name.contains(".."), "dot-dot in {name:?}");
        assert_eq!(ModelId::parse(&model.to_string()).as_ref(), Ok(&model));
    }
}

/// The keys-file parser: never panics, and never quotes a key in an error.
pub fn keys_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(error) = gemini_proxy::keys::file::parse_clients("fuzz.toml", text, &[]) {
        let message = error.to_string();
        for line in text.lines() {
            let Some((name, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            if name.trim() == "key" && value.len() >= 12 {
                assert!(!message.contains(value), "a key leaked: {message}");
            }
        }
    }
}

/// The classifier of Gemini's answers: any status and body yields an error
/// code; only a 401, 400 or 403 can refuse a key (or make a server key
/// suspect), and only a 429 rest one.
pub fn upstream_answer(data: &[u8]) {
    let Some((&[high, low], body)) = data.split_first_chunk::<2>() else {
        return;
    };
    let status = 100 + u16::from_be_bytes([high, low]) % 500;
    if let Err(failure) = read_answer(body) {
        assert!(ErrorCode::ALL.contains(&failure.code));
    }
    for owner in [KeyOwner::Server, KeyOwner::Client] {
        let failure = classify_failure(status, body, owner);
        assert!(ErrorCode::ALL.contains(&failure.code));
        match failure.key {
            KeyVerdict::Refused => assert!(matches!(status, 400 | 401 | 403)),
            KeyVerdict::Rest(_) | KeyVerdict::Busy => assert_eq!(status, 429),
            KeyVerdict::Suspect => {
                assert_eq!((status, owner), (403, KeyOwner::Server));
            }
            KeyVerdict::Fine => {}
        }
    }
}
