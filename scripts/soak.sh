#!/usr/bin/env bash
# Soak test: gemini-proxy (release) in front of mock-gemini, under a fixed-rate
# mix of valid, invalid, rate-limited and upstream-failing requests while the
# keys file is rewritten every few seconds; then checks that every request was
# answered, no connection was reset, the service caused no 5xx, the mock saw
# exactly the upstream attempts the proxy counted, and memory and file
# descriptors stayed flat. Loopback only, bounded in time, stops by itself and
# stops only the processes it started. Exits non-zero when a check fails.
#
#   scripts/soak.sh                    # 5 minutes at 200 requests/s
#   SOAK_MINUTES=2 scripts/soak.sh     # shorter
#
# SOAK_MINUTES (5), SOAK_RATE (200 requests/s), SOAK_RELOAD_SECS (3),
# SOAK_MAX_RSS_SLOPE (1.0 MB/min over the second half), SOAK_KEEP (set: keep
# the work directory with the logs).
set -euo pipefail
cd "$(dirname "$0")/.."

SOAK_MINUTES=${SOAK_MINUTES:-5}
SOAK_RATE=${SOAK_RATE:-200}
SOAK_RELOAD_SECS=${SOAK_RELOAD_SECS:-3}
SOAK_MAX_RSS_SLOPE=${SOAK_MAX_RSS_SLOPE:-1.0}
ROOT=$(pwd)
WORK=$(mktemp -d /tmp/gemini-proxy-soak.XXXXXX)
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "${SOAK_KEEP:-}" ]; then echo "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# Waits (bounded) until file $1 holds a line matching $2; prints the match.
wait_for_line() {
  for _ in $(seq 1 200); do
    if line=$(grep -m1 -o "$2" "$1" 2>/dev/null); then echo "$line"; return 0; fi
    sleep 0.05
  done
  echo "timed out waiting for '$2' in $1:" >&2; cat "$1" >&2; return 1
}

cargo build --release --workspace --bins --quiet

random_key() { python3 -c "import secrets; print('$1' + secrets.token_urlsafe(24).replace('-', 'x').replace('_', 'y'))"; }
KEYS=$(printf '{"main":"%s","limited":"%s","extra":"%s","own":"%s"}' \
  "$(random_key cli-)" "$(random_key cli-)" "$(random_key cli-)" "$(random_key AIza)")
SERVER_KEY=$(random_key AIza)

MOCK_HOST=127.0.0.1 MOCK_PORT=0 MOCK_RECORD=false MOCK_WORKERS=1 \
  "$ROOT/target/release/mock-gemini" >"$WORK/mock.log" 2>&1 &
PIDS+=($!)
MOCK_URL=$(wait_for_line "$WORK/mock.log" 'http://127\.0\.0\.1:[0-9]*')

python3 scripts/soak.py --keys "$KEYS" --print-keys-file >"$WORK/keys.toml"
# Run in the work directory, so no .env of the checkout is read.
(cd "$WORK" && exec env -i PATH="$PATH" HOST=127.0.0.1 PORT=0 \
  GEMINI_API_KEY="$SERVER_KEY" GEMINI_BASE_URL="$MOCK_URL" KEYS_FILE="$WORK/keys.toml" \
  RUST_LOG=warn,gemini_proxy::startup=info \
  "$ROOT/target/release/gemini-proxy" >"$WORK/proxy.log" 2>&1) &
PROXY_PID=$!
PIDS+=($PROXY_PID)
PROXY_URL=$(wait_for_line "$WORK/proxy.log" 'http://127\.0\.0\.1:[0-9]*')
echo "mock-gemini on $MOCK_URL, gemini-proxy (PID $PROXY_PID) on $PROXY_URL"

status=0
timeout "$(python3 -c "print(int($SOAK_MINUTES * 60 + 120))")" \
  python3 scripts/soak.py --keys "$KEYS" --proxy "${PROXY_URL#http://}" --mock "${MOCK_URL#http://}" \
  --pid "$PROXY_PID" --keys-file "$WORK/keys.toml" --minutes "$SOAK_MINUTES" --rate "$SOAK_RATE" \
  --reload-every "$SOAK_RELOAD_SECS" --max-rss-slope "$SOAK_MAX_RSS_SLOPE" || status=$?

if kill -0 "$PROXY_PID" 2>/dev/null; then :; else echo "gemini-proxy died:" >&2; tail -20 "$WORK/proxy.log" >&2; status=1; fi
if grep -E ' (ERROR|WARN) ' "$WORK/proxy.log" | grep -v 'keys reload' | head -5 | grep -q .; then
  echo "warnings or errors in the proxy log (first 5):"; grep -E ' (ERROR|WARN) ' "$WORK/proxy.log" | head -5
fi
exit $status
