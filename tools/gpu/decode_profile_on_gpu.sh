#!/usr/bin/env bash
# One GPU-host call that shows where a decode step's time goes, on both backends:
#   1. the FusedStep tests (the Vulkan fused decode shaders among them);
#   2. bench_vulkan --sections decode: µs/token with the fused shaders off and on, and each
#      kernel's device time of a profiled step;
#   3. ncu over one eager CUDA decode step per shape (bench_cuda decode-profile): each kernel's
#      time and DRAM bytes in isolation, summarised by tools/gpu/ncu_summary.py;
#   4. (SCAN_PROFILE=1, the default) ncu --set full over the default CUDA scan's first launch.
# PACK names the pack folder (default .gpupack). Logs go to $OUT.
set -u
source "$PWD/tools/gpu/unpack.sh"
gpu_enter "${PACK:-.gpupack}" || exit 1
SHAPES=${SHAPES:-130m,2.8b}
timeout 60 ./decimamba_tests --gtest_filter='*FusedStep*' > "$out/fused_tests.log" 2>&1
echo "FusedStep tests exit $?"; grep -E "^\[  (FAILED|PASSED) " "$out/fused_tests.log" | head
timeout 150 ./bench_vulkan --sections decode --shapes "$SHAPES" > "$out/vulkan_decode.md" 2> "$out/vulkan_decode.json"
echo "bench_vulkan decode exit $?"; grep "^| " "$out/vulkan_decode.md"
for shape in ${SHAPES//,/ }; do
  timeout 200 ncu --profile-from-start off --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \
    --csv ./bench_cuda decode-profile "$shape" > "$out/ncu_decode_$shape.csv" 2>> "$out/ncu.err"
  echo "ncu decode $shape exit $?"
  python3 "$root/tools/gpu/ncu_summary.py" "$out/ncu_decode_$shape.csv" 16 > "$out/ncu_decode_$shape.md"
  head -24 "$out/ncu_decode_$shape.md"
done
# 4. the default CUDA scan at d_inner 1536 (its first launch), every section: where it stalls.
if [ -n "${SCAN_PROFILE:-1}" ]; then
  timeout 150 ncu --set full -k regex:scan_v6 -c 1 ./bench_cuda scan > "$out/ncu_scan.txt" 2>> "$out/ncu.err"
  echo "ncu scan exit $?"
  grep -E "Duration|Issue Slots Busy|Warp Cycles Per Issued|No Eligible|Achieved Occupancy|Registers Per|Stall|Executed Ipc" "$out/ncu_scan.txt" | head -30
fi
