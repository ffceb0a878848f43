#!/usr/bin/env bash
# Drain under a steady load: gemini-proxy in front of mock-gemini (each call
# held 200 ms), a steady wrk load of POST /gemini-proxy, and SIGTERM half-way.
# Every request the service accepted must be answered: wrk's read errors and
# timeouts (an accepted request cut) must be 0; connect and write errors after the
# listener closed are expected, and are what a load balancer's readiness check
# and a preStop pause keep away. Loopback only; bounded; stops by itself.
#
#   scripts/drain.sh                 # 8 s of load, SIGTERM after 4 s
#   DURATION=20 CONNECTIONS=200 scripts/drain.sh
#
# Needs wrk (installed with apt-get when missing and running as root).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-8}
CONNECTIONS=${CONNECTIONS:-50}
PROFILE=${PROFILE:-debug}
WORK=$(mktemp -d /tmp/gemini-proxy-drain.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y -qq wrk >/dev/null; else echo "install wrk first" >&2; exit 1; fi
fi
if [ "$PROFILE" = release ]; then
  cargo build --release --workspace --bins --quiet
else
  cargo build --workspace --bins --quiet
fi
BIN="target/$PROFILE"

wait_for_line() { # file pattern
  for _ in $(seq 1 200); do
    if grep -q "$2" "$1" 2>/dev/null; then grep -o "$2" "$1" | head -1; return 0; fi
    sleep 0.05
  done
  echo "timed out waiting for '$2' in $1" >&2; cat "$1" >&2; return 1
}

MOCK_HOST=127.0.0.1 MOCK_PORT=0 MOCK_RECORD=false MOCK_FIRST_BYTE_DELAY_MS=200 \
  "$BIN/mock-gemini" >"$WORK/mock.log" 2>&1 &
PIDS+=($!)
MOCK_URL=$(wait_for_line "$WORK/mock.log" 'http://127\.0\.0\.1:[0-9]*')

printf '[defaults]\nrequests_per_minute = 600000\nburst = 100000\n' >"$WORK/keys.toml"
HOST=127.0.0.1 PORT=0 GEMINI_BASE_URL="$MOCK_URL" GEMINI_API_KEY=drain-server-key \
  API_KEYS=drain-client-key KEYS_FILE="$WORK/keys.toml" DRAIN_TIMEOUT_SECS=30 \
  "$BIN/gemini-proxy" serve >"$WORK/proxy.log" 2>&1 &
PROXY_PID=$!
PIDS+=("$PROXY_PID")
PROXY_URL=$(wait_for_line "$WORK/proxy.log" 'listening on http://127\.0\.0\.1:[0-9]*' | sed 's/listening on //')

cat >"$WORK/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"prompt": "drain me"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-KEY"] = "drain-client-key"
EOF

wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 10s -s "$WORK/post.lua" \
  "$PROXY_URL/gemini-proxy" >"$WORK/wrk.out" 2>&1 &
WRK_PID=$!
sleep $((DURATION / 2))
SIGNALLED=$(date +%s.%N)
kill -TERM "$PROXY_PID"
set +e
wait "$PROXY_PID"
STATUS=$?
set -e
EXITED=$(date +%s.%N)
wait "$WRK_PID" || true

requests=$(awk '/requests in/ {print $1}' "$WORK/wrk.out")
errors=$(grep 'Socket errors' "$WORK/wrk.out" || echo "Socket errors: connect 0, read 0, write 0, timeout 0")
non2xx=$(awk '/Non-2xx/ {print $5}' "$WORK/wrk.out"); non2xx=${non2xx:-0}
read_errors=$(sed -E 's/.*read ([0-9]+).*/\1/' <<<"$errors")
timeouts=$(sed -E 's/.*timeout ([0-9]+).*/\1/' <<<"$errors")
drain=$(python3 -c "print(f'{$EXITED - $SIGNALLED:.2f}')")
echo "load: $CONNECTIONS connections for ${DURATION}s, each call held 200 ms upstream; SIGTERM after $((DURATION / 2)) s"
echo "answered: $requests requests, non-2xx: $non2xx; $errors"
echo "exit status $STATUS, $drain s after SIGTERM"
grep -c 'code=OK' "$WORK/proxy.log" | sed 's/^/access lines with code=OK: /'
if [ "$STATUS" != 0 ] || [ "${read_errors:-0}" != 0 ] || [ "${timeouts:-0}" != 0 ] || [ "$non2xx" != 0 ]; then
  echo "FAIL: requests were lost or refused during the drain" >&2
  exit 1
fi
echo "OK: no request the service accepted was lost"
