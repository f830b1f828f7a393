#!/usr/bin/env bash
# Benchmark (not a test): what a build profile costs to build and what it gives at run time.
# Builds kms-core, kms-proxy and ckms from scratch (fresh target directories; crates already
# downloaded) once per profile and times it, then measures Encrypt (1 KiB) through kms-proxy
# (TLS 1.3) to kms-core (SQLite) at 16 connections with each build, alternating over three
# rounds (same load generator, kms-load), and prints the medians and the ratio.
#   usage: tests/bench/build-profiles.sh [seconds] [profile-a] [profile-b]   (default: dist release)
# BUILD_BENCH_DIR (default /tmp/kms-build-bench) holds the two target directories (~3 GB).
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-5}; a=${2:-dist}; b=${3:-release}
root=${BUILD_BENCH_DIR:-/tmp/kms-build-bench}
cargo build --release -q -p kms-tests --bin kms-load
load=$PWD/target/release/kms-load
declare -A bin took
for p in "$a" "$b"; do
  rm -rf "$root/$p"; mkdir -p "$root/$p"
  start=$(date +%s)
  CARGO_TARGET_DIR=$root/$p cargo build -q --profile "$p" -p kms-core -p kms-proxy -p ckms \
    --bin kms-core --bin kms-proxy --bin ckms
  took[$p]=$(( $(date +%s) - start ))
  bin[$p]=$root/$p/$p
  echo "build $p: ${took[$p]} s"
done
d=$(mktemp -d); pids=()
cleanup() { for x in "${pids[@]}"; do kill "$x" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$d"; }
trap cleanup EXIT
source tests/bench/lib.sh
self_signed_cert
create='{"tag":"Create","value":[{"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},{"tag":"Attributes","value":[{"tag":"ActivationDate","type":"DateTime","value":"2026-01-01T00:00:00Z"},{"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"},{"tag":"CryptographicLength","type":"Integer","value":256},{"tag":"CryptographicUsageMask","type":"Integer","value":2108}]}]}'
declare -A url
for p in "$a" "$b"; do
  dir="$d/$p"; mkdir -p "$dir"
  KMS_LOG=info "${bin[$p]}/kms-core" --dev --data-dir "$dir" --socket "$dir/core.sock" --admin-address 127.0.0.1:0 2>/dev/null & pids+=($!)
  for _ in $(seq 100); do [ -S "$dir/core.sock" ] && break; sleep 0.1; done
  port=$(free_port)
  KMS_LOG=info "${bin[$p]}/kms-proxy" --tls-cert-file "$d/cert.pem" --tls-key-file "$d/key.pem" \
    --upstream "unix:$dir/core.sock" --hostname 127.0.0.1 --port "$port" --admin-address 127.0.0.1:0 2>/dev/null & pids+=($!)
  sleep 0.5
  uid=$(curl -s --unix-socket "$dir/core.sock" -H 'x-kms-user: admin' http://core/kmip/2_1 -d "$create" \
    | python3 -c 'import json,sys; print([c["value"] for c in json.load(sys.stdin)["value"] if c["tag"]=="UniqueIdentifier"][0])')
  python3 - "$uid" > "$dir/encrypt.json" <<'PY'
import json, sys
print(json.dumps({"tag":"Encrypt","value":[{"tag":"UniqueIdentifier","type":"TextString","value":sys.argv[1]},{"tag":"Data","type":"ByteString","value":"AB"*1024}]}))
PY
  url[$p]="https://localhost:$port"
  "$load" "${url[$p]}" "$dir/encrypt.json" 16 2 "$d/cert.pem" >/dev/null   # warm-up
done
declare -A runs
for round in 1 2 3; do
  for p in "$a" "$b"; do
    r=$("$load" "${url[$p]}" "$d/$p/encrypt.json" 16 "$secs" "$d/cert.pem" | sed 's/.*req\/s=\([0-9.]*\).*/\1/')
    runs[$p]="${runs[$p]:-} $r"
    echo "round $round $p Encrypt/s=$r"
  done
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | sed -n 2p; }
ma=$(median "${runs[$a]}"); mb=$(median "${runs[$b]}")
awk -v a="$a" -v b="$b" -v ma="$ma" -v mb="$mb" -v ta="${took[$a]}" -v tb="${took[$b]}" 'BEGIN{
  printf "| profile | first build | Encrypt/s (median, c=16, via proxy) |\n|---|---|---|\n";
  printf "| %s | %d s | %s |\n| %s | %d s | %s (%.2f of %s) |\n", a, ta, ma, b, tb, mb, mb/ma, a }'
