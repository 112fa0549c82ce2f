#!/usr/bin/env bash
# One GPU-host call that checks and times CUDA selective_scan variants side by side:
#   TESTS="default v7n ..."  the scan and end-to-end tests (*SelectiveScan*:*BackendOpsE2E*) once
#                            per DM_CUDA_SCAN value ("default": unset), logs appended to tests.log;
#   BENCH="v6 v7a ..."       bench_cuda copy,scan once per value (widths 1536 … 5120, L 4K / 16K),
#                            then one table: µs per variant, and the best variant per shape;
#   SANITIZE="v7n ..."       compute-sanitizer memcheck and racecheck over the small CUDA scan cases
#                            (DM_CUDA_TEST_SMALL=1) with each value forced (SAN_TIMEOUT seconds
#                            per tool and value, default 100).
# PACK names the pack folder (default .gpupack-scan). Logs go to $OUT (at most 5 files).
# Example (session 2 of v7, cuda/README.md):
#   TESTS="default v7l v7m" BENCH="v6 v7a v7e v7l v7m default" SANITIZE="v7l v7m" \
#     SAN_TIMEOUT=40 bash tools/gpu/scan_variants_on_gpu.sh
set -u
source "$PWD/tools/gpu/unpack.sh"
gpu_enter "${PACK:-.gpupack-scan}" || exit 1
with_scan() {  # with_scan VALUE CMD...: CMD with DM_CUDA_SCAN=VALUE ("default": unset)
  local v=$1; shift
  if [ "$v" = default ]; then env -u DM_CUDA_SCAN "$@"; else DM_CUDA_SCAN=$v "$@"; fi
}
for v in ${TESTS:-}; do
  t0=$SECONDS
  echo "=== DM_CUDA_SCAN=$v" >> "$out/tests.log"
  with_scan "$v" timeout 120 ./decimamba_tests --gtest_filter='*SelectiveScan*:*BackendOpsE2E*' \
    >> "$out/tests.log" 2>&1
  rc=$?
  echo "tests $v exit $rc ($((SECONDS - t0)) s): $(tail -n 40 "$out/tests.log" | grep -E '^\[  (PASSED|FAILED) ' | tr '\n' ' ')"
done
for v in ${BENCH:-}; do
  with_scan "$v" timeout 100 ./bench_cuda copy,scan 2>/dev/null | grep '^| selective_scan' | sed "s/^/$v /"
done > "$out/scan.md"
if [ -s "$out/scan.md" ]; then
  # variant | kernel | shape | µs | ... -> one row per shape, one column per variant.
  awk -F'|' '{ v = $1; gsub(/ /, "", v); sh = $3; gsub(/^ +| +z +$/, "", sh); us = $4 + 0
               if (!(sh in seen)) { seen[sh] = 1; shapes[++ns] = sh }
               if (!(v in vseen)) { vseen[v] = 1; vars[++nv] = v }
               t[sh, v] = us; pct[sh, v] = $7 }
       END { printf "| shape |"; for (j = 1; j <= nv; ++j) printf " %s |", vars[j]; print " best |"
             for (i = 1; i <= ns; ++i) { sh = shapes[i]; best = ""; bu = 1e30; printf "| %s |", sh
               for (j = 1; j <= nv; ++j) { u = t[sh, vars[j]]; printf " %.1f |", u
                 if (u > 0 && u < bu) { bu = u; best = vars[j] " " pct[sh, vars[j]] } }
               print " " best " |" } }' "$out/scan.md" | tee "$out/scan_table.md"
fi
export DM_CUDA_TEST_SMALL=1
for v in ${SANITIZE:-}; do
  for tool in memcheck racecheck; do
    with_scan "$v" timeout ${SAN_TIMEOUT:-100} compute-sanitizer --tool $tool --error-exitcode 9 ./decimamba_tests \
      --gtest_filter='CudaBackend.SelectiveScan' >> "$out/sanitizer.log" 2>&1
    echo "compute-sanitizer $tool $v exit $?: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/sanitizer.log" | tail -1)"
  done
done
