#!/usr/bin/env python3
"""Summarise `ncu --csv --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum`
output: per kernel (template arguments dropped) the launches, total and mean µs, DRAM GB/s; then
the first N launches in order (one decode layer). Usage: ncu_summary.py FILE.csv [N]"""
import csv, re, sys
from collections import OrderedDict

rows = OrderedDict()  # launch id -> {name, metrics}
with open(sys.argv[1], newline="") as f:
    lines = [l for l in f if l.startswith('"')]
for r in csv.DictReader(lines):
    key = r["ID"]
    e = rows.setdefault(key, {"name": r["Kernel Name"], "m": {}})
    v = r["Metric Value"].replace(",", "")
    unit = r["Metric Unit"]
    try:
        x = float(v)
    except ValueError:
        continue
    scale = {"ns": 1e-3, "us": 1.0, "usecond": 1.0, "nsecond": 1e-3, "msecond": 1e3, "ms": 1e3,
             "byte": 1, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9, "KB": 1e3, "MB": 1e6, "GB": 1e9}.get(unit, 1)
    e["m"][r["Metric Name"]] = x * scale

def short(n):
    n = n.replace("(anonymous namespace)::", "").replace("<unnamed>::", "")
    n = re.sub(r"\(.*", "", n)
    return re.sub(r"<.*>", "", n).replace("void ", "").replace("dm::cuda::", "")

agg = OrderedDict()
total = 0.0
for e in rows.values():
    t = e["m"].get("gpu__time_duration.sum", 0.0)
    b = e["m"].get("dram__bytes_read.sum", 0.0) + e["m"].get("dram__bytes_write.sum", 0.0)
    a = agg.setdefault(short(e["name"]), [0, 0.0, 0.0])
    a[0] += 1; a[1] += t; a[2] += b
    total += t
print(f"{len(rows)} launches, {total:.1f} µs summed (kernels in isolation, no overlap)\n")
print("| kernel | launches | total µs | % | mean µs | DRAM GB/s |\n|---|---|---|---|---|---|")
for k, (n, t, b) in sorted(agg.items(), key=lambda kv: -kv[1][1]):
    print(f"| {k} | {n} | {t:.1f} | {100*t/total:.1f} | {t/n:.2f} | {b/(t*1e3) if t else 0:.0f} |")
# The GEMM's share (docs/performance.md: a prefill is "GEMM-bound" when scan + conv + misc take
# <= 25%): cuBLAS's kernels, the own small-M GEMV and the activation split that feeds cuBLAS.
gemm = sum(t for k, (n, t, b) in agg.items() if re.search(r"gemm|gemv|nvjet|xmma|cutlass|convert_rows|add_bias|^sm\d", k, re.I))
print(f"\nGEMM kernels (cuBLAS, gemv, activation split): {gemm:.1f} µs, {100*gemm/total:.1f}%; "
      f"the rest (scan, conv, norms, misc): {total-gemm:.1f} µs, {100*(total-gemm)/total:.1f}%")
N = int(sys.argv[2]) if len(sys.argv) > 2 else 12
if N > 0:  # the first N launches in order (one decode layer)
    print(f"\nFirst {N} launches:\n\n| # | kernel | µs | DRAM MB | GB/s |\n|---|---|---|---|---|")
    for i, e in enumerate(list(rows.values())[:N]):
        t = e["m"].get("gpu__time_duration.sum", 0.0)
        b = e["m"].get("dram__bytes_read.sum", 0.0) + e["m"].get("dram__bytes_write.sum", 0.0)
        print(f"| {i} | {short(e['name'])} | {t:.2f} | {b/1e6:.2f} | {b/(t*1e3) if t else 0:.0f} |")
