#!/usr/bin/env python3
"""Soak load for gemini-proxy: the client half of scripts/soak.sh.

Sends a fixed rate of mixed requests (valid, invalid, rate-limited, upstream
failures) over keep-alive connections for a fixed time, rewrites the keys file
every few seconds, samples the proxy's RSS and open file descriptors every 10 s,
then checks the books: every request answered, no connection reset, no 5xx the
service caused itself, and upstream calls seen by the mock equal to the attempts
the proxy counted. Prints a report; exits 1 when a check fails.

Standard library only; loopback only. Run by scripts/soak.sh, which starts the
processes and passes their addresses and PIDs.
"""

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections import Counter

# Keep-alive connections the load runs on; the rate, not this, sets the load.
CONNECTIONS = 32
# actix closes idle keep-alive connections after 5 s: reconnect before that,
# so an idle close never races a request (that race is the client's, not the
# service's).
IDLE_RECONNECT_SECS = 4.0
# A request that takes longer than this counts as unanswered.
REQUEST_TIMEOUT_SECS = 30.0
SAMPLE_EVERY_SECS = 10.0


def keys_file(version, keys):
    """Two valid versions: the same clients with the same limits (so buckets
    survive a reload) and an extra client that comes and goes."""
    text = (
        "[defaults]\nrequests_per_minute = 60\nburst = 10\n\n"
        f'[[client]]\nname = "soak-main"\nkey = "{keys["main"]}"\n'
        "requests_per_minute = 6000000\nburst = 100000\n\n"
        f'[[client]]\nname = "soak-limited"\nkey = "{keys["limited"]}"\n'
        "requests_per_minute = 30\nburst = 2\n"
    )
    if version == 1:
        text += f'\n[[client]]\nname = "soak-extra"\nkey = "{keys["extra"]}"\n'
    return text


def request_bytes(method, path, headers, body=b""):
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def build_classes(keys):
    """(name, weight, request bytes, whether its upstream failure is expected)."""
    main, limited, own = keys["main"], keys["limited"], keys["own"]
    json_type = ("Content-Type", "application/json")

    def proxy(key, body):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return request_bytes("POST", "/gemini-proxy", [("X-API-KEY", key), json_type], raw)

    native_body = json.dumps({"contents": [{"parts": [{"text": "soak"}]}]}).encode()
    return [
        ("valid", 55, proxy(main, {"prompt": "soak hello"})),
        ("valid-own-key", 5, proxy(main, {"prompt": "soak", "model": "gemini-2.5-flash", "api_key": own})),
        (
            "valid-native",
            5,
            request_bytes(
                "POST",
                "/v1beta/models/gemini-2.5-flash:generateContent",
                [("x-goog-api-key", main), json_type],
                native_body,
            ),
        ),
        ("bad-json", 5, proxy(main, b'{"prompt": "unterminated')),
        ("bad-model", 5, proxy(main, {"prompt": "x", "model": "Bad/Model", "api_key": own})),
        ("unknown-key", 5, proxy("soak-unknown-key-" + "x" * 20, {"prompt": "x"})),
        ("rate-limited", 10, proxy(limited, {"prompt": "soak limited"})),
        ("upstream-503", 5, proxy(main, {"prompt": "[mock:503] soak"})),
        # A quota error on the client's own key rests no server key.
        ("upstream-429", 5, proxy(main, {"prompt": "[mock:429] soak", "model": "gemini-2.5-flash", "api_key": own})),
    ]


# What each class may answer: (status, code) pairs; code None = success.
EXPECTED = {
    "valid": {(200, None)},
    "valid-own-key": {(200, None)},
    "valid-native": {(200, None)},
    "bad-json": {(400, "INVALID_JSON")},
    "bad-model": {(400, "INVALID_MODEL")},
    "unknown-key": {(401, "UNAUTHORIZED")},
    "rate-limited": {(200, None), (429, "RATE_LIMITED")},
    "upstream-503": {(503, "UPSTREAM_UNAVAILABLE")},
    "upstream-429": {(429, "QUOTA_ERROR")},
}
# 5xx answers that are upstream's doing (the mock's 503), not the service's.
UPSTREAM_5XX = {("upstream-503", 503, "UPSTREAM_UNAVAILABLE")}


def error_code(body):
    try:
        value = json.loads(body)
    except ValueError:
        return "NOT_JSON"
    if not isinstance(value, dict):
        return "NOT_JSON"
    if value.get("result") == "Failed":
        return value["errors"][0]["code"]
    error = value.get("error")
    if isinstance(error, dict):
        for detail in error.get("details") or []:
            if detail.get("domain") == "gemini-proxy":
                return detail.get("reason")
        return str(error.get("code"))
    return None


class Connection:
    def __init__(self, host, port):
        self.host, self.port = host, port
        self.reader = self.writer = None
        self.last_used = 0.0

    async def ensure(self, stats):
        if self.writer is not None and time.monotonic() - self.last_used > IDLE_RECONNECT_SECS:
            await self.close()
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            stats["connections opened"] += 1

    async def close(self):
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None

    async def exchange(self, raw):
        """Sends one request, reads one response: (status, headers, body)."""
        self.writer.write(raw)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                body += await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        else:
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        self.last_used = time.monotonic()
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, headers, body


async def worker(queue, conn, stats, outcomes):
    while True:
        job = await queue.get()
        if job is None:
            await conn.close()
            return
        name, raw = job
        try:
            await conn.ensure(stats)
            status, _, body = await asyncio.wait_for(conn.exchange(raw), REQUEST_TIMEOUT_SECS)
            code = None if status < 300 else error_code(body)
            outcomes[(name, status, code)] += 1
            stats["responses"] += 1
            if conn.writer is None:
                stats[f"Connection: close after ({name}, {status})"] += 1
        except (ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError) as e:
            stats["connection resets"] += 1
            stats[f"reset: {type(e).__name__} ({name})"] += 1
            await conn.close()
        except asyncio.TimeoutError:
            stats["timeouts"] += 1
            await conn.close()
        except OSError as e:
            stats["other transport errors"] += 1
            stats[f"error: {e!r}"] += 1
            await conn.close()


def sample(pid):
    with open(f"/proc/{pid}/status") as f:
        rss_kb = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    return rss_kb / 1024.0, len(os.listdir(f"/proc/{pid}/fd"))


async def sampler(pid, started, samples, stop):
    while not stop.is_set():
        rss, fds = sample(pid)
        samples.append((time.monotonic() - started, rss, fds))
        try:
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY_SECS)
        except asyncio.TimeoutError:
            pass


async def rewrite_keys(path, keys, every, stop, stats):
    version = 0
    while True:
        try:
            await asyncio.wait_for(stop.wait(), every)
            return
        except asyncio.TimeoutError:
            pass
        version = 1 - version
        text = keys_file(version, keys)
        if stats["keys rewrites"] % 2 == 0:
            with open(path, "w") as f:  # in place, as `cat >` does
                f.write(text)
        else:  # replace by rename, as editors do
            with open(path + ".next", "w") as f:
                f.write(text)
            os.replace(path + ".next", path)
        stats["keys rewrites"] += 1


async def http_get(host, port, path):
    reader, writer = await asyncio.open_connection(host, port)
    conn = Connection(host, port)
    conn.reader, conn.writer = reader, writer
    try:
        return (await conn.exchange(request_bytes("GET", path, [("Connection", "close")])))[2]
    finally:
        await conn.close()


def metric_sums(exposition, family):
    """Sums of one counter family by its `outcome`/`result`/`reason` label."""
    sums = Counter()
    for line in exposition.splitlines():
        if line.startswith(family + "{"):
            labels, value = line.rsplit(" ", 1)
            label = dict(
                part.split("=", 1) for part in labels[len(family) + 1 : -1].split(",") if "=" in part
            )
            key = next((label[k].strip('"') for k in ("outcome", "result", "reason") if k in label), "")
            sums[key] += float(value)
    return sums


def slope_mb_per_min(points):
    """Least-squares slope of (seconds, MB) points, in MB per minute."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * 60.0


async def run(args):
    proxy_host, proxy_port = args.proxy.rsplit(":", 1)
    mock_host, mock_port = args.mock.rsplit(":", 1)
    keys = json.loads(args.keys)
    classes = build_classes(keys)
    # A fixed, shuffled cycle of classes by weight: the mix is exact per cycle.
    cycle = [(name, raw) for name, weight, raw in classes for _ in range(weight)]
    random.Random(7).shuffle(cycle)

    stats, outcomes, samples = Counter(), Counter(), []
    queue = asyncio.Queue()
    conns = [Connection(proxy_host, int(proxy_port)) for _ in range(CONNECTIONS)]
    workers = [asyncio.create_task(worker(queue, c, stats, outcomes)) for c in conns]
    stop = asyncio.Event()
    started = time.monotonic()
    tasks = [
        asyncio.create_task(sampler(args.pid, started, samples, stop)),
        asyncio.create_task(rewrite_keys(args.keys_file, keys, args.reload_every, stop, stats)),
    ]
    duration = args.minutes * 60.0
    total = int(duration * args.rate)
    print(f"soak: {args.rate} requests/s for {args.minutes} min ({total} requests)", flush=True)
    for i in range(total):
        due = started + i / args.rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -1.0:
            stats["sent over 1 s late"] += 1
        queue.put_nowait(cycle[i % len(cycle)])
        stats["sent"] += 1
        if i and i % (args.rate * 30) == 0:
            print(f"  {time.monotonic() - started:5.0f} s: {stats['responses']} answered", flush=True)
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    load_ended = time.monotonic() - started
    stop.set()
    await asyncio.gather(*tasks)
    # In-flight work drains and client connections close before the last look.
    await asyncio.sleep(2.0)
    rss_end, fds_end = sample(args.pid)

    metrics = (await http_get(proxy_host, int(proxy_port), "/metrics")).decode()
    mock_stats = json.loads(await http_get(mock_host, int(mock_port), "/__mock/stats"))
    attempts = metric_sums(metrics, "gemini_proxy_upstream_requests_total")
    retries = metric_sums(metrics, "gemini_proxy_upstream_retries_total")
    reloads = metric_sums(metrics, "gemini_proxy_config_reloads_total")

    by_class = Counter()
    unexpected, service_5xx = Counter(), Counter()
    for (name, status, code), n in outcomes.items():
        by_class[name] += n
        if (status, code) not in EXPECTED[name]:
            unexpected[(name, status, code)] += n
        if status >= 500 and (name, status, code) not in UPSTREAM_5XX:
            service_5xx[(name, status, code)] += n
    count = lambda name, status=None: sum(
        n for (c, s, _), n in outcomes.items() if c == name and (status is None or s == status)
    )
    ok_upstream = sum(count(c, 200) for c in ("valid", "valid-own-key", "valid-native"))
    ok_upstream += count("rate-limited", 200)
    n503, n429 = count("upstream-503"), count("upstream-429")
    mock_calls = mock_stats["request_count"]
    attempts_total = sum(attempts.values())

    # The second half of the load; a sample taken as the load ended is left out.
    half = [(t, rss, fds) for t, rss, fds in samples if load_ended / 2 <= t < load_ended - 1.0]
    second_half = [(t, rss) for t, rss, _ in half]
    rss_slope = slope_mb_per_min(second_half)
    fds_mid = min((f for _, _, f in half), default=fds_end)
    fds_max_second_half = max((f for _, _, f in half), default=fds_end)

    print("\n== outcomes (class, status, code): count")
    for key in sorted(outcomes, key=str):
        print(f"  {key}: {outcomes[key]}")
    print("\n== upstream")
    print(f"  mock request_count:                    {mock_calls}")
    print(f"  gemini_proxy_upstream_requests_total:  {attempts_total:.0f} {dict(attempts)}")
    print(f"  gemini_proxy_upstream_retries_total:   {dict(retries)}")
    print(f"  successes that called upstream:        {ok_upstream}")
    print(f"  [mock:503] requests / [mock:429] requests: {n503} / {n429}")
    print(f"  keys rewrites: {stats['keys rewrites']}, reloads: {dict(reloads)}")
    print("\n== process (proxy)")
    s0 = samples[0] if samples else (0, rss_end, fds_end)
    print(f"  RSS   start {s0[1]:.1f} MB, end {rss_end:.1f} MB, max {max(r for _, r, _ in samples):.1f} MB")
    print(f"  fds   start {s0[2]}, second half {fds_mid}..{fds_max_second_half}, end {fds_end}")
    print(f"  RSS slope over the second half: {rss_slope:+.3f} MB/min ({len(second_half)} samples)")
    print("  samples (s, MB, fds): " + ", ".join(f"({t:.0f}, {r:.1f}, {f})" for t, r, f in samples))
    print("\n== client")
    for key in sorted(stats):
        print(f"  {key}: {stats[key]}")

    checks = [
        ("every request answered", stats["responses"] == stats["sent"], f"{stats['responses']} of {stats['sent']}"),
        ("no connection reset", stats["connection resets"] == 0, str(stats["connection resets"])),
        ("no timeout or other transport error", stats["timeouts"] + stats["other transport errors"] == 0,
         f"{stats['timeouts']} timeouts, {stats['other transport errors']} others"),
        ("no 5xx caused by the service", not service_5xx, str(dict(service_5xx))),
        ("every answer as its class expects", not unexpected, str(dict(unexpected))),
        ("upstream calls = attempts the proxy counted", mock_calls == attempts_total,
         f"mock {mock_calls}, metrics {attempts_total:.0f}"),
        ("successful attempts = successes that called upstream", attempts.get("ok", 0) == ok_upstream,
         f"{attempts.get('ok', 0):.0f} vs {ok_upstream}"),
        ("503 attempts: 1 to 3 per [mock:503] request, = requests + retries",
         n503 <= attempts.get("UPSTREAM_UNAVAILABLE", 0) <= 3 * n503
         and attempts.get("UPSTREAM_UNAVAILABLE", 0) == n503 + retries.get("UPSTREAM_UNAVAILABLE", 0),
         f"{attempts.get('UPSTREAM_UNAVAILABLE', 0):.0f} attempts, {retries.get('UPSTREAM_UNAVAILABLE', 0):.0f} retries, {n503} requests"),
        ("one attempt per [mock:429] request (never retried)", attempts.get("QUOTA_ERROR", 0) == n429,
         f"{attempts.get('QUOTA_ERROR', 0):.0f} vs {n429}"),
        ("no other upstream outcome",
         set(attempts) <= {"ok", "UPSTREAM_UNAVAILABLE", "QUOTA_ERROR"} or
         all(v == 0 for k, v in attempts.items() if k not in {"ok", "UPSTREAM_UNAVAILABLE", "QUOTA_ERROR"}),
         str(dict(attempts))),
        ("some requests were rate-limited", count("rate-limited", 429) > 0, str(count("rate-limited", 429))),
        ("keys reloads succeeded, none failed", reloads.get("failure", 0) == 0 and reloads.get("success", 0) > 0,
         str(dict(reloads))),
        (f"RSS slope over the second half <= {args.max_rss_slope} MB/min", rss_slope <= args.max_rss_slope,
         f"{rss_slope:+.3f}"),
        ("open fds flat over the second half (max - min within 8)", fds_max_second_half - fds_mid <= 8,
         f"{fds_mid}..{fds_max_second_half}"),
        ("fds after the load no more than during it", fds_end <= fds_max_second_half,
         f"{fds_end} vs {fds_max_second_half}"),
    ]
    print("\n== checks")
    failed = 0
    for name, ok, detail in checks:
        print(f"  [{'ok' if ok else 'FAIL'}] {name}: {detail}")
        failed += not ok
    return 1 if failed else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", required=True, help="JSON: main, limited, extra, own")
    parser.add_argument("--proxy", help="HOST:PORT of gemini-proxy")
    parser.add_argument("--mock", help="HOST:PORT of mock-gemini")
    parser.add_argument("--pid", type=int, help="PID of gemini-proxy")
    parser.add_argument("--keys-file")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--rate", type=int, default=200, help="requests per second")
    parser.add_argument("--reload-every", type=float, default=3.0, help="seconds between keys-file rewrites")
    parser.add_argument("--max-rss-slope", type=float, default=1.0, help="MB/min")
    parser.add_argument("--print-keys-file", action="store_true", help="print version 0 and exit")
    args = parser.parse_args()
    if args.print_keys_file:
        print(keys_file(0, json.loads(args.keys)), end="")
        return 0
    if None in (args.proxy, args.mock, args.pid, args.keys_file):
        parser.error("--proxy, --mock, --pid and --keys-file are required for a run")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
