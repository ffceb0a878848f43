#!/usr/bin/env bash
# Runs each fuzz target for FUZZ_SECONDS (default 60) on the nightly toolchain.
# The stable test suite replays fuzz/corpus/ (tests/fuzz_corpus.rs); this finds
# new inputs. A crash leaves its input in fuzz/artifacts/<target>/: copy it into
# fuzz/corpus/<target>/ with a descriptive name once fixed, so it is replayed.
#
#   scripts/fuzz.sh                         # every target, 60 s each
#   FUZZ_SECONDS=600 scripts/fuzz.sh model_id
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
seconds=${FUZZ_SECONDS:-60}
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(request_body model_id keys_file upstream_answer)
for target in "${targets[@]}"; do
  echo "== $target (${seconds}s)"
  # A scratch copy of the corpus, so new inputs do not pile up in the repository.
  scratch=$(mktemp -d)
  cp -r "fuzz/corpus/$target/." "$scratch/"
  cargo +nightly fuzz run "$target" "$scratch" -- -max_total_time="$seconds" -max_len=4096 2>&1 \
    | grep -E '^(#[0-9]+.*DONE|Done|==[0-9]+==|SUMMARY|artifact_prefix)' || true
  echo "   corpus grew to $(ls "$scratch" | wc -l) inputs"
  rm -rf "$scratch"
done
