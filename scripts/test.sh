#!/usr/bin/env bash
# The test command of README.md: the whole suite, on stable Rust, loopback only.
# Installs the real SDKs the suite drives (a Python venv and node_modules under
# tests/sdk/, from PyPI and npm) the first time; later runs reuse them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/sdk-setup.sh
# With the SDKs installed, their tests must run rather than skip.
export REQUIRE_SDK_TESTS=1
cargo test --locked --workspace --all-targets
