#!/usr/bin/env bash
# Builds, here, what bench/gpu.sh runs on the device machine, into the ignored folder .device/:
# the release binary and the release build of tests/native.rs (its cuda_* tests only do anything
# on a GPU), both linked against this machine's torch 2.11.0, plus the PyTorch reference.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --release --quiet
test_bin="$(cargo test --release --no-run --test native --message-format=json 2>/dev/null \
  | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "native" and m.get("executable"):
        print(m["executable"])')"
mkdir -p .device
cp target/release/samix .device/samix
cp "$test_bin" .device/native-tests
cp bench/torch_samix_ref.py .device/
strip --strip-debug .device/samix .device/native-tests
du -sh .device
