#!/usr/bin/env bash
# Benchmark (not a test): Create/s and Encrypt (1 KiB)/s at concurrency 1 and 16, directly on
# kms-core's Unix socket and through kms-proxy (TLS 1.3, keep-alive), with SQLite and with a
# throwaway PostgreSQL, all in one run with the same load generator (tests/src/bin/kms-load.rs).
# Prints one line per case and the ratio proxy/direct.
# With BASELINE=<git rev> it also builds kms-core at that revision (a worktree and a target
# directory of its own) and runs the direct cases against it in the same run, interleaved with
# the current build, printing current/baseline ratios.
# usage: [BASELINE=rev] tests/bench/core.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-5}
cargo build --release -q -p kms-core -p kms-proxy -p kms-tests --bin kms-core --bin kms-proxy --bin kms-load
d=$(mktemp -d); chmod 755 "$d"; pids=()
baseline_core=""
if [ -n "${BASELINE:-}" ]; then
  base_target=${BASELINE_TARGET_DIR:-target/baseline}
  git worktree add -q --detach "$d/baseline-src" "$BASELINE"
  # Start from the current build's dependencies: only the workspace crates rebuild.
  [ -d "$base_target/release" ] || { mkdir -p "$base_target"; cp -r target/release "$base_target/"; }
  CARGO_TARGET_DIR=$PWD/$base_target cargo build --release -q --manifest-path "$d/baseline-src/Cargo.toml" -p kms-core --bin kms-core
  baseline_core=$PWD/$base_target/release/kms-core
fi
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true
  [ -d "$d/baseline-src" ] && git worktree remove --force "$d/baseline-src"
  rm -rf "$d"
}
trap cleanup EXIT
source tests/bench/lib.sh
self_signed_cert
start_postgres
"$pgbin/createdb" -h 127.0.0.1 -p "$pgport" -U kms kms

create='{"tag":"Create","value":[{"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},{"tag":"Attributes","value":[{"tag":"ActivationDate","type":"DateTime","value":"2026-01-01T00:00:00Z"},{"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"},{"tag":"CryptographicLength","type":"Integer","value":256},{"tag":"CryptographicUsageMask","type":"Integer","value":2108}]}]}'
echo "$create" > "$d/create.json"
start_stack() { # $1 name, $2 database url (empty = sqlite)
  local dir="$d/$1"; mkdir -p "$dir"
  local db=(); [ -n "$2" ] && db=(--database-url "$2")
  KMS_LOG=warn target/release/kms-core --dev --data-dir "$dir" --socket "$dir/core.sock" --admin-address 127.0.0.1:0 "${db[@]}" & pids+=($!); core_pid=$!
  for _ in $(seq 100); do [ -S "$dir/core.sock" ] && break; sleep 0.1; done
  local port; port=$(free_port)
  KMS_LOG=warn target/release/kms-proxy --tls-cert-file "$d/cert.pem" --tls-key-file "$d/key.pem" --upstream "unix:$dir/core.sock" \
    --hostname 127.0.0.1 --port "$port" --admin-address 127.0.0.1:0 & pids+=($!); proxy_pid=$!
  sleep 0.5
  sock="$dir/core.sock"; url="https://localhost:$port"
  # A key for the Encrypt runs, owned by the user both paths act as.
  uid=$(curl -s --unix-socket "$sock" -H 'x-kms-user: bench' http://core/kmip/2_1 -d @"$d/create.json" | python3 -c 'import json,sys; print([c["value"] for c in json.load(sys.stdin)["value"] if c["tag"]=="UniqueIdentifier"][0])')
  python3 - "$uid" > "$d/encrypt.json" <<'PY'
import json, sys
print(json.dumps({"tag":"Encrypt","value":[{"tag":"UniqueIdentifier","type":"TextString","value":sys.argv[1]},{"tag":"Data","type":"ByteString","value":"AB"*1024}]}))
PY
}
echo "# kms-load, ${secs}s per case, $(nproc) cores; direct = kms-core's Unix socket, proxy = kms-proxy TLS 1.3 keep-alive"
for backend in sqlite postgres; do
  if [ $backend = sqlite ]; then start_stack sqlite ""; else start_stack pg "postgres://kms@127.0.0.1:$pgport/kms"; fi
  # The proxy forwards as its default user (admin); the direct runs act as bench. Give admin
  # the key too, so both paths encrypt with the same key.
  curl -s --unix-socket "$sock" -H 'x-kms-user: bench' http://core/access/grant \
    -d "{\"unique_identifier\":\"$uid\",\"user_id\":\"admin\",\"operation_types\":[\"encrypt\"]}" >/dev/null
  for op in create encrypt; do
    for c in 1 16; do
      direct=$(target/release/kms-load "unix:$sock" "$d/$op.json" "$c" "$secs")
      proxied=$(target/release/kms-load "$url" "$d/$op.json" "$c" "$secs" "$d/cert.pem")
      printf '%-8s %-7s c=%-2s direct: %s\n' "$backend" "$op" "$c" "$direct"
      printf '%-8s %-7s c=%-2s proxy:  %s\n' "$backend" "$op" "$c" "$proxied"
      awk -v a="${proxied#req/s=}" -v b="${direct#req/s=}" -v n="$backend $op c=$c" 'BEGIN{split(a,x," "); split(b,y," "); printf "ratio proxy/direct %s = %.2f\n", n, x[1]/y[1]}'
    done
  done
  hwm() { awk '/VmHWM/{printf "%.0f MiB", $2/1024}' "/proc/$1/status"; }
  echo "$backend peak RSS after the runs: kms-core $(hwm "$core_pid"), kms-proxy $(hwm "$proxy_pid")"
done
if [ -n "$baseline_core" ]; then
  # Current and baseline kms-core side by side on SQLite, each with a key of its own; the runs
  # alternate (current, baseline, current, baseline) and each side keeps its best.
  for side in current baseline; do
    dir="$d/cmp-$side"; mkdir -p "$dir"
    bin=target/release/kms-core; [ $side = baseline ] && bin=$baseline_core
    KMS_LOG=warn "$bin" --dev --data-dir "$dir" --socket "$dir/core.sock" --admin-address 127.0.0.1:0 & pids+=($!)
    for _ in $(seq 100); do [ -S "$dir/core.sock" ] && break; sleep 0.1; done
    uid=$(curl -s --unix-socket "$dir/core.sock" -H 'x-kms-user: bench' http://core/kmip/2_1 -d @"$d/create.json" | python3 -c 'import json,sys; print([c["value"] for c in json.load(sys.stdin)["value"] if c["tag"]=="UniqueIdentifier"][0])')
    python3 - "$uid" > "$dir/encrypt.json" <<'PY'
import json, sys
print(json.dumps({"tag":"Encrypt","value":[{"tag":"UniqueIdentifier","type":"TextString","value":sys.argv[1]},{"tag":"Data","type":"ByteString","value":"AB"*1024}]}))
PY
    cp "$d/create.json" "$dir/create.json"
  done
  echo "# current build vs BASELINE=$BASELINE, direct on kms-core's socket, SQLite, best of 2 alternating runs"
  for op in create encrypt; do
    for c in 1 16; do
      best_cur=0; best_base=0
      for _ in 1 2; do
        for side in current baseline; do
          r=$(target/release/kms-load "unix:$d/cmp-$side/core.sock" "$d/cmp-$side/$op.json" "$c" "$secs")
          v=${r#req/s=}; v=${v%% *}
          if [ $side = current ]; then best_cur=$(awk -v a="$v" -v b="$best_cur" 'BEGIN{print (a>b)?a:b}'); else best_base=$(awk -v a="$v" -v b="$best_base" 'BEGIN{print (a>b)?a:b}'); fi
        done
      done
      awk -v a="$best_cur" -v b="$best_base" -v n="$op c=$c" 'BEGIN{printf "%-12s current %8.0f/s  baseline %8.0f/s  ratio %.2f\n", n, a, b, a/b}'
    done
  done
fi
