#!/usr/bin/env bash
# tools/gpu/deci_kernels_on_gpu.sh: DeciMamba's own CUDA kernels (dt_importance, topk_indices,
# gather_rows) on the GPU host, a build before the change (OLD_PACK) against the build with it
# (PACK), in one call:
#   tests   the new build's decimamba_tests over the decimation kernels and the end-to-end tests
#   ncu     both builds under ncu, one 32K-token 130m prefill decimating at layer 12 (L_base 2000,
#           bench_cuda prefill-profile): each launch of the three kernels, and their sums
#   bench   `decimamba bench --shape 130m -p 32768` off and decimating, both builds alternating
#           twice, then --no-deci once each
# (default: all). PACK (default .gpupack-deci) and OLD_PACK (default .gpupack-deci-old) name the
# pack folders; logs go to $OUT (new0 is the new build as is, newN its run under the N-th
# NEW_ENV setting).
set -u
source "$PWD/tools/gpu/unpack.sh"
sections=${*:-tests ncu bench}
has() { [[ " $sections " == *" $1 "* ]]; }
# NEW_ENV: ';'-separated settings (VAR=VALUE ...) under which the new build also runs: each
# is tested and timed beside the plain run.
IFS=';' read -ra VARIANTS <<< "${NEW_ENV:-}"
VARIANTS=("" "${VARIANTS[@]}")
gpu_enter "${OLD_PACK:-.gpupack-deci-old}" || exit 1
old=$PWD
cd "$root" && gpu_unpack "${PACK:-.gpupack-deci}" || exit 1
new=$PWD
if has tests; then
  f='*Topk*:*TopK*:*Gather*:*DtImportance*:*E2E*:*Decimat*:-Cli*'
  for i in "${!VARIANTS[@]}"; do
    v=${VARIANTS[$i]}
    (cd "$new" && env $v timeout 200 ./decimamba_tests --gtest_filter="$f" > "$out/tests_$i.log" 2>&1)
    echo "tests ($f)${v:+ with $v} exit $?"
    grep -E "^\[  (FAILED|PASSED) |tests? from .* ran" "$out/tests_$i.log" | head -20
  done
fi
if has ncu; then
  for bv in old "${!VARIANTS[@]}"; do
    if [ "$bv" = old ]; then b=old v= tag=old; else b=new v=${VARIANTS[$bv]} tag=new$bv; fi
    dir=${!b}
    (cd "$dir" && env $v DM_BENCH_PROFILE_TOKENS=32768 DM_BENCH_PROFILE_DECI=12:2000 timeout 200 ncu \
      --profile-from-start off --kernel-name regex:'dt_importance|topk_indices|gather_rows' \
      --metrics gpu__time_duration.sum --csv ./bench_cuda prefill-profile 130m \
      > "$out/ncu_$tag.csv" 2>> "$out/ncu.err")
    echo "ncu $tag${v:+ ($v)} exit $?"
    python3 - "$out/ncu_$tag.csv" "$tag" <<'EOF'
import csv, re, sys
lines = [l for l in open(sys.argv[1]) if l.startswith('"')]
scale = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3}
runs, sums = [], {}
for r in csv.DictReader(lines):
    if r["Metric Name"] != "gpu__time_duration.sum":
        continue
    name = re.sub(r"<.*", "", re.sub(r"\(.*", "", r["Kernel Name"].replace("void ", "")))
    name = name.split("::")[-1]
    us = float(r["Metric Value"].replace(",", "")) * scale.get(r["Metric Unit"], 1)
    runs.append(f"{name} {us:.1f}")
    sums[name] = sums.get(name, 0.0) + us
print(f"{sys.argv[2]}: " + "; ".join(runs))
print(f"{sys.argv[2]} sums (us): " + ", ".join(f"{k} {v:.1f}" for k, v in sums.items()) +
      f"; all {sum(sums.values()):.1f}")
EOF
  done
fi
if has bench; then
  args=(bench --shape 130m --backend cuda -p 32768 -n 1 -r 3)
  for round in 1 2; do
    for bv in old "${!VARIANTS[@]}"; do
      if [ "$bv" = old ]; then b=old v= tag=old; else b=new v=${VARIANTS[$bv]} tag=new$bv; fi
      tag=${tag}_$round
      dir=${!b}
      env $v timeout 120 "$dir/decimamba" "${args[@]}" --deci-layers 12 --deci-L-base 2000 \
        > "$out/bench_$tag.log" 2>&1
      echo "bench $tag${v:+ ($v)} exit $?"
      grep -E "pp32768" "$out/bench_$tag.log"
    done
  done
  for b in old new; do
    dir=${!b}
    timeout 120 "$dir/decimamba" "${args[@]}" --no-deci > "$out/bench_${b}_nodeci.log" 2>&1
    echo "bench $b --no-deci exit $?"
    grep -E "pp32768" "$out/bench_${b}_nodeci.log"
  done
fi
cd "$root" && tar czf "$out/logs.tgz" -C "$out" --exclude=logs.tgz . 2>/dev/null
