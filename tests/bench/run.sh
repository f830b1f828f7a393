#!/usr/bin/env bash
# Every benchmark of the project in one run, then one markdown table of the ratios each prints
# (every line "ratio NAME = VALUE", plus the idle-connection memory): the proxy beside HAProxy
# (the shared side-by-side tool when it is there, with JSON logs as in production), the proxy
# alone, authentication, the core (SQLite and PostgreSQL, against BASELINE when set), the HSM,
# signatures, the Kubernetes plugin, the upstream identity, idle connections, the cost of
# logging (in req/s, and in instructions per request counted by callgrind), Encrypt and Get
# through the stack with logs on, Create as the table grows (50,000 keys). With BASELINE_DIR (a
# directory holding kms-proxy and kms-core built from another revision) the logging,
# instructions, stack and create-growth benchmarks also measure those binaries in the same run.
# Benchmarks, not tests: numbers move ±15 % between runs on a 2-core machine (instruction counts
# excepted), so compare ratios measured in the same run. Takes about 22 minutes with the
# defaults (5-second runs); exits 1 when a benchmark failed.
# usage: [BASELINE=rev] [BASELINE_DIR=dir] [SIDE_BY_SIDE=path/to/run.sh] tests/bench/run.sh [seconds]
# Needs what the benchmarks need: apt-get install -y wrk haproxy softhsm2 postgresql openssl
# valgrind.
set -uo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-5}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cargo build --release -q -p kms-core -p kms-proxy -p kms-tests -p kms-k8s-plugin --bins || exit 1
side=${SIDE_BY_SIDE:-../shared/tools/side-by-side/run.sh}
run() { # $1 name, rest: command
  local name=$1; shift
  echo "## $name: $*" >&2
  if "$@" >"$out/$name.txt" 2>&1; then cat "$out/$name.txt" >&2; else
    echo "(failed: see above)" >>"$out/$name.txt"; cat "$out/$name.txt" >&2; fi
}
if [ -x "$side" ] || [ -f "$side" ]; then
  KMS_LOG_FORMAT=json run side-by-side bash "$side" "$secs" 32 2
else
  echo "## side-by-side: $side not found (set SIDE_BY_SIDE); proxy.sh's HAProxy ratio stands in" >&2
fi
run proxy bash tests/bench/proxy.sh "$secs" 32
run auth bash tests/bench/auth.sh "$secs" 32
run core bash tests/bench/core.sh "$secs"
run hsm bash tests/bench/hsm.sh "$secs"
run sign bash tests/bench/sign.sh "$secs"
run k8s-plugin bash tests/bench/k8s-plugin.sh "$secs"
run upstream-identity bash tests/bench/upstream-identity.sh "$secs" 32
run idle-connections bash tests/bench/idle-connections.sh 1000
base=${BASELINE_DIR:-}
run logging env ${base:+BASELINE_PROXY=$base/kms-proxy} bash tests/bench/logging.sh "$secs" 32
run instructions env NO_BUILD=1 ${base:+BASELINE_PROXY=$base/kms-proxy} bash tests/bench/instructions.sh 8
run stack env ${base:+BASELINE_DIR=$base} bash tests/bench/stack.sh "$secs"
run create-growth env ${base:+BASELINE_CORE=$base/kms-core} bash tests/bench/create-growth.sh 50000 "$secs"
echo
echo "| benchmark | measure | value |"
echo "|---|---|---|"
for f in "$out"/*.txt; do
  name=$(basename "$f" .txt)
  grep -E '^ratio ' "$f" | sed -E 's/^ratio (.*) = ([0-9.]+).*/\1|\2/' | while IFS='|' read -r what value; do
    echo "| $name | $what | $value |"
  done
  grep -E '^(create|encrypt) +c=' "$f" | awk -v n="$name" '{print "| " n " | " $1 " " $2 " current/baseline | " $NF " |"}'
  grep -oE 'added=[0-9.]+MiB' "$f" | sed "s/added=/| $name | RSS added by 1000 idle TLS connections | /; s/\$/ |/"
  if grep -q '(failed' "$f"; then echo "| $name | failed | see the log above |"; failed=1; fi
done
exit "${failed:-0}"
