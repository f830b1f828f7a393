#!/usr/bin/env bash
# Benchmark (not a test): Encrypt (1 KiB) and Get through the whole stack — kms-proxy (TLS 1.3,
# keep-alive) in front of kms-core (SQLite) — at 16 connections, with production logging on
# (info, JSON: an access line per request in each process), for the current build and, in the
# same run, for baseline binaries (BASELINE_DIR holding kms-proxy and kms-core built from main
# before the change, e.g. `git worktree add /tmp/base <rev> && CARGO_TARGET_DIR=/tmp/base-target
# cargo build --release -p kms-proxy -p kms-core` then BASELINE_DIR=/tmp/base-target/release).
# The runs alternate (current, baseline, ...) ROUNDS times (default 3); each side reports its
# median, then the ratio current/baseline, and each proxy's CPU time per request (/proc).
# SHARED_CORE=1 puts both proxies in front of one kms-core (the current one): the ratio is then
# the proxy's alone (two kms-core processes, even of the same build, differ by a few %).
# usage: [BASELINE_DIR=dir] [ROUNDS=n] [SHARED_CORE=1] tests/bench/stack.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-5}; rounds=${ROUNDS:-3}
cargo build --release -q -p kms-core -p kms-proxy -p kms-tests --bin kms-core --bin kms-proxy --bin kms-load
source tests/bench/lib.sh
workdir
self_signed_cert
echo '{"tag":"Create","value":[{"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},{"tag":"Attributes","value":[{"tag":"ActivationDate","type":"DateTime","value":"2026-01-01T00:00:00Z"},{"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"},{"tag":"CryptographicLength","type":"Integer","value":256},{"tag":"CryptographicUsageMask","type":"Integer","value":2108}]}]}' > "$d/create.json"

sides=(current); [ -n "${BASELINE_DIR:-}" ] && sides+=(baseline)
declare -A url proxy_pid
for side in "${sides[@]}"; do
  bin=target/release; [ "$side" = baseline ] && bin=$BASELINE_DIR
  dir="$d/$side"; mkdir -p "$dir"
  core_dir=$dir
  if [ "$side" = baseline ] && [ -n "${SHARED_CORE:-}" ]; then core_dir=$d/current; else
    KMS_LOG_FORMAT=json "$bin/kms-core" --dev --data-dir "$dir" --socket "$dir/core.sock" --admin-address 127.0.0.1:0 \
      2>"$dir/core.log" & pids+=($!)
    for _ in $(seq 100); do [ -S "$dir/core.sock" ] && break; sleep 0.1; done
  fi
  port=$(free_port)
  KMS_LOG_FORMAT=json "$bin/kms-proxy" --tls-cert-file "$d/cert.pem" --tls-key-file "$d/key.pem" \
    --upstream "unix:$core_dir/core.sock" --hostname 127.0.0.1 --port "$port" --admin-address 127.0.0.1:0 \
    2>"$dir/proxy.log" & pids+=($!)
  proxy_pid[$side]=$!
  for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.05; done
  url[$side]="https://localhost:$port"
  uid=$(curl -s --cacert "$d/cert.pem" "${url[$side]}/kmip/2_1" -d @"$d/create.json" \
    | python3 -c 'import json,sys; print([c["value"] for c in json.load(sys.stdin)["value"] if c["tag"]=="UniqueIdentifier"][0])')
  python3 - "$uid" "$dir" <<'PY'
import json, sys
uid, dir = sys.argv[1], sys.argv[2]
ident = {"tag": "UniqueIdentifier", "type": "TextString", "value": uid}
json.dump({"tag": "Encrypt", "value": [ident, {"tag": "Data", "type": "ByteString", "value": "AB" * 1024}]},
          open(f"{dir}/encrypt.json", "w"))
json.dump({"tag": "Get", "value": [ident]}, open(f"{dir}/get.json", "w"))
PY
done

median() { sort -n | awk '{v[NR]=$1} END{print (NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2}'; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
for op in encrypt get; do
  declare -A runs=() cpu=()
  for _ in $(seq "$rounds"); do
    for side in "${sides[@]}"; do
      before=$(ticks "${proxy_pid[$side]}")
      r=$(target/release/kms-load "${url[$side]}" "$d/$side/$op.json" 16 "$secs" "$d/cert.pem")
      us=$(awk -v t="$(( $(ticks "${proxy_pid[$side]}") - before ))" -v hz="$hz" -v r="$r" \
        'BEGIN{match(r, /n=[0-9]+/); n=substr(r, RSTART+2, RLENGTH-2); printf "%.1f", t*1e6/hz/n}')
      echo "$op $side $r proxy_cpu=${us}us/req"
      v=${r#req/s=}; runs[$side]+="${v%% *} "; cpu[$side]+="$us "
    done
  done
  cur=$(tr ' ' '\n' <<<"${runs[current]}" | grep . | median)
  echo "$op current median $cur/s, proxy CPU $(tr ' ' '\n' <<<"${cpu[current]}" | grep . | median) µs/request"
  if [ -n "${BASELINE_DIR:-}" ]; then
    base=$(tr ' ' '\n' <<<"${runs[baseline]}" | grep . | median)
    echo "$op baseline median $base/s, proxy CPU $(tr ' ' '\n' <<<"${cpu[baseline]}" | grep . | median) µs/request"
    awk -v a="$cur" -v b="$base" -v n="$op" 'BEGIN{printf "ratio stack %s current/baseline = %.2f\n", n, a/b}'
  fi
done
