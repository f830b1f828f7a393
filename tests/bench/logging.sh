#!/usr/bin/env bash
# Benchmark (not a test): what production logging costs kms-proxy. GET / through kms-proxy
# (TLS 1.3, keep-alive, trivial upstream on a Unix socket, no authentication) with JSON logs at
# info (one access line per request) against the same binary with logs at warn (kms_proxy=info:
# no per-request line); with BASELINE_PROXY (another kms-proxy binary, e.g. main before a
# change) its JSON-logging run as well. The proxies are loaded at the same time, each by a wrk
# of its own with the same connections, over ROUNDS rounds (default 5): this machine's speed
# drifts by up to a third between consecutive runs (HAProxy alone read 22.5k then 17.9k req/s
# one run apart), and proxies measured side by side share the drift where proxies measured one
# after the other do not. Each round prints every proxy's req/s and CPU time per request
# (/proc/<pid>/stat: all its threads, the log writer's included); the ratios are medians of
# the rounds' ratios. Target (issue 15): logging on costs at most 10 %.
# usage: [BASELINE_PROXY=path] [ROUNDS=n] tests/bench/logging.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-8}; conns=${2:-32}
command -v wrk >/dev/null || { echo "needs wrk: apt-get install -y wrk"; exit 1; }
cargo build --release -q -p kms-proxy -p kms-tests --bin kms-proxy --bin bench-upstream
source tests/bench/lib.sh
workdir
self_signed_cert
target/release/bench-upstream "unix:$d/up.sock" & pids+=($!)
for _ in $(seq 100); do [ -S "$d/up.sock" ] && break; sleep 0.05; done
declare -A port pid
start() { # $1 name, $2 binary, $3 KMS_LOG
  local log="$d/$1.log"
  KMS_LOG=$3 KMS_LOG_FORMAT=json "$2" --tls-cert-file "$d/cert.pem" --tls-key-file "$d/key.pem" \
    --upstream "unix:$d/up.sock" --hostname 127.0.0.1 --port 0 --admin-address 127.0.0.1:0 >"$log" 2>&1 & pids+=($!)
  pid[$1]=$!
  for _ in $(seq 100); do grep -q 'listening on https' "$log" 2>/dev/null && break; sleep 0.05; done
  port[$1]=$(grep -o 'listening on https://[0-9.:]*' "$log" | sed 's/.*://')
}
start logs-on target/release/kms-proxy info
start logs-off target/release/kms-proxy warn,kms_proxy=info
names=(logs-on logs-off)
if [ -n "${BASELINE_PROXY:-}" ]; then start baseline-logs-on "$BASELINE_PROXY" info; names+=(baseline-logs-on); fi
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
declare -A runs cpu before r us
req_on_off=""; cpu_off_on=""; req_on_base=""; cpu_base_on=""
q() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", a/b}'; }
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
for round in $(seq "${ROUNDS:-5}"); do
  loads=()
  for name in "${names[@]}"; do
    before[$name]=$(ticks "${pid[$name]}")
    wrk -t1 -c"$conns" -d"${secs}s" "https://127.0.0.1:${port[$name]}/" >"$d/$name.wrk" 2>&1 & loads+=($!)
  done
  wait "${loads[@]}"
  for name in "${names[@]}"; do
    used=$(( $(ticks "${pid[$name]}") - before[$name] ))
    r[$name]=$(awk '/Requests\/sec/{print $2}' "$d/$name.wrk")
    n=$(awk '/requests in/{print $1}' "$d/$name.wrk")
    us[$name]=$(awk -v t="$used" -v hz="$hz" -v n="$n" 'BEGIN{printf "%.1f", t * 1e6 / hz / n}')
    echo "round $round $name ${r[$name]} req/s, proxy CPU ${us[$name]} µs/request"
    runs[$name]="${runs[$name]:-} ${r[$name]}"; cpu[$name]="${cpu[$name]:-} ${us[$name]}"
  done
  req_on_off="$req_on_off $(q "${r[logs-on]}" "${r[logs-off]}")"
  cpu_off_on="$cpu_off_on $(q "${us[logs-off]}" "${us[logs-on]}")"
  if [ -n "${BASELINE_PROXY:-}" ]; then
    req_on_base="$req_on_base $(q "${r[logs-on]}" "${r[baseline-logs-on]}")"
    cpu_base_on="$cpu_base_on $(q "${us[baseline-logs-on]}" "${us[logs-on]}")"
  fi
done
for name in "${names[@]}"; do
  printf '%-18s median %s req/s, %s µs/request\n' "$name" "$(median "${runs[$name]}")" "$(median "${cpu[$name]}")"
done
echo "ratio logs-on/logs-off = $(median "$req_on_off")"
echo "ratio cpu-per-request logs-off/logs-on = $(median "$cpu_off_on")"
if [ -n "${BASELINE_PROXY:-}" ]; then
  echo "ratio logs-on/baseline-logs-on = $(median "$req_on_base")"
  echo "ratio cpu-per-request baseline-logs-on/logs-on = $(median "$cpu_base_on")"
fi
lines=$(grep -c '"target":"access"' "$d/logs-on.log" || true)
echo "access lines written by logs-on: $lines"
