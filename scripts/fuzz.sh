#!/usr/bin/env bash
# Coverage-guided fuzzing of samix's input readers with libFuzzer on the stable toolchain (the
# flags cargo-fuzz passes, minus its nightly-only sanitizer). Usage:
#   scripts/fuzz.sh [RUNS] [TARGET...]      RUNS per target (default 1000000); targets: config idx
#                                            cifar image_folder checkpoint extract state
#                                            safetensors (default: all)
# Crashes, hangs (-timeout) and huge allocations (the targets' allocator aborts) are failures: the
# input is saved under $SAMIX_FUZZ_WORK/artifacts/<target>/ (default target/fuzz) and the script
# exits non-zero. Corpora and logs live there too.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/env.sh
source scripts/env.sh
runs="${1:-1000000}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config idx cifar image_folder checkpoint extract state safetensors)
data="${SAMIX_TEST_DATA:-../shared/datasets}"
triple="$(rustc -vV | sed -n 's/^host: //p')"
export CARGO_TARGET_DIR=target/fuzz
# --target keeps these flags off build scripts and proc-macros (they cannot link the hooks).
# -max-loads-per-memcmp=0 keeps memcmp calls visible to libFuzzer (it reads the compared bytes).
RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-max-loads-per-memcmp=0 -Cdebug-assertions" \
  cargo build --release --quiet --manifest-path fuzz/Cargo.toml --target "$triple"
work="${SAMIX_FUZZ_WORK:-target/fuzz}"
corpus="$work/corpus"
python3 fuzz/seeds.py "$corpus" "$data" configs
for t in "${targets[@]}"; do
  mkdir -p "$corpus/$t" "$work/artifacts/$t"
  log="$work/$t.log"
  if ! "target/fuzz/$triple/release/$t" -runs="$runs" -timeout=10 -rss_limit_mb=4096 \
    -max_len=65536 -print_final_stats=1 -artifact_prefix="$work/artifacts/$t/" "$corpus/$t" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz $t: FAILED (input saved under $work/artifacts/$t/, log $log)" >&2
    exit 1
  fi
  units="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
  speed="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")"
  cov="$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1)"
  echo "fuzz $t: $units runs, $speed exec/s, $cov, 0 crashes" >&2
done
