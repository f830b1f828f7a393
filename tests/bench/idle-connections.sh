#!/usr/bin/env bash
# Benchmark (not a test): what idle keep-alive TLS connections cost kms-proxy in memory. Starts
# kms-proxy (release, TLS 1.3, trivial upstream on a Unix socket, info logs), opens N client
# connections (Python's ssl), sends one GET / on each and keeps them open and idle, then reads
# the proxy's RSS (VmRSS) before and after, and after the connections close again, and how many
# connections the proxy reports parked (idle, holding no HTTP buffers).
# Target (issue 15): 1,000 connections add at most 12 MiB.
# usage: tests/bench/idle-connections.sh [connections] [binary]   (binary: another kms-proxy to
# measure, e.g. a baseline build, default target/release/kms-proxy; NO_BUILD=1 skips the build)
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-1000}; bin=${2:-target/release/kms-proxy}
[ "$bin" = target/release/kms-proxy ] && [ -z "${NO_BUILD:-}" ] && cargo build --release -q -p kms-proxy -p kms-tests --bin kms-proxy --bin bench-upstream
[ -x target/release/bench-upstream ] || cargo build --release -q -p kms-tests --bin bench-upstream
d=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$d"; }
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
source tests/bench/lib.sh
self_signed_cert
target/release/bench-upstream "unix:$d/up.sock" & pids+=($!)
for _ in $(seq 100); do [ -S "$d/up.sock" ] && break; sleep 0.05; done
"$bin" --tls-cert-file "$d/cert.pem" --tls-key-file "$d/key.pem" --upstream "unix:$d/up.sock" \
  --hostname 127.0.0.1 --port 0 --admin-address 127.0.0.1:0 >"$d/proxy.log" 2>&1 & pids+=($!)
proxy=$!
for _ in $(seq 100); do grep -q 'kms-proxy listening on' "$d/proxy.log" 2>/dev/null && break; sleep 0.05; done
port=$(grep -o 'listening on https://[0-9.:]*' "$d/proxy.log" | sed 's/.*://')
admin=$(grep -o 'admin listening on http://[0-9.:]*' "$d/proxy.log" | sed 's/.*http:\/\///')
rss() { awk '/VmRSS/{print $2}' "/proc/$proxy/status"; }
python3 - "$port" "$d/cert.pem" "$n" "$proxy" "$admin" <<'PY'
import socket, ssl, sys, time, urllib.request
port, ca, n, pid, admin = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
def parked():
    text = urllib.request.urlopen(f"http://{admin}/metrics").read().decode()
    found = [l.split()[1] for l in text.splitlines() if l.startswith("kms_proxy_parked_connections ")]
    return found[0] if found else "n/a"  # n/a: a build before parking
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
ctx = ssl.create_default_context(cafile=ca)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
def one():
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
    s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
    assert data.startswith(b"HTTP/1.1 200"), data[:100]
    return s
# Warm up: the first connections grow the runtime's and the allocator's pools once.
for s in [one() for _ in range(20)]:
    s.close()
time.sleep(1)
before = rss()
conns = [one() for _ in range(n)]
time.sleep(2)
during = rss()
parked_idle = parked()
for s in conns:
    s.close()
time.sleep(3)
after = rss()
print(f"connections={n} rss_before={before/1024:.1f}MiB rss_idle={during/1024:.1f}MiB "
      f"rss_after_close={after/1024:.1f}MiB parked={parked_idle}")
print(f"per_connection={(during-before)/n:.1f}KiB added={(during-before)/1024:.1f}MiB")
PY
