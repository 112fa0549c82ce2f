#!/usr/bin/env bash
# One GPU-host call for session 6's warp-scan switches (shaders/selective_scan_warp2.comp; now
# only PREP2 is left): the scan tests with the default scan, then DM_VULKAN_SCAN=warp with each
# shape of TEST_SHAPES (CB,R[,PREP2], to DM_VULKAN_SCAN_WARP), then selective_scan timed once per
# mode of SCAN_MODES in one bench_vulkan run (same card, same process), then a short table.
#   PACK=.gpupack-vkscan TEST_SHAPES="12,8,0 8,8" SCAN_MODES="default;chunked;warp:12,8,0" \
#     tools/gpu/vkscan6_switches_on_gpu.sh
# Builds nothing; unpacks the pack afresh (tools/gpu/unpack.sh); logs go to $OUT as one tar.
set -u
source "$PWD/tools/gpu/unpack.sh"
gpu_enter "${PACK:-.gpupack-vkscan}" || exit 1
logs=$(mktemp -d)
f='BackendOps.SelectiveScan*:BackendOpsVulkan.SelectiveScanPaths:*BackendOpsE2E*'
{
  echo "== default scan"
  timeout 120 ./decimamba_tests --gtest_filter="$f"; echo "exit $?"
  for s in ${TEST_SHAPES:-}; do
    echo "== DM_VULKAN_SCAN=warp DM_VULKAN_SCAN_WARP=$s"
    DM_VULKAN_SCAN=warp DM_VULKAN_SCAN_WARP=$s timeout 120 ./decimamba_tests --gtest_filter="$f"
    echo "exit $?"
  done
} > "$logs/tests.log" 2>&1
grep -E "^== |^exit |^\[  (FAILED|PASSED) " "$logs/tests.log" | head -40
timeout "${BENCH_TIMEOUT:-200}" ./bench_vulkan --sections kernels --kernels selective_scan \
  --widths "${WIDTHS:-1536,5120}" --lengths "${LENGTHS:-4096,16384}" \
  --scan-modes "${SCAN_MODES:-default;chunked}" \
  > "$logs/scan_vulkan.md" 2> "$logs/scan_vulkan.err"
echo "bench_vulkan exit $?"
grep -h "selective_scan\[" "$logs/scan_vulkan.md" | awk -F'|' '{printf "%-28s %-22s %9s %5s\n", $2, $3, $4, $7}'
cp "$out/card.txt" "$logs/" 2>/dev/null
tar czf "$out/vkscan6_logs.tgz" -C "$logs" .
