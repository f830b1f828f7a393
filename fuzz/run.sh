#!/usr/bin/env bash
# Runs every fuzz target (or those in TARGETS) for SECONDS each (default 60), starting from and
# growing the committed corpora in fuzz/corpus/<target>. Not part of CI: libFuzzer needs a
# compiler feature of nightly Rust, enabled here on the stable toolchain with RUSTC_BOOTSTRAP.
# Crashes land in fuzz/artifacts/<target>/; reproduce one with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -s none <target> fuzz/artifacts/<target>/<file>
#   bash fuzz/run.sh 600                      # ten minutes each
#   TARGETS=ttlv_json bash fuzz/run.sh 3600   # one target, one hour
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
for target in ${TARGETS:-ttlv_json jwt_parse proxy_config}; do
  echo "fuzz/run.sh: $target for ${seconds}s"
  # Safe Rust only (unsafe_code is forbidden), so no sanitizer: libFuzzer finds panics,
  # hangs (-timeout) and runaway memory (-rss_limit_mb) at full speed.
  cargo fuzz run --sanitizer none "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done
