#!/usr/bin/env bash
# Runs on the device machine (torch 2.11.0+cu130 in its python3, no Rust): samix's release binary,
# built here and carried in .device/ (ignored), then the PyTorch reference, in one call, printing
# one table. Prepare here:
#   source scripts/env.sh && cargo build --release && mkdir -p .device && cp target/release/samix .device/ \
#     && cp ../shared/bench/torch_samix_ref.py .device/
# Then in one device call (carry .device):  bash bench/gpu.sh [steps] [warmup]
set -euo pipefail
cd "$(dirname "$0")/.."
steps="${1:-40}"; warmup="${2:-10}"
torch_lib="$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
out="${OUT:-/tmp}"
./.device/samix bench --device cuda --steps "$steps" --warmup "$warmup" --batch 100 | tee "$out/samix.txt"
python3 .device/torch_samix_ref.py --device cuda --steps "$steps" --warmup "$warmup" --bs 100 | tee "$out/torch.txt"
python3 .device/torch_samix_ref.py --device cuda --steps "$steps" --warmup "$warmup" --bs 100 --amp | tee "$out/torch_amp.txt"
python3 - "$out" <<'PY'
import re, sys
rows = {}
for side, f in [("samix", "samix.txt"), ("torch", "torch.txt")]:
    for line in open(f"{sys.argv[1]}/{f}"):
        m = re.match(r"RESULT \w+ (\w+) .*?: ([\d.]+) ms/step", line)
        if m: rows.setdefault(m.group(1), {})[side] = float(m.group(2))
print("| method | samix ms/step | PyTorch ms/step | samix img/s | PyTorch img/s | speed-up |")
print("|---|---|---|---|---|---|")
for k, v in rows.items():
    s, t = v.get("samix"), v.get("torch")
    if s and t: print(f"| {k} | {s:.2f} | {t:.2f} | {100000/s:.0f} | {100000/t:.0f} | {t/s:.2f}x |")
PY
