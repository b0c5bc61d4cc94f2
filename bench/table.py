"""One Markdown table from the RESULT lines of `samix bench` and bench/ref_with_memory.py:
per method and variant, ms/step, images/s, peak memory, speed-up over PyTorch f32 eager, and
each variant's method/vanilla ratio. Usage: python3 bench/table.py results.txt"""
import re, sys

rows = []  # (variant, method, ms, mib)
for line in open(sys.argv[1]):
    m = re.match(r"RESULT samix (\w+) (?:model=\S+ )?precision=(\w+) graph=(\w+) cl=(\w+) .*?: ([\d.]+) ms/step \d+ img/s(?: peak_\w+=(\d+)MiB)?", line)
    if m:
        graph = " + CUDA graph" if m.group(3) == "true" else ""
        cl = " channels-last" if m.group(4) == "true" else ""
        rows.append((f"samix {m.group(2)}{cl}{graph}", m.group(1), float(m.group(5)), m.group(6)))
        continue
    m = re.match(r"RESULT torch (\w+) (?:model=\S+ )?amp=(\w+) cl=(\w+) .*?: ([\d.]+) ms/step \d+ img/s(?: peak_\w+=(\d+)MiB)?", line)
    if m:
        cl = " channels-last" if m.group(3) == "True" else ""
        rows.append(("PyTorch " + ("bf16 autocast" if m.group(2) == "True" else "f32") + cl, m.group(1), float(m.group(4)), m.group(5)))

base = {meth: ms for var, meth, ms, _ in rows if var == "PyTorch f32"}
vanilla = {var: ms for var, meth, ms, _ in rows if meth == "vanilla"}
print("| variant | method | ms/step | images/s | peak MiB | speed-up vs PyTorch f32 | ÷ own vanilla |")
print("|---|---|---|---|---|---|---|")
for var, meth, ms, mib in rows:
    speed = f"{base[meth] / ms:.2f}x" if meth in base else "–"
    ratio = f"{ms / vanilla[var]:.2f}" if var in vanilla else "–"
    print(f"| {var} | {meth} | {ms:.2f} | {100000 / ms:.0f} | {mib or '–'} | {speed} | {ratio} |")
