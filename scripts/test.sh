#!/usr/bin/env bash
# Sets up torch (once), makes sure the real datasets the tests read are there, builds and runs the
# whole test suite, then builds the examples and runs samix_loop on a small slice. Tests read the
# datasets from ../shared/datasets (beside the project root); where that folder lacks one, it is
# downloaded and verified into the data directory (`samix data download`; $SAMIX_DATA, else
# ~/.cache/samix/data) and the tests read that directory instead. Extra arguments go to
# `cargo test`. Ends with one total line, "tests: N passed, M failed".
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh" >&2
# shellcheck source=scripts/env.sh
source "$root/scripts/env.sh"
cd "$root"

# The datasets the tests read, by the name `samix data download` knows them under.
declare -A wanted=([cifar-100-binary.tar.gz]=cifar100 [fashion-mnist]=fashion-mnist [mnist]=mnist)
shared="$root/../shared/datasets"
missing=()
for f in "${!wanted[@]}"; do
  [ -e "$shared/$f" ] || missing+=("$f")
done
if [ "${#missing[@]}" -gt 0 ]; then
  data_dir="${SAMIX_DATA:-${XDG_CACHE_HOME:-$HOME/.cache}/samix/data}"
  echo "tests: $shared lacks ${missing[*]}; fetching the test datasets into $data_dir" >&2
  for f in "${!wanted[@]}"; do
    if [ ! -e "$data_dir/$f" ] && [ -e "$shared/$f" ]; then
      mkdir -p "$data_dir" && cp -r "$shared/$f" "$data_dir/$f"
    fi
    if ! timeout 1800 cargo run --release --quiet -- data download "${wanted[$f]}" --to "$data_dir" >&2; then
      echo "tests: missing dataset $data_dir/$f (not in $shared, and the download failed)" >&2
      exit 1
    fi
  done
  export SAMIX_TEST_DATA="$data_dir"
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
# One line of the totals for a check outside cargo test: `record NAME COMMAND...` runs it.
record() {
  local name="$1"
  shift
  if "$@" 2>&1 | tee -a "$log"; then
    echo "test $name ... ok" | tee -a "$log"
    echo "test result: ok. 1 passed; 0 failed; 0 ignored" >> "$log"
  else
    echo "test $name ... FAILED" | tee -a "$log"
    echo "test result: FAILED. 0 passed; 1 failed; 0 ignored" >> "$log"
    status=1
  fi
}
cargo test --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
# The examples build with the tests; one runs on a real slice (it fails if its loss does not fall).
example_dir="${SAMIX_TEST_DATA:-$shared}/fashion-mnist"
if [ "$#" -eq 0 ]; then
  record "example samix_loop" cargo run --quiet --example samix_loop -- "$example_dir" 40
fi
# The Python package: its extension built in place (debug, beside the tests' build), its tests
# (tests/python, pytest) and its worked example on a CIFAR-100 slice (it fails if its loss does
# not fall). pytest's summary line is added to the totals below.
if [ "$#" -eq 0 ]; then
  if scripts/python_inplace.sh 2>&1 | tee -a "$log"; then
    pylog="$(mktemp)"
    pytest_status=0
    PYTHONPATH="$root/python" timeout 1800 python -m pytest -q -p no:cacheprovider tests/python 2>&1 | tee "$pylog" || pytest_status=$?
    # pytest's last line: "N passed[, M failed][, K skipped][, E errors] in …"; none at all (a crash, a
    # timeout, an import error) counts as one failure.
    summary="$(grep -E ' in [0-9.]+s' "$pylog" | tail -1 || true)"
    py_passed="$( (grep -oE '[0-9]+ passed' <<<"$summary" || true) | awk '{s+=$1} END {print s+0}')"
    py_failed="$( (grep -oE '[0-9]+ (failed|errors?)' <<<"$summary" || true) | awk '{s+=$1} END {print s+0}')"
    # Skipped: the CUDA tests on a machine without a GPU, reported like cargo's ignored tests.
    py_skipped="$( (grep -oE '[0-9]+ skipped' <<<"$summary" || true) | awk '{s+=$1} END {print s+0}')"
    if [ "$pytest_status" -ne 0 ] && [ "$py_failed" -eq 0 ]; then py_failed=1; fi
    [ "$pytest_status" -eq 0 ] || status=1
    rm -f "$pylog"
    echo "test result: pytest. $py_passed passed; $py_failed failed; $py_skipped ignored" >> "$log"
    cifar="${SAMIX_TEST_DATA:-$shared}/cifar-100-binary.tar.gz"
    record "example pytorch_online_samix.py" env PYTHONPATH="$root/python" timeout 1800 python examples/pytorch_online_samix.py "$cifar" 30
  else
    echo "test python package ... FAILED (the extension did not build)" | tee -a "$log"
    echo "test result: FAILED. 0 passed; 1 failed; 0 ignored" >> "$log"
    status=1
  fi
fi
passed=$(grep -oE '^test result: .* ([0-9]+) passed' "$log" | grep -oE '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -oE '^test result: .* ([0-9]+) failed' "$log" | grep -oE '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
echo "tests: $passed passed, $failed failed"
exit "$status"
