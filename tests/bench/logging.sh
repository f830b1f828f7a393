#!/usr/bin/env bash
# Benchmark (not a test): what production logging costs kms-proxy. Requests/s of GET / through
# kms-proxy (TLS 1.3, keep-alive, trivial upstream on a Unix socket, no authentication) with
# JSON logs at info (one access line per request) against the same binary with logs at warn
# (kms_proxy=info: no per-request line), alternating over ROUNDS rounds (default 5) with wrk:
# the median of each round's logs-on/logs-off ratio, and the proxy's CPU time per request
# (/proc/<pid>/stat). With BASELINE_PROXY
# (another kms-proxy binary, e.g. main before a change) its JSON-logging run is measured too.
# Target (issue 15): logging on costs at most 10 %.
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
declare -A runs cpu
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
pairs=""
for round in $(seq "${ROUNDS:-5}"); do
  for name in "${names[@]}"; do
    before=$(ticks "${pid[$name]}")
    out=$(wrk -t1 -c"$conns" -d"${secs}s" "https://127.0.0.1:${port[$name]}/")
    used=$(( $(ticks "${pid[$name]}") - before ))
    r=$(awk '/Requests\/sec/{print $2}' <<<"$out")
    n=$(awk '/requests in/{print $1}' <<<"$out")
    us=$(awk -v t="$used" -v hz="$hz" -v n="$n" 'BEGIN{printf "%.1f", t * 1e6 / hz / n}')
    echo "round $round $name $r req/s, proxy CPU $us µs/request"
    runs[$name]="${runs[$name]:-} $r"; cpu[$name]="${cpu[$name]:-} $us"
  done
  on=$(awk '{print $NF}' <<<"${runs[logs-on]}"); off=$(awk '{print $NF}' <<<"${runs[logs-off]}")
  pairs="$pairs $(awk -v a="$on" -v b="$off" 'BEGIN{printf "%.3f", a/b}')"
done
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
for name in "${names[@]}"; do
  printf '%-18s median %s req/s, %s µs/request\n' "$name" "$(median "${runs[$name]}")" "$(median "${cpu[$name]}")"
done
# Each round's two runs are next to each other in time: the median of their ratios cancels the
# machine's drift better than a ratio of medians. CPU per request does not depend on how much
# of the two cores the load generator takes; both still move by ±15 % between runs here.
awk -v a="$(median "$pairs")" 'BEGIN{printf "ratio logs-on/logs-off = %.2f\n", a}'
awk -v a="$(median "${cpu[logs-off]}")" -v b="$(median "${cpu[logs-on]}")" 'BEGIN{printf "ratio cpu-per-request logs-off/logs-on = %.2f\n", a/b}'
[ -n "${BASELINE_PROXY:-}" ] && awk -v a="$(median "${runs[logs-on]}")" -v b="$(median "${runs[baseline-logs-on]}")" 'BEGIN{printf "ratio logs-on/baseline-logs-on = %.2f\n", a/b}'
lines=$(grep -c '"target":"access"' "$d/logs-on.log" || true)
echo "access lines written by logs-on: $lines"
