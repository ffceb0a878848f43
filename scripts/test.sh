#!/usr/bin/env bash
# The test command of README.md: the whole suite, on stable Rust, loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked --all-targets
