#!/usr/bin/env bash
# Benchmark (not a test): Sign/s for RSA-2048 (RSASSA-PSS SHA-256), ECDSA P-256 and Ed25519
# through kms-proxy (TLS 1.3, keep-alive) -> kms-core (SQLite), release builds, at concurrency
# 1 and 16, with p50/p99 (kms-load). In the same run, `openssl speed` for the same algorithms on
# this machine is the ceiling: one process for c=1, one per core (-multi) for c=16. Prints each
# case and the ratio KMS/openssl.
# usage: tests/bench/sign.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-5}
cargo build --release -q -p kms-core -p kms-proxy -p kms-tests --bin kms-core --bin kms-proxy --bin kms-load
source tests/bench/lib.sh
workdir
self_signed_cert
KMS_LOG=warn target/release/kms-core --dev --data-dir "$d" --socket "$d/core.sock" --admin-address 127.0.0.1:0 & pids+=($!)
for _ in $(seq 100); do [ -S "$d/core.sock" ] && break; sleep 0.1; done
port=$(free_port)
KMS_LOG=warn target/release/kms-proxy --tls-cert-file "$d/cert.pem" --tls-key-file "$d/key.pem" --upstream "unix:$d/core.sock" \
  --hostname 127.0.0.1 --port "$port" --admin-address 127.0.0.1:0 & pids+=($!)
sleep 1
url="https://localhost:$port"
# A key pair per algorithm, made through the proxy (so owned by the user the load acts as).
pair() { # $1 algorithm, $2 extra attribute (JSON)
  curl -s --cacert "$d/cert.pem" "$url/kmip/2_1" -H 'content-type: application/json' -d "{\"tag\":\"CreateKeyPair\",\"value\":[{\"tag\":\"CommonAttributes\",\"value\":[{\"tag\":\"CryptographicAlgorithm\",\"type\":\"Enumeration\",\"value\":\"$1\"},$2,{\"tag\":\"ActivationDate\",\"type\":\"DateTime\",\"value\":\"2026-01-01T00:00:00Z\"}]}]}" \
    | python3 -c 'import json,sys; print([c["value"] for c in json.load(sys.stdin)["value"] if c["tag"]=="PrivateKeyUniqueIdentifier"][0])'
}
sign_body() { # $1 uid, $2 file
  python3 - "$1" > "$2" <<'PY'
import json, sys
print(json.dumps({"tag":"Sign","value":[{"tag":"UniqueIdentifier","type":"TextString","value":sys.argv[1]},{"tag":"Data","type":"ByteString","value":"AB"*32}]}))
PY
}
sign_body "$(pair RSA '{"tag":"CryptographicLength","type":"Integer","value":2048}')" "$d/rsa.json"
sign_body "$(pair ECDSA '{"tag":"CryptographicDomainParameters","value":[{"tag":"RecommendedCurve","type":"Enumeration","value":"P256"}]}')" "$d/p256.json"
sign_body "$(pair Ed25519 '{"tag":"CryptographicDomainParameters","value":[{"tag":"RecommendedCurve","type":"Enumeration","value":"CURVEED25519"}]}')" "$d/ed25519.json"
# openssl speed: sign/s of one process, and of one per core.
speed() { # $1 openssl name, $2 awk pattern, $3 extra args
  openssl speed -seconds "$secs" $3 "$1" 2>/dev/null | awk -v p="$2" '$0 ~ p {print $(NF-1); exit}'
}
echo "# ${secs}s per case, $(nproc) cores; KMS = kms-load -> kms-proxy (TLS 1.3) -> kms-core (SQLite), 32-byte data"
for case in "rsa rsa2048 ^rsa.2048.bits" "p256 ecdsap256 bits.ecdsa..nistp256." "ed25519 ed25519 bits.EdDSA..Ed25519."; do
  set -- $case
  one=$(speed "$2" "$3" "")
  all=$(speed "$2" "$3" "-multi $(nproc)")
  for c in 1 16; do
    kms=$(target/release/kms-load "$url" "$d/$1.json" "$c" "$secs" "$d/cert.pem")
    ceiling=$one; [ "$c" = 16 ] && ceiling=$all
    printf '%-8s c=%-2s KMS Sign: %s | openssl speed sign/s=%s\n' "$1" "$c" "$kms" "$ceiling"
    awk -v a="${kms#req/s=}" -v b="$ceiling" -v n="$1 c=$c" 'BEGIN{split(a,x," "); if (b>0) printf "ratio KMS/openssl %s = %.2f\n", n, x[1]/b}'
  done
done
