#!/usr/bin/env bash
# Benchmark (not a test): requests/s and p50/p99 latency of a trivial upstream reached
#   1. directly (plain HTTP keep-alive),
#   2. through kms-proxy (TLS 1.3, HTTP/1.1 keep-alive, TCP upstream),
#   3. through kms-proxy with the upstream on a Unix socket (the production layout),
#   4. through HAProxy doing the same TLS termination (peer baseline, when haproxy is installed),
# all in the same run, with wrk. Prints each line and the ratios against direct.
# usage: tests/bench/proxy.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-8}; conns=${2:-32}
command -v wrk >/dev/null || { echo "needs wrk: apt-get install -y wrk"; exit 1; }
cargo build --release -q -p kms-proxy -p kms-tests --bin kms-proxy --bin bench-upstream
source tests/bench/lib.sh
workdir
self_signed_cert
up=$(free_port)
target/release/bench-upstream "127.0.0.1:$up" & pids+=($!)
target/release/bench-upstream "unix:$d/up.sock" & pids+=($!)
start_proxy() { # $1 variable to set to the proxy's port, $2 upstream
  local log="$d/proxy.$1.log"
  KMS_LOG=warn,kms_proxy=info target/release/kms-proxy --tls-cert-file "$d/cert.pem" --tls-key-file "$d/key.pem" \
    --upstream "$2" --hostname 127.0.0.1 --port 0 --admin-address 127.0.0.1:0 >"$log" 2>&1 & pids+=($!)
  for _ in $(seq 100); do
    grep -q 'kms-proxy listening on' "$log" 2>/dev/null && break; sleep 0.05
  done
  printf -v "$1" '%s' "$(grep -o 'listening on https://[0-9.:]*' "$log" | sed 's/.*://')"
}
start_proxy px_tcp "http://127.0.0.1:$up"
start_proxy px_unix "unix:$d/up.sock"
targets=("direct http://127.0.0.1:$up/" "kms-proxy-tcp https://127.0.0.1:$px_tcp/" "kms-proxy-unix https://127.0.0.1:$px_unix/")
if command -v haproxy >/dev/null; then
  hp=$(free_port); cat "$d/cert.pem" "$d/key.pem" > "$d/srv.pem"
  cat > "$d/haproxy.cfg" <<CFG
global
  nbthread 2
  ssl-default-bind-options ssl-min-ver TLSv1.3
defaults
  mode http
  timeout client 10s
  timeout server 10s
  timeout connect 2s
frontend px
  bind 127.0.0.1:$hp ssl crt $d/srv.pem alpn http/1.1
  http-request del-header X-KMS-User
  http-request set-header X-KMS-User admin
  default_backend be
backend be
  http-reuse always
  server up 127.0.0.1:$up
CFG
  haproxy -f "$d/haproxy.cfg" -db >/dev/null 2>&1 & pids+=($!)
  sleep 0.5
  targets+=("haproxy https://127.0.0.1:$hp/")
fi
sleep 0.5
echo "# wrk -t1 -c$conns -d${secs}s, keep-alive; kms-proxy and haproxy over TLS 1.3 ($(nproc) cores)"
declare -A rps
for t in "${targets[@]}"; do
  name=${t%% *}; url=${t#* }
  wrk -t1 -c"$conns" -d3s "$url" >/dev/null 2>&1 || true   # warm-up
  line=$(wrk -t1 -c"$conns" -d"${secs}s" --latency "$url" 2>&1 | awk '
    /Requests\/sec/{r=$2} / 50%/{p50=$2} / 99%/{p99=$2} /Non-2xx/{e=$NF} /Socket errors/{s=$0}
    END{printf "req/s=%s p50=%s p99=%s non2xx=%s %s", r, p50, p99, e+0, s}')
  rps[$name]=$(sed 's/req\/s=\([0-9.]*\).*/\1/' <<<"$line")
  printf '%-15s %s\n' "$name" "$line"
done
for name in kms-proxy-tcp kms-proxy-unix haproxy; do
  [ -n "${rps[$name]:-}" ] || continue
  awk -v a="${rps[$name]}" -v b="${rps[direct]}" -v n="$name" 'BEGIN{printf "ratio %s/direct = %.2f\n", n, a/b}'
done
[ -n "${rps[haproxy]:-}" ] && awk -v a="${rps[kms-proxy-tcp]}" -v b="${rps[haproxy]}" 'BEGIN{printf "ratio kms-proxy-tcp/haproxy = %.2f\n", a/b}'
exit 0
