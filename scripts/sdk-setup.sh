#!/usr/bin/env bash
# Installs the real SDKs that tests/api/sdk.rs runs against the service:
# a Python venv with tests/sdk/requirements.txt and tests/sdk/node_modules.
# Idempotent: a second run that finds both up to date does nothing and prints nothing.
set -euo pipefail
cd "$(dirname "$0")/../tests/sdk"

# A stamp holding the requirements' checksum tells an up-to-date venv from a stale one.
req_sum="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [[ ! -x .venv/bin/python || "$(cat .venv/.requirements.sha256 2>/dev/null)" != "$req_sum" ]]; then
    echo "sdk-setup: installing the Python SDKs into tests/sdk/.venv"
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
    echo "$req_sum" > .venv/.requirements.sha256
fi

# The manifest and the lock file (absent before the first install) decide whether to reinstall.
node_sum() { cat package.json package-lock.json 2>/dev/null | sha256sum | cut -d' ' -f1 || true; }
lock_sum="$(node_sum)"
if [[ ! -d node_modules || "$(cat node_modules/.lock.sha256 2>/dev/null)" != "$lock_sum" ]]; then
    echo "sdk-setup: installing the Node SDK into tests/sdk/node_modules"
    if [[ -f package-lock.json ]]; then
        npm ci --silent --no-audit --no-fund
    else
        npm install --silent --no-audit --no-fund
    fi
    node_sum > node_modules/.lock.sha256
fi
