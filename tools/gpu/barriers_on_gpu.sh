#!/usr/bin/env bash
# One GPU-host call: the Vulkan recorder's barrier stages, exact (the default: a barrier after
# dispatches waits for compute shaders only) against wide (DM_VULKAN_BARRIERS=wide: every barrier
# COMPUTE|TRANSFER both ways, as before), alternating in one process order, same card:
# bench_vulkan decode (130m, twice each) and decimamba bench prefill + decode (130m); then the
# Vulkan tests on the NVIDIA driver with the exact barriers. PACK names the pack (default .gpupack).
set -u
root=$PWD
[ -d .gpu ] || tar xJf "${PACK:-.gpupack}/gpu.tar.xz"
out=${OUT:-/tmp}
cd .gpu && source ./env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/card.txt"
export DM_TEST_DATA_DIR=$root/tests/data DM_SOURCE_DIR=$root
for rep in 1 2; do
  for mode in wide exact; do
    DM_VULKAN_BARRIERS=$mode timeout 60 ./bench_vulkan --sections decode --shapes 130m \
      > "$out/decode_130m_${mode}_$rep.md" 2>/dev/null
    echo "130m decode $mode rep $rep exit $?"; grep "^| 130m" "$out/decode_130m_${mode}_$rep.md"
  done
done
for mode in wide exact; do
  DM_VULKAN_BARRIERS=$mode timeout 90 ./decimamba bench --shape 130m --backend vulkan -p 4096 \
    -n 64 -r 3 > "$out/bench_130m_$mode.md" 2>&1
  echo "bench 130m $mode exit $?"; grep "^| vulkan" "$out/bench_130m_$mode.md"
done
timeout 120 ./decimamba_tests --gtest_brief=1 \
  --gtest_filter='*Vulkan*:BackendOps.*:*E2E*:*DecodeReplay*:BackendRecord.*:*FusedStep*' \
  > "$out/tests_vulkan.log" 2>&1
echo "vulkan tests exit $?"; grep -E "^\[  (FAILED|PASSED) " "$out/tests_vulkan.log" | head
