#!/usr/bin/env bash
# The Vulkan rms_norm with its row in registers (default) against the loop (DM_VULKAN_NORM_LOOP=1),
# alternating twice: bench_vulkan --sections decode (130m, 2.8b: per-kernel tables, µs/token with
# the fused decode path as configured) and decimamba bench's Vulkan decode and prefill.
# VK_ENV (optional) is prepended to every run (e.g. "DM_VULKAN_BLOCK_STEP=0"). Logs to $OUT.
set -u
source "$PWD/tools/gpu/unpack.sh"
gpu_enter "${PACK:-.gpupack}" || exit 1
timeout 200 ./decimamba_tests --gtest_filter='*RmsNorm*:*BackendOpsE2E*' \
  > "$out/tests.log" 2>&1
echo "tests exit $?"; grep -E "^\[  (FAILED|PASSED) |tests? from .* ran" "$out/tests.log"
for rep in 1 2; do
  for loop in 1 0; do
    env ${VK_ENV:-} DM_VULKAN_NORM_LOOP=$loop timeout 150 ./bench_vulkan --sections decode \
      > "$out/dec_${loop}_$rep.md" 2> "$out/dec_${loop}_$rep.json"
    echo "bench_vulkan decode NORM_LOOP=$loop run $rep exit $?"
    grep -E "^\| (130m|2.8b)|rms_norm" "$out/dec_${loop}_$rep.md" | head -12
    env ${VK_ENV:-} DM_VULKAN_NORM_LOOP=$loop timeout 150 ./decimamba bench --shape 130m \
      --backend vulkan -p 4096 -n 64 -r 3 --no-deci > "$out/b130_${loop}_$rep.md" 2>&1
    echo "130m NORM_LOOP=$loop run $rep exit $?"; grep "^| vulkan" "$out/b130_${loop}_$rep.md"
  done
done
