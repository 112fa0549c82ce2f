#!/usr/bin/env bash
# One GPU-host call for the Vulkan tensor-core GEMM work: the GEMM and end-to-end tests with the
# default choice, then with each variant of TEST_VARIANTS forced (DM_VULKAN_GEMM_COOPMAT; the
# tests of VARIANT_FILTER, default BackendOps.Gemm and the end-to-end ones), then
# the prefill GEMMs timed once per variant of GEMM_VARIANTS in one bench_vulkan run (same card,
# same process; pivoted to one row per shape), then `decimamba bench` prefill per E2E_VARIANTS.
#   PACK=.gpupack-vkgemm TEST_VARIANTS="n256 t32" GEMM_VARIANTS="default,n256,t32,n128" \
#     E2E_VARIANTS="default n256" E2E_SHAPES="130m 2.8b" tools/gpu/vkgemm_on_gpu.sh
# Builds nothing; unpacks the pack afresh (tools/gpu/unpack.sh); logs go to $OUT as one tar.
set -u
source "$PWD/tools/gpu/unpack.sh"
gpu_enter "${PACK:-.gpupack-vkgemm}" || exit 1
logs=$(mktemp -d)
f='BackendOps.Gemm*:BackendOpsVulkan.Gemm*:*BackendOpsE2E*'
{
  echo "== default"
  timeout 180 ./decimamba_tests --gtest_filter="$f"; echo "exit $?"
  for v in ${TEST_VARIANTS-}; do
    echo "== DM_VULKAN_GEMM_COOPMAT=$v"
    DM_VULKAN_GEMM_COOPMAT=$v timeout 180 ./decimamba_tests \
      --gtest_filter="${VARIANT_FILTER:-BackendOps.Gemm:*BackendOpsE2E*}"
    echo "exit $?"
  done
} > "$logs/tests.log" 2>&1
grep -E "^== |^exit |^\[  (FAILED|PASSED) |tests? from .* ran|Failure|nmse" "$logs/tests.log" | head -60
timeout "${BENCH_TIMEOUT:-200}" ./bench_vulkan --sections kernels --kernels gemm \
  --widths "${WIDTHS:-1536,5120}" --lengths "${LENGTHS:-4096,16384}" --reps "${REPS:-10}" \
  --gemm-variants "${GEMM_VARIANTS:-default,n256,n128}" \
  > "$logs/gemm_vulkan.md" 2> "$logs/gemm_vulkan.json"
echo "bench_vulkan exit $?"
# One row per shape, one column of device µs per variant (the bench's JSON lines).
python3 - "$logs/gemm_vulkan.json" <<'EOF' | tee "$logs/gemm_pivot.md"
import json, sys
rows, cols = {}, []
for line in open(sys.argv[1]):
    if not line.startswith('{"bench":"vulkan_gemm"'):
        continue
    r = json.loads(line)
    key = (r["gemm"], r["M"], r["N"], r["K"])
    rows.setdefault(key, {})[r["variant"]] = r["us"]
    if r["variant"] not in cols:
        cols.append(r["variant"])
print("| gemm | M | N | K | " + " | ".join(cols) + " | best |")
print("|---|---:|---:|---:|" + "---:|" * len(cols) + "---|")
for (g, M, N, K), v in rows.items():
    best = min(v, key=v.get)
    tf = 2.0 * M * N * K / (v[best] * 1e-6) / 1e12
    print(f"| {g} | {M} | {N} | {K} | " + " | ".join(f"{v[c]:.1f}" if c in v else "-" for c in cols)
          + f" | {best} ({tf:.0f} TFLOP/s) |")
EOF
for shape in ${E2E_SHAPES:-130m}; do
  for v in ${E2E_VARIANTS-}; do
    echo "== decimamba bench $shape, DM_VULKAN_GEMM_COOPMAT=$v"
    if [ "$v" = default ]; then unset DM_VULKAN_GEMM_COOPMAT; else export DM_VULKAN_GEMM_COOPMAT=$v; fi
    timeout 120 ./decimamba bench --backend vulkan --shape "$shape" -p 4096,16384 -n 1 -r 2 \
      --no-deci 2>&1 | tee -a "$logs/e2e.log" | grep -E "pp|prefill" | head -8
  done
done
unset DM_VULKAN_GEMM_COOPMAT
cp "$out/card.txt" "$logs/" 2>/dev/null
tar czf "$out/vkgemm_logs.tgz" -C "$logs" .
