#!/usr/bin/env bash
# One GPU-host call for session 12's Vulkan prompt-scan work (shaders/selective_scan_warp2.comp's
# OPT bits, DM_VULKAN_SCAN_WARP=CB,R,PREP2,OPT): the scan tests with the default scan and with
# each mode of TEST_MODES forced (CB,R,PREP2,OPT), then selective_scan timed per mode of MODES_A
# at WIDTHS_A and per mode of MODES_B at WIDTHS_B (two bench_vulkan processes, same card), e.g.
#   PACK=.gpupack-vkscan12 TEST_MODES="12,8,1,11" MODES_A="default;warp:12,8,1,0;warp:12,8,1,11" \
#     WIDTHS_A=1536,3072 MODES_B="default;warp:8,4,1,0" WIDTHS_B=2048 tools/gpu/vkscan12_on_gpu.sh
# Builds nothing; logs go to $OUT as one tar.
set -u
source "$PWD/tools/gpu/unpack.sh"
gpu_enter "${PACK:-.gpupack-vkscan12}" || exit 1
logs=$(mktemp -d)
f='BackendOps.SelectiveScan*:BackendOpsVulkan.SelectiveScanPaths:*BackendOpsE2E*'
{
  echo "== default scan"
  timeout 120 ./decimamba_tests --gtest_filter="$f"; echo "exit $?"
  for m in ${TEST_MODES:-}; do
    echo "== DM_VULKAN_SCAN=warp DM_VULKAN_SCAN_WARP=$m"
    DM_VULKAN_SCAN=warp DM_VULKAN_SCAN_WARP=$m timeout 120 ./decimamba_tests --gtest_filter="$f"
    echo "exit $?"
  done
} > "$logs/tests.log" 2>&1
grep -E "^== |^exit |^\[  (FAILED|PASSED) |tests? from .* ran" "$logs/tests.log" | head -40
for ab in A B; do
  mv=MODES_$ab wv=WIDTHS_$ab
  [ -n "${!mv:-}" ] || continue
  timeout "${BENCH_TIMEOUT:-150}" ./bench_vulkan --sections kernels --kernels selective_scan \
    --widths "${!wv}" --lengths "${LENGTHS:-4096,16384}" --scan-modes "${!mv}" \
    > "$logs/scan_$ab.md" 2> "$logs/scan_$ab.json"
  echo "bench $ab exit $?"
  grep -h "selective_scan" "$logs/scan_$ab.md" | awk -F'|' '{print $2 "|" $3 "|" $4 "|" $7}'
done
cp "$out/card.txt" "$logs/" 2>/dev/null
tar czf "$out/vkscan12_logs.tgz" -C "$logs" .
