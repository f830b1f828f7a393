# Set-up shared by the benchmark scripts (sourced, not run, from the repository's root).

# A temporary directory $d (readable by the postgres user), and the array pids: every process
# added to it is killed, and the directory removed, when the script exits.
workdir() {
  d=$(mktemp -d); chmod 755 "$d"; pids=()
  trap cleanup EXIT
}
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$d"; }

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# A self-signed P-256 server certificate for localhost and 127.0.0.1: $d/cert.pem, $d/key.pem.
self_signed_cert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/key.pem" -out "$d/cert.pem" \
    -days 1 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -addext basicConstraints=critical,CA:FALSE 2>/dev/null
}

# A CA ($d/ca.pem), a server certificate ($d/server.pem, .key), a client certificate for
# CN=bench ($d/client.pem, .key, and both in $d/client-identity.pem), and an RSA key for JWTs
# ($d/jwt.key).
ca_server_client_jwt() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/ca.key" -out "$d/ca.pem" \
    -days 1 -subj "/CN=bench CA" 2>/dev/null
  local name subject ext
  for spec in "server|/CN=localhost|subjectAltName=DNS:localhost,IP:127.0.0.1" \
              "client|/CN=bench|extendedKeyUsage=clientAuth"; do
    IFS='|' read -r name subject ext <<<"$spec"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/$name.key" -out "$d/$name.csr" \
      -subj "$subject" 2>/dev/null
    printf '%s\n' "$ext" > "$d/$name.ext"
    openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 1 \
      -extfile "$d/$name.ext" -out "$d/$name.pem" 2>/dev/null
  done
  cat "$d/client.pem" "$d/client.key" > "$d/client-identity.pem"
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$d/jwt.key" 2>/dev/null
}

# A throwaway PostgreSQL cluster in $d/pg on a free port (as the postgres user when root),
# user kms, trust authentication. Sets pgbin and pgport; the server joins pids.
start_postgres() {
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  run_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  mkdir -p "$d/pg"; [ "$(id -u)" = 0 ] && chown postgres: "$d/pg"
  run_pg "$pgbin/initdb" -D "$d/pg/data" -U kms --auth=trust -E UTF8 >/dev/null
  pgport=$(free_port)
  run_pg "$pgbin/postgres" -D "$d/pg/data" -h 127.0.0.1 -p "$pgport" -k "$d/pg" >/dev/null 2>&1 & pids+=($!)
  for _ in $(seq 100); do "$pgbin/pg_isready" -q -h 127.0.0.1 -p "$pgport" && break; sleep 0.1; done
}
