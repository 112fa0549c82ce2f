#!/usr/bin/env bash
# One GPU-host call for the Vulkan prompt-scan work: the scan tests (default scan, then each
# mode of TEST_MODES forced: MODE or MODE:SHAPE, SHAPE going to DM_VULKAN_SCAN_WARP), then
# selective_scan timed once per mode of SCAN_MODES in one bench_vulkan run (same card, same
# process), then a short table.
#   PACK=.gpupack-vkscan TEST_MODES="warp warp:12,8 warp:12,8,0" \
#     SCAN_MODES="default;chunked;warp:12,8,0" tools/gpu/vkscan_on_gpu.sh
# (warp:CB,R[,PREP2]: DM_VULKAN_SCAN_WARP, shaders/selective_scan_warp2.comp's shape and prep map;
# seg:CB,S,R: DM_VULKAN_SCAN_SEG, shaders/selective_scan_seg.comp's shape.) SEG_SHAPES="4,8,8
# 8,8,8": selective_scan timed once more per shape with DM_VULKAN_SCAN=seg, one bench_vulkan
# process per shape (bench_vulkan's --scan-modes sets no DM_VULKAN_SCAN_SEG), same card.
# Builds nothing; unpacks the pack afresh (tools/gpu/unpack.sh); logs go to $OUT as one tar.
set -u
source "$PWD/tools/gpu/unpack.sh"
gpu_enter "${PACK:-.gpupack-vkscan}" || exit 1
logs=$(mktemp -d)
f='BackendOps.SelectiveScan*:BackendOpsVulkan.SelectiveScanPaths:*BackendOpsE2E*'
{
  echo "== default scan"
  timeout 120 ./decimamba_tests --gtest_filter="$f"; echo "exit $?"
  for m in ${TEST_MODES:-warp}; do
    echo "== DM_VULKAN_SCAN=$m"
    if [[ $m == seg:* ]]; then
      DM_VULKAN_SCAN=seg DM_VULKAN_SCAN_SEG=${m#*:} timeout 120 ./decimamba_tests \
        --gtest_filter="$f"
    elif [[ $m == *:* ]]; then
      DM_VULKAN_SCAN=${m%%:*} DM_VULKAN_SCAN_WARP=${m#*:} timeout 120 ./decimamba_tests \
        --gtest_filter="$f"
    else
      DM_VULKAN_SCAN=$m timeout 120 ./decimamba_tests --gtest_filter="$f"
    fi
    echo "exit $?"
  done
} > "$logs/tests.log" 2>&1
grep -E "^== |^exit |^\[  (FAILED|PASSED) |tests? from .* ran" "$logs/tests.log" | head -40
timeout "${BENCH_TIMEOUT:-150}" ./bench_vulkan --sections kernels --kernels selective_scan \
  --widths "${WIDTHS:-1536,5120}" --lengths "${LENGTHS:-4096,16384}" \
  --scan-modes "${SCAN_MODES:-chunked;warp}" \
  > "$logs/scan_vulkan.md" 2> "$logs/scan_vulkan.json"
echo "bench_vulkan exit $?"
grep -h "selective_scan" "$logs/scan_vulkan.md" | head -80
for sh in ${SEG_SHAPES:-}; do
  DM_VULKAN_SCAN_SEG=$sh timeout "${BENCH_TIMEOUT:-150}" ./bench_vulkan --sections kernels \
    --kernels selective_scan --widths "${WIDTHS:-1536,5120}" --lengths "${LENGTHS:-4096,16384}" \
    --scan-modes seg > "$logs/scan_seg_$sh.md" 2> "$logs/scan_seg_$sh.json"
  echo "seg $sh: bench_vulkan exit $?"
  grep -h "selective_scan" "$logs/scan_seg_$sh.md" | sed "s/\[seg\]/[seg:$sh]/" | head -20
done
cp "$out/card.txt" "$logs/" 2>/dev/null
tar czf "$out/vkscan_logs.tgz" -C "$logs" .
