#!/usr/bin/env bash
# Benchmark: what gemini-proxy adds over the floor (a bare nginx proxy_pass) in
# front of the same canned upstream. Everything runs on loopback, bounded in
# time, and stops by itself; the proxy under test (and the nginx floor) are
# pinned to core 0, the load generator and the canned upstream to core 1.
#
#   scripts/bench.sh              # the full run (about 4 minutes)
#   DURATION=5 scripts/bench.sh   # shorter runs
#   ONLY=tls scripts/bench.sh     # the upstream over TLS: HTTP/2, and HTTP/1.1 for
#                                 # comparison, with upstream connections counted
#   TLS_ONLY=200ms ONLY=tls ...   # of those, one scenario (instant, 200ms)
#   ONLY=tls10k scripts/bench.sh  # of those, the 1 s upstream with 10,000 in flight
#                                 # (H2_ONLY=1: over HTTP/2 alone; H2_ONLY=h2c: only
#                                 # the calls that come over cleartext HTTP/2 too)
#   BENCH_UPSTREAM_LOG=/tmp/up.log ...   # keep the upstream nginx's log, at level info
#   BENCH_WRAP=heaptrack H2_ONLY=h2c ONLY=tls10k scripts/bench.sh
#                                 # the proxy under a profiler (its RSS is then the
#                                 # wrapper's); heaptrack writes one file per row,
#                                 # heaptrack.gemini-proxy.PID.zst, in the checkout
#
# Needs nginx-light, libnginx-mod-http-echo, wrk and h2load (nghttp2-client;
# installed with apt-get when missing and running as root). Prints a Markdown
# table.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
ROOT=$(pwd)
WORK=$(mktemp -d /tmp/gemini-proxy-bench.XXXXXX)
PIDS=()

cleanup() {
  for key in "${!SAVED[@]}"; do sysctl -qw "$key=${SAVED[$key]}" || true; done
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pidfile in "$WORK"/*.pid; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  sleep 0.3
  [ -n "${BENCH_UPSTREAM_LOG:-}" ] && cp "$WORK/upstream.err" "$BENCH_UPSTREAM_LOG"
  rm -rf "$WORK"
}
trap cleanup EXIT

need() {
  command -v nginx >/dev/null && command -v wrk >/dev/null && command -v h2load >/dev/null \
    && [ -f /usr/lib/nginx/modules/ngx_http_echo_module.so ] && return
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq nginx-light libnginx-mod-http-echo wrk nghttp2-client >/dev/null
  else
    echo "install nginx-light libnginx-mod-http-echo wrk nghttp2-client first" >&2; exit 1
  fi
}
need
ulimit -n 200000 2>/dev/null || ulimit -n 65536 2>/dev/null || true
# 10,000 connections opened at once overflow the default accept queues (4096
# here), which turns a load test into a SYN-retransmission test. Raised for
# the run when root, and put back afterwards.
SYSCTLS=(net.core.somaxconn net.ipv4.tcp_max_syn_backlog)
declare -A SAVED
if [ "$(id -u)" = 0 ]; then
  for key in "${SYSCTLS[@]}"; do SAVED[$key]=$(sysctl -n "$key"); sysctl -qw "$key=65535" || true; done
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

UP_FAST=$(free_port); UP_SLOW=$(free_port); UP_SECOND=$(free_port); FLOOR=$(free_port); PROXY=$(free_port)
# The same answers over TLS: HTTP/2 (as Google's front end speaks it, 100
# streams a connection) and, for the 1 s upstream, HTTP/1.1 for comparison.
TLS_FAST=$(free_port); TLS_SLOW=$(free_port); TLS_SECOND=$(free_port); TLS1_SECOND=$(free_port)
# The 200 ms one again, ending each connection after 1,000 requests with
# GOAWAY (nginx's default keepalive_requests; servers rotate connections).
TLS_ROTATING=$(free_port)
mkdir -p "$WORK/tls"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=bench CA" \
  -keyout "$WORK/tls/ca.key" -out "$WORK/tls/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
  -keyout "$WORK/tls/server.key" -out "$WORK/tls/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' > "$WORK/tls/san.ext"
openssl x509 -req -in "$WORK/tls/server.csr" -CA "$WORK/tls/ca.pem" -CAkey "$WORK/tls/ca.key" \
  -CAcreateserial -days 2 -extfile "$WORK/tls/san.ext" -out "$WORK/tls/server.pem" 2>/dev/null

# A real-sized generateContent answer (docs/gemini-wire.md#generatecontent), and a 3-event SSE stream.
ANSWER='{"candidates": [{"content": {"parts": [{"text": "The capital of France is Paris."}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 8,"candidatesTokenCount": 7,"totalTokenCount": 15},"modelVersion": "gemini-2.5-flash","responseId": "IZI2acSKMoWl0-kPmYj2yQc"}'
EVENT1='data: {"candidates": [{"content": {"parts": [{"text": "The capital"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 8,"candidatesTokenCount": 2,"totalTokenCount": 10},"modelVersion": "gemini-2.5-flash"}\r\n\r\n'
EVENT2='data: {"candidates": [{"content": {"parts": [{"text": " of France is"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 8,"candidatesTokenCount": 5,"totalTokenCount": 13},"modelVersion": "gemini-2.5-flash"}\r\n\r\n'
EVENT3='data: {"candidates": [{"content": {"parts": [{"text": " Paris."}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 8,"candidatesTokenCount": 7,"totalTokenCount": 15},"modelVersion": "gemini-2.5-flash"}\r\n\r\n'

upstream_server() { # port delay [h2|h1 over TLS] [more directives]
  local sleep="" listen="listen 127.0.0.1:$1 backlog=65535;"
  [ "$2" != 0 ] && sleep="echo_sleep $2;"
  case "${3:-}" in
    h2) listen="listen 127.0.0.1:$1 ssl http2 backlog=65535; http2_max_concurrent_streams 100;" ;;
    h1) listen="listen 127.0.0.1:$1 ssl backlog=65535;" ;;
  esac
  [ -n "${3:-}" ] && listen="$listen ssl_certificate $WORK/tls/server.pem; ssl_certificate_key $WORK/tls/server.key;"
  listen="$listen ${4:-}"
  cat <<EOF
  server {
    $listen
    location ~ :streamGenerateContent\$ {
      default_type text/event-stream;
      $sleep
      echo -n '$EVENT1'; echo_flush;
      echo -n '$EVENT2'; echo_flush;
      echo -n '$EVENT3';
    }
    location / {
      default_type application/json;
      $sleep
      echo -n '$ANSWER';
    }
  }
EOF
}

UPSTREAM_LOG_LEVEL=warn
[ -n "${BENCH_UPSTREAM_LOG:-}" ] && UPSTREAM_LOG_LEVEL=info
cat > "$WORK/upstream.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_http_echo_module.so;
worker_processes 1;
worker_rlimit_nofile 100000;
pid $WORK/upstream.pid;
error_log $WORK/upstream.err $UPSTREAM_LOG_LEVEL;
events { worker_connections 60000; multi_accept on; }
http {
  access_log off;
  keepalive_requests 10000000;
  client_body_buffer_size 64k;
  client_max_body_size 32m;
$(upstream_server "$UP_FAST" 0)
$(upstream_server "$UP_SLOW" 0.2)
$(upstream_server "$UP_SECOND" 1)
$(upstream_server "$TLS_FAST" 0 h2)
$(upstream_server "$TLS_SLOW" 0.2 h2)
$(upstream_server "$TLS_ROTATING" 0.2 h2 "keepalive_requests 1000;")
$(upstream_server "$TLS_SECOND" 1 h2)
$(upstream_server "$TLS1_SECOND" 1 h1)
}
EOF

floor_conf() { # upstream-port [tls]
  local scheme=http tls=""
  if [ -n "${2:-}" ]; then
    scheme=https
    tls="proxy_ssl_trusted_certificate $WORK/tls/ca.pem; proxy_ssl_verify on; proxy_ssl_name 127.0.0.1; proxy_ssl_session_reuse on;"
  fi
  cat > "$WORK/floor.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile 100000;
pid $WORK/floor.pid;
error_log $WORK/floor.err warn;
events { worker_connections 60000; multi_accept on; }
http {
  access_log $WORK/floor.access.log combined buffer=64k;
  keepalive_requests 10000000;
  upstream gemini { server 127.0.0.1:$1; keepalive 1024; }
  server {
    listen 127.0.0.1:$FLOOR backlog=65535;
    location / {
      $tls
      proxy_pass $scheme://gemini;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
EOF
}

# The keys file in a directory of its own: the service watches that directory,
# and the proxy's log is written beside the other files here.
mkdir -p "$WORK/config"
cat > "$WORK/config/keys.toml" <<EOF
[[client]]
name = "bench"
key = "bench-client-key"
requests_per_minute = 4000000000
burst = 4000000000

# The same, with all three quotas (set too high to refuse): what the quota
# check and the charge cost a request.
[[client]]
name = "bench-quota"
key = "bench-quota-key"
requests_per_minute = 4000000000
burst = 4000000000
tokens_per_minute = 1000000000000000
requests_per_day = 1000000000000000
tokens_per_day = 1000000000000000
EOF

body='{"contents":[{"role":"user","parts":[{"text":"What is the capital of France?"}]}]}'
lua() { # file path body headers...
  local file=$1 path=$2 payload=$3; shift 3
  {
    echo 'wrk.method = "POST"'
    printf 'wrk.path = "%s"\n' "$path"
    printf "wrk.body = '%s'\n" "$payload"
    echo 'wrk.headers["Content-Type"] = "application/json"'
    for h in "$@"; do printf 'wrk.headers["%s"] = "%s"\n' "${h%%:*}" "${h#*: }"; done
  } > "$file"
}
NATIVE=/v1beta/models/gemini-2.5-flash:generateContent
STREAM='/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse'
lua "$WORK/direct.lua" "$NATIVE" "$body" "x-goog-api-key: server-key"
lua "$WORK/stream-direct.lua" "$STREAM" "$body" "x-goog-api-key: server-key"
lua "$WORK/proxy.lua" /gemini-proxy '{"prompt":"What is the capital of France?"}' "X-API-KEY: bench-client-key"
lua "$WORK/native.lua" "$NATIVE" "$body" "x-goog-api-key: bench-client-key"
lua "$WORK/stream.lua" "$STREAM" "$body" "x-goog-api-key: bench-client-key"
lua "$WORK/proxy-quota.lua" /gemini-proxy '{"prompt":"What is the capital of France?"}' "X-API-KEY: bench-quota-key"
lua "$WORK/native-quota.lua" "$NATIVE" "$body" "x-goog-api-key: bench-quota-key"
# A 150 KB inline image (200 KB of base64, under the old 256 KiB body limit, so
# the row compares with earlier versions): a body that names no resource, which
# the resource check must not parse.
image_body=$(python3 -c 'import base64,random; r=random.Random(7); d=base64.b64encode(bytes(r.randrange(256) for _ in range(150000))).decode(); print("{\"contents\":[{\"role\":\"user\",\"parts\":[{\"inlineData\":{\"mimeType\":\"image/png\",\"data\":\"%s\"}},{\"text\":\"describe\"}]}]}" % d)')
lua "$WORK/native-image.lua" "$NATIVE" "$image_body" "x-goog-api-key: bench-client-key"

echo "building the release binary..." >&2
cargo build --release --locked --bin gemini-proxy >/dev/null 2>&1
taskset -c 1 nginx -c "$WORK/upstream.conf" -p "$WORK" -e "$WORK/upstream.err"
sleep 0.3

ticks() { # pids... -> utime+stime in clock ticks
  local total=0
  for pid in "$@"; do
    read -r -a f < "/proc/$pid/stat"
    total=$((total + f[13] + f[14]))
  done
  echo "$total"
}
hwm_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
HZ=$(getconf CLK_TCK)

start_proxy() { # upstream-port [https]
  GEMINI_BASE_URL="${2:-http}://127.0.0.1:$1" GEMINI_API_KEY=server-key KEYS_FILE="$WORK/config/keys.toml" \
    UPSTREAM_CA_FILE="$WORK/tls/ca.pem" \
    HOST=127.0.0.1 PORT=$PROXY WORKERS=1 LOG_LEVEL=info UPSTREAM_TIMEOUT_SECS=30 RUST_LOG=${BENCH_RUST_LOG:-} \
    taskset -c 0 ${BENCH_WRAP:-} "$ROOT/target/release/gemini-proxy" serve 2>"$WORK/proxy.log" &
  PROXY_PID=$!
  PIDS+=("$PROXY_PID")
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$PROXY/health" >/dev/null 2>&1 && return; sleep 0.05; done
  echo "the proxy did not start" >&2; cat "$WORK/proxy.log" >&2; exit 1
}
stop_proxy() {
  if [ -n "${BENCH_WRAP:-}" ]; then
    # The proxy is the wrapper's child, and a wrapper may not pass a signal
    # on (heaptrack's dies, leaving the proxy holding the port for the next
    # row, and its own writers unfinished): the proxy alone is stopped, and
    # the wrapper ends by itself once it has written its data.
    pkill -TERM -x gemini-proxy -P "$PROXY_PID"
  else
    kill "$PROXY_PID"
  fi
  wait "$PROXY_PID" 2>/dev/null || true
  # Codes other than OK, from the access log, so a failed run says why.
  grep -o 'code=[A-Z_]*' "$WORK/proxy.log" | grep -v 'code=OK' | sort | uniq -c | sed 's/^/    /' >&2 || true
  grep -v 'gemini_proxy::access' "$WORK/proxy.log" | grep -E 'WARN|ERROR|DEBUG' | sed 's/^[^ ]* //' | sort | uniq -c | sort -rn | head -5 | sed 's/^/    /' >&2 || true
  : > "$WORK/proxy.log"
}
start_floor() { floor_conf "$1" "${2:-}"; taskset -c 0 nginx -c "$WORK/floor.conf" -p "$WORK" -e "$WORK/floor.err"; sleep 0.3; }
stop_floor() { kill "$(cat "$WORK/floor.pid")"; sleep 0.3; }
floor_pids() { pgrep -f "nginx.*$WORK/floor.conf" | tr '\n' ' '; pgrep -P "$(cat "$WORK/floor.pid")" | tr '\n' ' '; }

ROWS=()
TLS_ROWS=()
# The most established connections to the upstream port during a run
# (UPSTREAM_PORT set), sampled every half second.
sample_upstream() { # port file
  local most=0 now
  while [ -e "$2.run" ]; do
    now=$(ss -Htn state established "( dport = :$1 )" 2>/dev/null | wc -l)
    [ "$now" -gt "$most" ] && most=$now
    echo "$most" > "$2"
    sleep 0.5
  done
}
# measure label connections url lua [pids to account]
measure() {
  local label=$1 conns=$2 url=$3 script=$4; shift 4
  local pids=("$@") before=0 after=0
  [ ${#pids[@]} -gt 0 ] && before=$(ticks "${pids[@]}")
  local threads=2
  local out upstream_conns="-"
  if [ -n "${UPSTREAM_PORT:-}" ]; then
    touch "$WORK/conns.run"; echo 0 > "$WORK/conns"
    sample_upstream "$UPSTREAM_PORT" "$WORK/conns" &
    local sampler=$!
  fi
  out=$(taskset -c 1 wrk -t"$threads" -c"$conns" -d"${DURATION}s" --timeout 10s --latency -s "$script" "$url" 2>&1)
  [ ${#pids[@]} -gt 0 ] && after=$(ticks "${pids[@]}")
  if [ -n "${UPSTREAM_PORT:-}" ]; then
    rm -f "$WORK/conns.run"; wait "$sampler" 2>/dev/null || true
    upstream_conns=$(cat "$WORK/conns")
  fi
  local rps p50 p99 total errors non2xx cpu rss
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  total=$(awk '/requests in/ {print $1}' <<<"$out")
  errors=$(awk -F'[ ,]+' '/Socket errors/ {print $4+$6+$8+$10}' <<<"$out"); errors=${errors:-0}
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out"); non2xx=${non2xx:-0}
  if [ ${#pids[@]} -gt 0 ] && [ "${total:-0}" -gt 0 ]; then
    cpu=$(python3 -c "print(f'{($after-$before)/$HZ/$total*1e6:.1f}')")
    rss=$(( $(for p in "${pids[@]}"; do hwm_kb "$p"; done | sort -n | tail -1) / 1024 ))
  else
    cpu="-"; rss="-"
  fi
  if [ -n "${UPSTREAM_PORT:-}" ]; then
    TLS_ROWS+=("| $label | $conns | $rps | $p50 | $p99 | $cpu | $rss | $upstream_conns | $errors | $non2xx |")
  else
    ROWS+=("| $label | $conns | $rps | $p50 | $p99 | $cpu | $rss | $errors | $non2xx |")
  fi
  echo "  $label c=$conns: $rps req/s, p50 $p50, p99 $p99, cpu/req ${cpu}µs, peak RSS ${rss} MB, upstream connections $upstream_conns, errors $errors, non-2xx $non2xx" >&2
}

# measure_h2c label clients streams-per-client path body-file header...: like
# measure, with h2load speaking cleartext HTTP/2 (prior knowledge) to the
# proxy, so calls in flight share client connections as they do upstream.
measure_h2c() {
  local label=$1 clients=$2 streams=$3 path=$4 data=$5; shift 5
  local headers=() h
  for h in "$@"; do headers+=(-H "$h"); done
  local before after out upstream_conns="-"
  before=$(ticks "$PROXY_PID")
  touch "$WORK/conns.run"; echo 0 > "$WORK/conns"
  sample_upstream "$UPSTREAM_PORT" "$WORK/conns" &
  local sampler=$!
  out=$(taskset -c 1 h2load -c"$clients" -m"$streams" -t2 -D"$DURATION" -T10 -d "$data" \
    -H 'content-type: application/json' "${headers[@]}" "http://127.0.0.1:$PROXY$path" 2>&1)
  after=$(ticks "$PROXY_PID")
  rm -f "$WORK/conns.run"; wait "$sampler" 2>/dev/null || true
  upstream_conns=$(cat "$WORK/conns")
  local rps total mean max non2xx errors cpu rss
  rps=$(awk '/^finished in/ {print $4}' <<<"$out")
  read -r total errors < <(awk '/^requests:/ {print $8, $12+$14+$16}' <<<"$out")
  non2xx=$(awk '/^status codes:/ {print $5+$7+$9}' <<<"$out")
  mean=$(awk '/^time for request:/ {print $6}' <<<"$out")
  max=$(awk '/^time for request:/ {print $5}' <<<"$out")
  if [ "${total:-0}" -gt 0 ]; then
    cpu=$(python3 -c "print(f'{($after-$before)/$HZ/$total*1e6:.1f}')")
  else
    cpu="-"
  fi
  rss=$(( $(hwm_kb "$PROXY_PID") / 1024 ))
  TLS_ROWS+=("| $label | $clients × $streams | $rps | mean $mean | max $max | $cpu | $rss | $upstream_conns | ${errors:-?} | ${non2xx:-?} |")
  echo "  $label c=$clients×$streams: $rps req/s, mean $mean, max $max, cpu/req ${cpu}µs, peak RSS ${rss} MB, upstream connections $upstream_conns, errors $errors, non-2xx $non2xx" >&2
}
printf '%s' '{"prompt":"What is the capital of France?"}' > "$WORK/proxy-body.json"
printf '%s' "$body" > "$WORK/native-body.json"

# ONLY=instant: the instant-upstream rows alone (a quick before/after check);
# ONLY=10k: the 1 s upstream row alone.
ONLY=${ONLY:-all}
for scenario in "instant:$UP_FAST:64" "200ms:$UP_SLOW:1000"; do
  [ "$ONLY" = 10k ] && break
  [ "$ONLY" = tls ] && break
  [ "$ONLY" = tls10k ] && break
  [ "$ONLY" = instant ] && [ "${scenario%%:*}" != instant ] && continue
  IFS=: read -r name port conns <<<"$scenario"
  echo "scenario: $name upstream, $conns connections" >&2
  ROWS+=("| **$name upstream** | | | | | | | | |")
  measure "(a) direct to upstream" "$conns" "http://127.0.0.1:$port" "$WORK/direct.lua"
  start_floor "$port"
  # shellcheck disable=SC2046
  measure "(b) nginx floor" "$conns" "http://127.0.0.1:$FLOOR" "$WORK/direct.lua" $(floor_pids)
  stop_floor
  start_proxy "$port"
  [ "$name" = instant ] && IDLE_RSS=$(( $(rss_kb "$PROXY_PID") / 1024 ))
  measure "(c) POST /gemini-proxy" "$conns" "http://127.0.0.1:$PROXY" "$WORK/proxy.lua" "$PROXY_PID"
  measure "(d) native generateContent" "$conns" "http://127.0.0.1:$PROXY" "$WORK/native.lua" "$PROXY_PID"
  measure "(e) streamed (SSE)" "$conns" "http://127.0.0.1:$PROXY" "$WORK/stream.lua" "$PROXY_PID"
  if [ "$name" = instant ]; then
    measure "(f) (c) by a client with quotas" "$conns" "http://127.0.0.1:$PROXY" "$WORK/proxy-quota.lua" "$PROXY_PID"
    measure "(g) (d) by a client with quotas" "$conns" "http://127.0.0.1:$PROXY" "$WORK/native-quota.lua" "$PROXY_PID"
    measure "(h) (d) with a 150 KB inline image" "$conns" "http://127.0.0.1:$PROXY" "$WORK/native-image.lua" "$PROXY_PID"
    RSS_FIRST=$(( $(rss_kb "$PROXY_PID") / 1024 ))
    measure "(c) again, RSS check" "$conns" "http://127.0.0.1:$PROXY" "$WORK/proxy.lua" "$PROXY_PID"
    RSS_SECOND=$(( $(rss_kb "$PROXY_PID") / 1024 ))
  fi
  stop_proxy
done

# Each request in flight holds two sockets in the proxy (client and upstream:
# awc opens one connection per request in flight), so the connection count
# is capped to fit the file-descriptor limit, and the table says so.
FD_LIMIT=$(ulimit -n)
MANY=${MANY:-10000}
# Over HTTP/2 the calls share a few upstream connections: one socket a call.
MANY_H2=$MANY
[ $((MANY_H2 + 400)) -gt "$FD_LIMIT" ] && MANY_H2=$((FD_LIMIT - 400))
if [ $((MANY * 2 + 200)) -gt "$FD_LIMIT" ]; then
  MANY=$(( (FD_LIMIT - 200) / 2 ))
  echo "note: open-file limit $FD_LIMIT (hard limit $(ulimit -Hn)) caps the run at $MANY connections" >&2
fi
if [ "$ONLY" = all ] || [ "$ONLY" = tls ] || [ "$ONLY" = tls10k ]; then
  for scenario in "instant:$TLS_FAST:64" "200ms:$TLS_SLOW:1000"; do
    IFS=: read -r name port conns <<<"$scenario"
    [ "$ONLY" = tls10k ] && break
    [ "${TLS_ONLY:-$name}" != "$name" ] && continue
    echo "scenario: $name upstream over TLS + HTTP/2, $conns connections" >&2
    TLS_ROWS+=("| **$name upstream, TLS + HTTP/2** | | | | | | | | | |")
    UPSTREAM_PORT=$port
    start_floor "$port" tls
    # shellcheck disable=SC2046
    measure "(b) nginx floor (TLS, HTTP/1.1 upstream)" "$conns" "http://127.0.0.1:$FLOOR" "$WORK/direct.lua" $(floor_pids)
    stop_floor
    start_proxy "$port" https
    measure "(c) POST /gemini-proxy" "$conns" "http://127.0.0.1:$PROXY" "$WORK/proxy.lua" "$PROXY_PID"
    measure "(d) native generateContent" "$conns" "http://127.0.0.1:$PROXY" "$WORK/native.lua" "$PROXY_PID"
    measure "(e) streamed (SSE)" "$conns" "http://127.0.0.1:$PROXY" "$WORK/stream.lua" "$PROXY_PID"
    stop_proxy
    if [ "$name" = 200ms ]; then
      UPSTREAM_PORT=$TLS_ROTATING
      start_proxy "$TLS_ROTATING" https
      measure "(c) an upstream that ends each connection after 1,000 requests" "$conns" "http://127.0.0.1:$PROXY" "$WORK/proxy.lua" "$PROXY_PID"
      stop_proxy
    fi
    UPSTREAM_PORT=
  done
fi

if [ "$ONLY" != instant ]; then
  if [ "$ONLY" != 10k ]; then
    for scenario in "TLS + HTTP/2:$TLS_SECOND:$MANY_H2" "TLS + HTTP/1.1:$TLS1_SECOND:$MANY"; do
      IFS=: read -r name port conns <<<"$scenario"
      [ -n "${H2_ONLY:-}" ] && [ "$port" != "$TLS_SECOND" ] && continue
      [ -n "${TLS_ONLY:-}" ] && continue
      echo "scenario: 1 s upstream over $name, $conns connections" >&2
      TLS_ROWS+=("| **1 s upstream, $name** | | | | | | | | | |")
      UPSTREAM_PORT=$port
      if [ "${H2_ONLY:-}" != h2c ]; then
        start_proxy "$port" https
        measure "(c) POST /gemini-proxy" "$conns" "http://127.0.0.1:$PROXY" "$WORK/proxy.lua" "$PROXY_PID"
        stop_proxy
      fi
      if [ "$port" = "$TLS_SECOND" ]; then
        # The same 10,000 calls from an application server that multiplexes
        # them: 100 cleartext HTTP/2 connections of 100 streams each.
        start_proxy "$port" https
        measure_h2c "(c) over cleartext HTTP/2 from the client" 100 100 /gemini-proxy "$WORK/proxy-body.json" \
          "x-api-key: bench-client-key"
        stop_proxy
        # The SDKs' route, the same way (a fresh process: peak RSS is per row).
        start_proxy "$port" https
        measure_h2c "(d) native generateContent, over cleartext HTTP/2" 100 100 "$NATIVE" "$WORK/native-body.json" \
          "x-goog-api-key: bench-client-key"
        stop_proxy
      fi
      UPSTREAM_PORT=
    done
  fi
fi

if [ "$ONLY" != instant ] && [ "$ONLY" != tls ] && [ "$ONLY" != tls10k ]; then
  echo "scenario: 1 s upstream, $MANY connections" >&2
  ROWS+=("| **1 s upstream** | | | | | | | | |")
  start_proxy "$UP_SECOND"
  measure "(c) POST /gemini-proxy" "$MANY" "http://127.0.0.1:$PROXY" "$WORK/proxy.lua" "$PROXY_PID"
  stop_proxy
fi

echo
echo "Machine: $(nproc) cores, $(awk '/model name/ {$1=$2=$3=""; print; exit}' /proc/cpuinfo | sed 's/^ *//'), $(uname -r); runs of ${DURATION}s; proxy pinned to core 0, wrk and upstream to core 1."
echo
echo "| target | connections | req/s | p50 | p99 | CPU µs/req | peak RSS MB | socket errors | non-2xx |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo
if [ ${#TLS_ROWS[@]} -gt 0 ]; then
  echo
  echo "The upstream over TLS (a certificate of a CA of the run's own, trusted through UPSTREAM_CA_FILE); upstream connections are the most established at once during the run:"
  echo
  echo "| target | connections | req/s | p50 | p99 | CPU µs/req | peak RSS MB | upstream connections | socket errors | non-2xx |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${TLS_ROWS[@]}"
fi
echo
echo "Idle RSS: ${IDLE_RSS:-?} MB. RSS after the first instant-upstream run of (c): ${RSS_FIRST:-?} MB, after a second identical run: ${RSS_SECOND:-?} MB. Open-file limit: $FD_LIMIT."
