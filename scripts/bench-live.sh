#!/usr/bin/env bash
# Benchmark of the Live API relay: the service's memory with SESSIONS open
# idle sessions, and the latency it adds to a relayed message (loopback).
# Everything runs on loopback and stops by itself.
#
#   scripts/bench-live.sh                 # 1,000 sessions, 1,000 timed turns
#   SESSIONS=200 TURNS=200 scripts/bench-live.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SESSIONS=${SESSIONS:-1000}
TURNS=${TURNS:-1000}
WORK=$(mktemp -d /tmp/gemini-proxy-bench-live.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  sleep 0.3
  rm -rf "$WORK"
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || true

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MOCK_PORT=$(free_port); PROXY_PORT=$(free_port)

echo "building the release binaries..." >&2
cargo build --release --locked --bin gemini-proxy --example live_bench >/dev/null 2>&1
cargo build --release --locked -p gemini-mock --bin mock-gemini >/dev/null 2>&1

MOCK_PORT=$MOCK_PORT MOCK_WORKERS=1 taskset -c 1 target/release/mock-gemini >"$WORK/mock.log" 2>&1 &
PIDS+=($!)
mkdir -p "$WORK/config"
cat > "$WORK/config/keys.toml" <<KEYS
[[client]]
name = "bench"
key = "bench-client-key"
requests_per_minute = 4000000000
burst = 4000000000
KEYS
GEMINI_BASE_URL="http://127.0.0.1:$MOCK_PORT" GEMINI_API_KEY=server-key KEYS_FILE="$WORK/config/keys.toml" \
  HOST=127.0.0.1 PORT=$PROXY_PORT WORKERS=1 LOG_LEVEL=warn \
  taskset -c 0 target/release/gemini-proxy serve 2>"$WORK/proxy.log" &
PROXY_PID=$!
PIDS+=("$PROXY_PID")
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$PROXY_PORT/health" >/dev/null 2>&1 && break; sleep 0.05; done
IDLE_RSS=$(awk '/VmRSS/ {print $2}' "/proc/$PROXY_PID/status")

# The example waits on stdin once its sessions are open; the RSS is read then.
coproc BENCH { PROXY="http://127.0.0.1:$PROXY_PORT" MOCK="http://127.0.0.1:$MOCK_PORT" KEY=bench-client-key \
  SESSIONS=$SESSIONS TURNS=$TURNS taskset -c 1 target/release/examples/live_bench; }
BENCH_CHILD=$BENCH_PID
read -r opened <&"${BENCH[0]}"
sleep 1
OPEN_RSS=$(awk '/VmRSS/ {print $2}' "/proc/$PROXY_PID/status")
PEAK_RSS=$(awk '/VmHWM/ {print $2}' "/proc/$PROXY_PID/status")
echo >&"${BENCH[1]}"
RESULTS=$(cat <&"${BENCH[0]}")
grep -v "gemini_proxy::access" "$WORK/proxy.log" | tail -5 >&2 || true
wait "$BENCH_CHILD" 2>/dev/null || true

echo "Machine: $(nproc) cores, $(uname -r); the service pinned to core 0, the mock and the client to core 1."
echo "$opened."
echo "Service RSS: idle $((IDLE_RSS / 1024)) MB; with $SESSIONS open idle sessions $((OPEN_RSS / 1024)) MB (peak $((PEAK_RSS / 1024)) MB), $(( (OPEN_RSS - IDLE_RSS) / SESSIONS )) KB a session."
echo "$RESULTS"
