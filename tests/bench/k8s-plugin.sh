#!/usr/bin/env bash
# Benchmark (not a test): the Kubernetes KMS v2 plugin, as kube-apiserver uses it — Encrypt of a
# 32-byte DEK and Decrypt of its ciphertext per second, p50 and p99, at concurrency 1 and 16,
# through plugin → kms-proxy (TLS 1.3, API token) → kms-core (SQLite), release builds. In the
# same run, the same Encrypt sent straight to kms-proxy (kms-load) is the baseline: the ratio is
# what the plugin's gRPC hop costs.
# usage: tests/bench/k8s-plugin.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-5}
cargo build --release -q -p kms-core -p kms-proxy -p kms-k8s-plugin -p kms-tests \
  --bin kms-core --bin kms-proxy --bin kms-k8s-plugin --bin plugin-load --bin kms-load
d=$(mktemp -d); chmod 755 "$d"; pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$d"; }
trap cleanup EXIT
source tests/bench/lib.sh
self_signed_cert
KMS_LOG=warn target/release/kms-core --dev --data-dir "$d" --socket "$d/core.sock" --admin-address 127.0.0.1:0 & pids+=($!)
for _ in $(seq 100); do [ -S "$d/core.sock" ] && break; sleep 0.1; done
kmip() { curl -s --unix-socket "$d/core.sock" -H 'x-kms-user: admin' http://core/kmip/2_1 -d "$1"; }
create='{"tag":"Create","value":[{"tag":"ObjectType","type":"Enumeration","value":"SymmetricKey"},{"tag":"Attributes","value":[{"tag":"ActivationDate","type":"DateTime","value":"2026-01-01T00:00:00Z"},{"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"},{"tag":"CryptographicLength","type":"Integer","value":256},{"tag":"CryptographicUsageMask","type":"Integer","value":2108}]}]}'
uid_of() { python3 -c 'import json,sys; print([c["value"] for c in json.load(sys.stdin)["value"] if c["tag"]=="UniqueIdentifier"][0])'; }
kek=$(kmip "$create" | uid_of)
token_uid=$(kmip "$create" | uid_of)
# The API token is the base64 of the token key's bytes; the plugin acts as admin, the owner.
kmip "{\"tag\":\"Get\",\"value\":[{\"tag\":\"UniqueIdentifier\",\"type\":\"TextString\",\"value\":\"$token_uid\"}]}" \
  | python3 -c 'import json,sys,base64
def find(n):
    if isinstance(n,dict):
        if n.get("tag")=="KeyMaterial" and isinstance(n.get("value"),str): return n["value"]
        v=n.get("value")
        if isinstance(v,list):
            for c in v:
                r=find(c)
                if r: return r
print(base64.b64encode(bytes.fromhex(find(json.load(sys.stdin)))).decode())' > "$d/token"
port=$(free_port)
KMS_LOG=warn target/release/kms-proxy --tls-cert-file "$d/cert.pem" --tls-key-file "$d/key.pem" --upstream "unix:$d/core.sock" \
  --hostname 127.0.0.1 --port "$port" --admin-address 127.0.0.1:0 --api-token-id "$token_uid" & pids+=($!)
sleep 1
KMS_LOG=warn target/release/kms-k8s-plugin --socket "$d/plugin.sock" --kms-url "https://localhost:$port" \
  --kms-ca-file "$d/cert.pem" --key-id "$kek" --api-token-file "$d/token" --admin-address 127.0.0.1:0 & pids+=($!)
for _ in $(seq 100); do [ -S "$d/plugin.sock" ] && break; sleep 0.1; done
python3 - "$kek" > "$d/encrypt.json" <<'PY'
import json, sys
print(json.dumps({"tag":"Encrypt","value":[{"tag":"UniqueIdentifier","type":"TextString","value":sys.argv[1]},{"tag":"Data","type":"ByteString","value":"07"*32}]}))
PY
echo "# ${secs}s per case, $(nproc) cores; plugin = gRPC on the plugin's socket -> kms-proxy (API token) -> kms-core (SQLite)"
for c in 1 16; do
  direct=$(KMS_LOAD_TOKEN=$(cat "$d/token") target/release/kms-load "https://localhost:$port" "$d/encrypt.json" "$c" "$secs" "$d/cert.pem" 2>/dev/null || echo "req/s=0")
  enc=$(target/release/plugin-load "$d/plugin.sock" encrypt "$c" "$secs")
  dec=$(target/release/plugin-load "$d/plugin.sock" decrypt "$c" "$secs")
  printf 'c=%-2s plugin Encrypt: %s\n' "$c" "$enc"
  printf 'c=%-2s plugin Decrypt: %s\n' "$c" "$dec"
  printf 'c=%-2s proxy Encrypt (baseline, no plugin): %s\n' "$c" "$direct"
  awk -v a="${enc#req/s=}" -v b="${direct#req/s=}" -v n="c=$c" 'BEGIN{split(a,x," "); split(b,y," "); if (y[1]>0) printf "ratio plugin/proxy Encrypt %s = %.2f\n", n, x[1]/y[1]}'
done
