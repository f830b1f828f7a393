#!/usr/bin/env bash
# Benchmark (not a test): Encrypt (1 KiB) per second with a key that lives in the HSM (SoftHSM2,
# AES-GCM inside the token) against software keys (AES-GCM in the core), one wrapped by the
# HSM KEK (unwrapped by the HSM on every use) and one by the master key file (no HSM at all),
# at concurrency 1 and 16, on kms-core's Unix socket, in one run, with kms-load.
# usage: tests/bench/hsm.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-5}
module=/usr/lib/softhsm/libsofthsm2.so
[ -e "$module" ] || { echo "needs SoftHSM2: apt-get install -y softhsm2"; exit 1; }
cargo build --release -q -p kms-core -p kms-tests --bin kms-core --bin kms-load
d=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$d"; }
trap cleanup EXIT
mkdir -p "$d/tokens" "$d/data"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$d/tokens" > "$d/softhsm2.conf"
export SOFTHSM2_CONF=$d/softhsm2.conf KMS_HSM_PIN=1234
slot=$(softhsm2-util --init-token --free --label bench --pin 1234 --so-pin 5678 | sed -n 's/.*reassigned to slot \([0-9]*\).*/\1/p')
KMS_LOG=warn target/release/kms-core --data-dir "$d/data" --socket "$d/core.sock" --admin-address 127.0.0.1:0 \
  --hsm-module "$module" --hsm-slot "$slot" --hsm-kek-label kek --hsm-admin bench --hsm-sessions 16 & pids+=($!)
KMS_LOG=warn target/release/kms-core --data-dir "$d/data2" --socket "$d/core2.sock" --admin-address 127.0.0.1:0 --dev & pids+=($!)
for _ in $(seq 100); do [ -S "$d/core.sock" ] && [ -S "$d/core2.sock" ] && break; sleep 0.1; done
create() { # $1 = optional uid, $2 = socket
  local id=""; [ -n "${1:-}" ] && id=",{\"tag\":\"UniqueIdentifier\",\"type\":\"TextString\",\"value\":\"$1\"}"
  curl -s --unix-socket "${2:-$d/core.sock}" -H 'x-kms-user: bench' http://core/kmip/2_1 -d "{\"tag\":\"Create\",\"value\":[{\"tag\":\"ObjectType\",\"type\":\"Enumeration\",\"value\":\"SymmetricKey\"},{\"tag\":\"Attributes\",\"value\":[{\"tag\":\"ActivationDate\",\"type\":\"DateTime\",\"value\":\"2026-01-01T00:00:00Z\"},{\"tag\":\"CryptographicAlgorithm\",\"type\":\"Enumeration\",\"value\":\"AES\"},{\"tag\":\"CryptographicLength\",\"type\":\"Integer\",\"value\":256}$id]}]}" \
    | python3 -c 'import json,sys; print([c["value"] for c in json.load(sys.stdin)["value"] if c["tag"]=="UniqueIdentifier"][0])'
}
soft=$(create)
hsm=$(create "hsm::$slot::bench")
master=$(create "" "$d/core2.sock")
for name in soft hsm master; do
  python3 - "${!name}" > "$d/$name.json" <<'PY'
import json, sys
print(json.dumps({"tag":"Encrypt","value":[{"tag":"UniqueIdentifier","type":"TextString","value":sys.argv[1]},{"tag":"Data","type":"ByteString","value":"AB"*1024}]}))
PY
done
echo "# kms-load Encrypt 1 KiB on kms-core's socket, ${secs}s per case, $(nproc) cores; SoftHSM2 $(softhsm2-util --version)"
declare -A rps
for c in 1 16; do
  for name in master soft hsm; do
    sock=$d/core.sock; [ "$name" = master ] && sock=$d/core2.sock
    line=$(target/release/kms-load "unix:$sock" "$d/$name.json" "$c" "$secs")
    printf '%-6s key c=%-2s %s\n' "$name" "$c" "$line"
    rps[$name$c]=$(sed 's/req\/s=\([0-9.]*\).*/\1/' <<<"$line")
  done
  awk -v a="${rps[hsm$c]}" -v b="${rps[master$c]}" -v s="${rps[soft$c]}" -v c="$c" \
    'BEGIN{printf "ratio hsm/master-key software c=%s = %.2f\nratio hsm/kek-wrapped software c=%s = %.2f\n", c, a/b, c, a/s}'
done
echo "(master = software key under the master key file; soft = software key under the HSM KEK; hsm = key inside the HSM)"
