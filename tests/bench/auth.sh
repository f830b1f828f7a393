#!/usr/bin/env bash
# Benchmark (not a test): what authentication costs in kms-proxy. Requests/s and p50/p99 of
# GET / through kms-proxy (TLS 1.3, HTTP/1.1 keep-alive, trivial upstream on a Unix socket),
# all in the same run, with the same client (auth-load), for:
#   none          no method configured (the baseline)
#   mtls          client certificate verified at the handshake (user = CN)
#   api-token     Bearer API token (SHA-256 + constant-time compare)
#   jwt-repeated  one RS256 token sent again and again (verified-token cache)
#   jwt-unique    distinct RS256 tokens, cache off: a signature check on every request
# and prints each against none.
# usage: tests/bench/auth.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-5}; conns=${2:-32}
cargo build --release -q -p kms-proxy -p kms-tests --bin kms-proxy --bin bench-upstream --bin auth-load
d=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$d"; }
trap cleanup EXIT

# A CA, a server certificate, a client certificate (CN=bench), an RSA key for the JWTs.
source tests/bench/lib.sh
ca_server_client_jwt
openssl pkey -in "$d/jwt.key" -pubout -out "$d/jwt.pub" 2>/dev/null

issuer=https://idp.bench.local; audience=kms
target/release/auth-load sign "$d/jwt.key" "$issuer" "$audience" 20000 "$d/tokens"
token=$(head -1 "$d/tokens")
key_hex=$(openssl rand -hex 32)
api_token=$(printf '%s' "$key_hex" | xxd -r -p | base64 -w0)

BENCH_API_KEY_HEX=$key_hex target/release/bench-upstream "unix:$d/up.sock" & pids+=($!)
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
    --log-format json "$@" >"$log" 2>&1 & pids+=($!)
  for _ in $(seq 200); do
    grep -q 'kms-proxy listening on' "$log" 2>/dev/null && break; sleep 0.05
  done
  printf -v "$name" '%s' "$(grep -o 'listening on https://[0-9.:]*' "$log" | sed 's/.*://')"
}
# Access and audit lines are written at info; the benchmark keeps them on, as in production.
export KMS_LOG=info
start_proxy p_none
start_proxy p_mtls --authority-cert-file "$d/ca.pem"
start_proxy p_api --api-token-id bench-token --api-token-refresh-interval 60
start_proxy p_jwt --config "$d/jwt.toml"
start_proxy p_jwt_nocache --config "$d/jwt.toml" --jwt-cache-size 0
sleep 1

run() { # $1 name, $2 port, then auth-load options
  local name=$1 port=$2; shift 2
  target/release/auth-load run "https://127.0.0.1:$port" "$d/ca.pem" "$conns" 2 "$@" >/dev/null   # warm-up
  local line
  line=$(target/release/auth-load run "https://127.0.0.1:$port" "$d/ca.pem" "$conns" "$secs" "$@")
  printf '%-13s %s\n' "$name" "$line"
  rps[$name]=$(sed 's/req\/s=\([0-9.]*\).*/\1/' <<<"$line")
}
declare -A rps
echo "# auth-load: $conns keep-alive TLS 1.3 connections, ${secs}s each, GET / to a trivial upstream ($(nproc) cores)"
run none "$p_none"
run mtls "$p_mtls" --identity "$d/client-identity.pem"
run api-token "$p_api" --bearer "$api_token"
run jwt-repeated "$p_jwt" --bearer "$token"
run jwt-unique "$p_jwt_nocache" --tokens "$d/tokens"
for name in mtls api-token jwt-repeated jwt-unique; do
  awk -v a="${rps[$name]}" -v b="${rps[none]}" -v n="$name" 'BEGIN{printf "ratio %s/none = %.2f\n", n, a/b}'
done

# The same token with wrk, the client of the HAProxy baseline (shared/tools/haproxy-baseline),
# whose jwt_verify checks the signature on every request: compare with jwt-repeated-nocache.
if command -v wrk >/dev/null; then
  echo "# wrk -t1 -c$conns -d${secs}s, one repeated RS256 token"
  for t in "none $p_none" "jwt-repeated $p_jwt" "jwt-repeated-nocache $p_jwt_nocache"; do
    name=${t%% *}; port=${t#* }
    line=$(wrk -t1 -c"$conns" -d"${secs}s" --latency -H "Authorization: Bearer $token" "https://127.0.0.1:$port/" 2>&1 | awk '
      /Requests\/sec/{r=$2} / 50%/{p50=$2} / 99%/{p99=$2} /Non-2xx/{e=$NF}
      END{printf "req/s=%s p50=%s p99=%s non2xx=%s", r, p50, p99, e+0}')
    printf '%-21s %s\n' "$name" "$line"
  done
fi
exit 0
