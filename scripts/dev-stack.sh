#!/usr/bin/env bash
# Starts the whole stack on embedded defaults, for development and first contact:
#   kms-core  - SQLite and a development master key under ./data, on the Unix socket ./data/kms-core.sock
#   kms-proxy - TLS on https://127.0.0.1:9998 with a self-signed certificate made on first start,
#               forwarding to the core's socket; metrics on 127.0.0.1:9464 (proxy), :9465 (core)
# Ctrl-C stops both. Not for production: the master key and certificate are development ones.
# Environment: KMS_STACK_DIR (default ./data), KMS_STACK_PROFILE (release|debug, default release),
# and any KMS_* variable of either binary (e.g. KMS_PORT=0).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${KMS_STACK_DIR:-data}
profile=${KMS_STACK_PROFILE:-release}
# Only what the stack and the README's next steps run (kms-core, kms-proxy, ckms), with cargo's
# progress shown. The README's other commands use this same build (target/release/...).
bins=(-p kms-core -p kms-proxy -p ckms --bin kms-core --bin kms-proxy --bin ckms)
if [ "$profile" = release ]; then
  [ -x "${CARGO_TARGET_DIR:-target}/release/kms-proxy" ] ||
    echo "dev-stack: first build of kms-core, kms-proxy and ckms (release): about 10 minutes on 2 cores (later starts reuse it)"
  cargo build --release "${bins[@]}"
else
  # Debug: the workspace's binaries, as the test command builds them (same features), so a
  # debug stack after `bash tests/run.sh` compiles nothing.
  cargo build -q --workspace --bins
fi
bin=${CARGO_TARGET_DIR:-target}/$profile
mkdir -p "$dir" && chmod 700 "$dir"
if [ ! -s "$dir/dev-tls.crt" ] || [ ! -s "$dir/dev-tls.key" ]; then
  command -v openssl >/dev/null || { echo "dev-stack: openssl is needed for the development certificate: apt-get install -y openssl" >&2; exit 1; }
  (umask 077; openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
    -keyout "$dir/dev-tls.key" -out "$dir/dev-tls.crt" -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE \
    -addext extendedKeyUsage=serverAuth 2>/dev/null)
  echo "dev-stack: created a self-signed development certificate $dir/dev-tls.crt"
fi
pids=()
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap stop EXIT INT TERM
"$bin/kms-core" --dev --data-dir "$dir" --socket "$dir/kms-core.sock" --log-format "${KMS_LOG_FORMAT:-text}" & pids+=($!)
for _ in $(seq 100); do [ -S "$dir/kms-core.sock" ] && break; sleep 0.1; done
[ -S "$dir/kms-core.sock" ] || { echo "dev-stack: kms-core did not start" >&2; exit 1; }
"$bin/kms-proxy" --tls-cert-file "$dir/dev-tls.crt" --tls-key-file "$dir/dev-tls.key" \
  --upstream "unix:$dir/kms-core.sock" --hostname "${KMS_HOSTNAME:-127.0.0.1}" & pids+=($!)
wait -n
