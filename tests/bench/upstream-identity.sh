#!/usr/bin/env bash
# Benchmark (not a test): what upstream_identity = "jwt" costs against "header". Requests/s of
# GET / through kms-proxy (TLS 1.3, HTTP/1.1 keep-alive, trivial upstream on a Unix socket),
# both modes in the same run with the same client (auth-load), alternating over five rounds:
#   mtls          one client certificate: one user, so one cached token reused (the common case)
#   mtls+bearer   the same, the client also sending a 540-byte bearer token (as long as a minted
#                 one): header mode forwards it, jwt mode replaces it, so both send the upstream
#                 as many bytes and only the minting machinery differs
#   jwt-unique    20,000 distinct RS256 tokens, 20,000 users: a token minted for each new user
#                 (the verified-token cache is off in both modes, so only minting differs)
# and prints each round and the ratio of the medians. Target: mtls ratio >= 0.95.
# usage: tests/bench/upstream-identity.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-5}; conns=${2:-32}
cargo build --release -q -p kms-proxy -p kms-tests --bin kms-proxy --bin bench-upstream --bin auth-load
d=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$d"; }
trap cleanup EXIT

source tests/bench/lib.sh
ca_server_client_jwt
openssl pkey -in "$d/jwt.key" -pubout -out "$d/jwt.pub" 2>/dev/null
issuer=https://idp.bench.local; audience=kms
target/release/auth-load sign "$d/jwt.key" "$issuer" "$audience" 20000 "$d/tokens"

target/release/bench-upstream "unix:$d/up.sock" & pids+=($!)
cat > "$d/jwt.toml" <<TOML
[[auth.providers]]
issuer = "$issuer"
public_key_files = ["$d/jwt.pub"]
audiences = ["$audience"]
algorithms = ["RS256"]
TOML
start_proxy() { # $1 variable to set to the port, then extra arguments
  local name=$1; shift
  local log="$d/proxy.$name.log"
  target/release/kms-proxy --tls-cert-file "$d/server.pem" --tls-key-file "$d/server.key" \
    --upstream "unix:$d/up.sock" --hostname 127.0.0.1 --port 0 --admin-address 127.0.0.1:0 \
    --log-format json --config "$d/jwt.toml" --jwt-cache-size 0 \
    --authority-cert-file "$d/ca.pem" --client-cert optional "$@" >"$log" 2>&1 & pids+=($!)
  for _ in $(seq 200); do
    grep -q 'kms-proxy listening on' "$log" 2>/dev/null && break; sleep 0.05
  done
  printf -v "$name" '%s' "$(grep -o 'listening on https://[0-9.:]*' "$log" | sed 's/.*://')"
}
export KMS_LOG=info   # access and audit lines on, as in production
start_proxy p_header
start_proxy p_jwt --upstream-identity jwt --upstream-jwt-issuer https://127.0.0.1:1 \
  --upstream-jwt-audience kms-upstream
sleep 1

rps() { # $1 port, then auth-load options: prints requests/s
  local port=$1; shift
  target/release/auth-load run "https://127.0.0.1:$port" "$d/ca.pem" "$conns" "$secs" "$@" \
    | sed 's/req\/s=\([0-9.]*\).*/\1/'
}
echo "# auth-load: $conns keep-alive TLS 1.3 connections, ${secs}s per run, trivial upstream ($(nproc) cores)"
filler=$(head -c 405 /dev/urandom | base64 -w0)
for scenario in mtls mtls+bearer jwt-unique; do
  case $scenario in
    mtls) opts=(--identity "$d/client-identity.pem") ;;
    mtls+bearer) opts=(--identity "$d/client-identity.pem" --bearer "$filler") ;;
    jwt-unique) opts=(--tokens "$d/tokens") ;;
  esac
  target/release/auth-load run "https://127.0.0.1:$p_header" "$d/ca.pem" "$conns" 2 "${opts[@]}" >/dev/null
  target/release/auth-load run "https://127.0.0.1:$p_jwt" "$d/ca.pem" "$conns" 2 "${opts[@]}" >/dev/null
  hs=(); js=()
  for round in 1 2 3 4 5; do
    # Alternate which mode goes first: the machine's drift falls on both.
    if ((round % 2)); then
      h=$(rps "$p_header" "${opts[@]}"); j=$(rps "$p_jwt" "${opts[@]}")
    else
      j=$(rps "$p_jwt" "${opts[@]}"); h=$(rps "$p_header" "${opts[@]}")
    fi
    hs+=("$h"); js+=("$j")
    printf '%-11s round %d  header req/s=%s  jwt req/s=%s\n' "$scenario" "$round" "$h" "$j"
  done
  hm=$(printf '%s\n' "${hs[@]}" | sort -n | sed -n 3p)
  jm=$(printf '%s\n' "${js[@]}" | sort -n | sed -n 3p)
  awk -v s="$scenario" -v h="$hm" -v j="$jm" \
    'BEGIN{printf "%-11s median header=%s jwt=%s  jwt/header = %.3f\n", s, h, j, j/h}'
done
exit 0
