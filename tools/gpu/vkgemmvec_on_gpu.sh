#!/usr/bin/env bash
# The SIMT prefill GEMM with and without 16-byte loads (gemm.vec128 against gemm.tile128:
# DM_VULKAN_GEMM_VEC=0 off, any other value on; shaders/gemm_vec.comp), cooperative matrices off
# (what devices without them run): TESTS=1 first runs GemmVecPaths (bit for bit against
# gemm.tile128), then bench_vulkan's prefill GEMMs, then decimamba bench's 130m Vulkan prefill,
# for each value of VECS (default "0 1") in turns, ROUNDS times (default 2). PACK names the
# pack. Builds nothing.
set -u
source "$PWD/tools/gpu/unpack.sh"
gpu_enter "${PACK:-.gpupack}" || exit 1
export DM_VULKAN_COOPMAT=0
if [ "${TESTS:-0}" = 1 ]; then
  timeout 60 ./decimamba_tests --gtest_filter='*GemmVecPaths*' 2>&1 | grep -E "^\[  (FAILED|PASSED) |Failure|differ"
fi
for r in $(seq "${ROUNDS:-2}"); do
  for v in ${VECS:-0 1}; do
    DM_VULKAN_GEMM_VEC=$v timeout 200 ./bench_vulkan --sections kernels --kernels gemm \
      --widths ${WIDTHS:-1536,5120} --lengths ${LENGTHS:-4096} --reps 5 2>&1 | grep -E "^\| gemm" | sed "s|^|round $r vec $v |"
  done
done
for r in $(seq "${ROUNDS:-2}"); do
  for v in ${VECS:-0 1}; do
    DM_VULKAN_GEMM_VEC=$v timeout 200 ./decimamba bench --shape 130m --backend vulkan -p 4096 -n 0 -r 3 --no-deci 2>&1 \
      | grep -E "pp4096" | sed "s|^|round $r vec $v |"
  done
done
