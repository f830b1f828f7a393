#!/usr/bin/env bash
# Benchmark (not a test): Create through kms-proxy (TLS 1.3) -> kms-core (SQLite) at 16
# connections while the table grows to N keys (default 200,000): keys/s and p99 of each slice,
# for the current build and, in the same run, for a baseline kms-core (BASELINE_CORE: a binary
# built from main before the change, e.g. by tests/bench/core.sh with BASELINE=rev or
# `CARGO_TARGET_DIR=/tmp/base cargo build --release -p kms-core` in a worktree). Each side
# starts from an empty database. Prints each slice, then the overall keys/s, the worst slice
# p99 and the ratio current/baseline.
# With POSTGRES=1 both sides use a throwaway PostgreSQL (a database each) instead of SQLite.
# usage: [BASELINE_CORE=path] [POSTGRES=1] tests/bench/create-growth.sh [keys] [seconds per slice]
set -euo pipefail
cd "$(dirname "$0")/../.."
keys=${1:-200000}; slice=${2:-10}
cargo build --release -q -p kms-core -p kms-proxy -p kms-tests --bin kms-core --bin kms-proxy --bin kms-load
source tests/bench/lib.sh
workdir
self_signed_cert
echo '{"tag":"Create","value":[{"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},{"tag":"Attributes","value":[{"tag":"ActivationDate","type":"DateTime","value":"2026-01-01T00:00:00Z"},{"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"},{"tag":"CryptographicLength","type":"Integer","value":256},{"tag":"CryptographicUsageMask","type":"Integer","value":2108}]}]}' > "$d/create.json"
[ -n "${POSTGRES:-}" ] && start_postgres
sides=(current); [ -n "${BASELINE_CORE:-}" ] && sides+=(baseline)
declare -A rate worst
for side in "${sides[@]}"; do
  core=target/release/kms-core; [ "$side" = baseline ] && core=$BASELINE_CORE
  dir="$d/$side"; mkdir -p "$dir"
  db=()
  if [ -n "${POSTGRES:-}" ]; then
    "$pgbin/createdb" -h 127.0.0.1 -p "$pgport" -U kms "kms_$side"
    db=(--database-url "postgres://kms@127.0.0.1:$pgport/kms_$side")
  fi
  KMS_LOG=warn "$core" --dev --data-dir "$dir" --socket "$dir/core.sock" --admin-address 127.0.0.1:0 "${db[@]}" & pids+=($!); core_pid=$!
  for _ in $(seq 100); do [ -S "$dir/core.sock" ] && break; sleep 0.1; done
  port=$(free_port)
  KMS_LOG=warn target/release/kms-proxy --tls-cert-file "$d/cert.pem" --tls-key-file "$d/key.pem" --upstream "unix:$dir/core.sock" \
    --hostname 127.0.0.1 --port "$port" --admin-address 127.0.0.1:0 & pids+=($!); proxy_pid=$!
  sleep 0.5
  made=0; spent=0; worst_p99=0
  while [ "$made" -lt "$keys" ]; do
    r=$(target/release/kms-load "https://localhost:$port" "$d/create.json" 16 "$slice" "$d/cert.pem")
    n=$(sed -E 's/.*n=([0-9]+).*/\1/' <<<"$r"); p99=$(sed -E 's/.*p99=([0-9.]+)ms.*/\1/' <<<"$r")
    made=$((made + n)); spent=$((spent + slice))
    worst_p99=$(awk -v a="$p99" -v b="$worst_p99" 'BEGIN{print (a>b)?a:b}')
    printf '%-8s keys=%-7s %s\n' "$side" "$made" "$r"
  done
  rate[$side]=$(awk -v n="$made" -v s="$spent" 'BEGIN{printf "%.0f", n/s}'); worst[$side]=$worst_p99
  rss() { awk '/VmHWM/{printf "%.0f", $2/1024}' "/proc/$1/status"; }
  echo "$side: ${rate[$side]} keys/s over $made keys, worst slice p99 ${worst[$side]} ms, peak RSS kms-core $(rss "$core_pid") MiB, kms-proxy $(rss "$proxy_pid") MiB"
  kill "$core_pid" "$proxy_pid"; wait "$core_pid" "$proxy_pid" 2>/dev/null || true
done
if [ -n "${BASELINE_CORE:-}" ]; then
  awk -v a="${rate[current]}" -v b="${rate[baseline]}" 'BEGIN{printf "ratio create-growth current/baseline = %.2f\n", a/b}'
fi
echo "worst p99 current = ${worst[current]} ms"
