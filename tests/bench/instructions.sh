#!/usr/bin/env bash
# Benchmark (not a test): instructions kms-proxy executes per request, counted by valgrind's
# callgrind, which unlike req/s or CPU time does not move with the machine's load (runs agree
# within 1 %). GET / through kms-proxy (TLS 1.3, keep-alive, 4 connections, trivial upstream on
# a Unix socket, no authentication), JSON logs at info (one access line per request) and at
# warn (kms_proxy=info: none); with BASELINE_PROXY (another kms-proxy binary, e.g. main before
# a change) the same for it. Counts user-space instructions only (not the kernel's work, nor
# the waiting): a change that saves system calls or wake-ups shows in logging.sh, not here.
# Each count starts after a 3-second warm-up (callgrind_control --zero) and covers a wrk run.
# usage: [BASELINE_PROXY=path] [NO_BUILD=1] tests/bench/instructions.sh [seconds]
# Needs: apt-get install -y valgrind wrk
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-8}
for tool in valgrind callgrind_control wrk; do
  command -v "$tool" >/dev/null || { echo "needs $tool: apt-get install -y valgrind wrk"; exit 1; }
done
[ -n "${NO_BUILD:-}" ] || cargo build --release -q -p kms-proxy -p kms-tests --bin kms-proxy --bin bench-upstream
source tests/bench/lib.sh
workdir
self_signed_cert
target/release/bench-upstream "unix:$d/up.sock" & pids+=($!)
for _ in $(seq 100); do [ -S "$d/up.sock" ] && break; sleep 0.05; done

# Instructions per request of binary $2 with KMS_LOG=$3, printed as "$1 N".
count() {
  local name=$1 out="$d/$1" port pid n ir
  KMS_LOG=$3 KMS_LOG_FORMAT=json valgrind --tool=callgrind --callgrind-out-file="$out.cg" \
    "$2" --tls-cert-file "$d/cert.pem" --tls-key-file "$d/key.pem" --upstream "unix:$d/up.sock" \
    --hostname 127.0.0.1 --port 0 --admin-address 127.0.0.1:0 >"$out.log" 2>&1 & pids+=($!)
  pid=$!
  for _ in $(seq 300); do grep -q 'listening on https' "$out.log" 2>/dev/null && break; sleep 0.1; done
  port=$(grep -o 'listening on https://[0-9.:]*' "$out.log" | sed 's/.*://')
  wrk -t1 -c4 -d3s "https://127.0.0.1:$port/" >/dev/null 2>&1
  callgrind_control --zero "$pid" >/dev/null 2>&1
  wrk -t1 -c4 -d"${secs}s" "https://127.0.0.1:$port/" >"$out.wrk" 2>&1
  callgrind_control --dump "$pid" >/dev/null 2>&1
  sleep 1
  kill "$pid" 2>/dev/null || true
  n=$(awk '/requests in/{print $1}' "$out.wrk")
  # The dump after the zero holds this run's count (the largest; the exit dump is near empty).
  ir=$(cat "$out".cg* | awk '/^(summary|totals):/{print $2}' | sort -n | tail -1)
  echo "$name $((ir / n)) instructions/request ($n requests)"
}
results=$(
  count logs-on target/release/kms-proxy info
  count logs-off target/release/kms-proxy warn,kms_proxy=info
  if [ -n "${BASELINE_PROXY:-}" ]; then
    count baseline-logs-on "$BASELINE_PROXY" info
    count baseline-logs-off "$BASELINE_PROXY" warn,kms_proxy=info
  fi
)
echo "$results"
get() { awk -v k="$1" '$1==k{print $2}' <<<"$results"; }
ratio() { awk -v a="$(get "$1")" -v b="$(get "$2")" -v n="$1/$2" 'BEGIN{printf "ratio instructions %s = %.2f\n", n, a/b}'; }
ratio logs-on logs-off
if [ -n "${BASELINE_PROXY:-}" ]; then ratio logs-on baseline-logs-on; ratio logs-off baseline-logs-off; fi
