//! Replays every fuzz corpus file (`fuzz/corpus/<target>/`) through its target
//! on stable Rust, so inputs the fuzzers found stay fixed in `cargo test`.
// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gemini_proxy_fuzz_targets as fuzz_targets;
use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut count = 0;
    for entry in entries {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file");
        run(&data);
        count += 1;
    }
    assert!(count > 0, "the corpus of {target} is empty");
}

#[test]
fn the_request_body_corpus_replays() {
    replay("request_body", fuzz_targets::request_body);
}

#[test]
fn the_model_id_corpus_replays() {
    replay("model_id", fuzz_targets::model_id);
}

#[test]
fn the_keys_file_corpus_replays() {
    replay("keys_file", fuzz_targets::keys_file);
}

#[test]
fn the_upstream_answer_corpus_replays() {
    replay("upstream_answer", fuzz_targets::upstream_answer);
}
