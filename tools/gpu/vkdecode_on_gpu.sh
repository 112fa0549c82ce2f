#!/usr/bin/env bash
# One GPU-host call for the Vulkan three-dispatch decode layer (VulkanBackend::mamba_block_step,
# shaders/mamba_step.comp): tools/gpu/vkdecode_on_gpu.sh [SECTION...], in this order:
#   tests   the decode fusion, replay and end-to-end tests on the GPU (Vulkan and CUDA)
#   v130m   bench_vulkan --sections decode --shapes 130m with DM_VULKAN_BLOCK_STEP=0 (Backend's
#           composition), 3, 4, and 3 with DM_VULKAN_BLOCK_FRONT=32: µs per token, replayed
#   b130m   decimamba bench --shape 130m --backend cuda,vulkan -p 512 -n 64 -r 3, block step
#           off (=0) and default, alternating twice
#   v2.8b   bench_vulkan decode 2.8b with DM_VULKAN_BLOCK_STEP=0, 4, 3
#   b2.8b   decimamba bench --shape 2.8b -p 512 -n 16 -r 2, block step off and default
# (default: tests v130m b130m). PACK names the pack folder (default .gpupack-vkblock).
set -u
source "$PWD/tools/gpu/unpack.sh"
gpu_enter "${PACK:-.gpupack-vkblock}" || exit 1
sections=${*:-tests v130m b130m}
has() { [[ " $sections " == *" $1 "* ]]; }
if has tests; then
  f='FusedStep.*:DecodeReplay*:*BackendOpsE2E*'
  timeout 150 ./decimamba_tests --gtest_filter="$f" > "$out/tests.log" 2>&1
  echo "tests exit $?"
  grep -E "^\[  (FAILED|PASSED) |tests? from .* ran|Failure|block=" "$out/tests.log" | head -20
fi
vdecode() {  # SHAPE LABEL [ENV=VALUE...]: the replayed step's µs per token, fused shaders on
  local shape=$1 label=$2
  shift 2
  env "$@" timeout 120 ./bench_vulkan --sections decode --shapes "$shape" \
    > "$out/vdecode_${shape}_$label.md" 2>/dev/null
  echo "bench_vulkan decode $shape $label ($*) exit $?"
  grep "^| $shape" "$out/vdecode_${shape}_$label.md"
}
if has v130m; then
  vdecode 130m off DM_VULKAN_BLOCK_STEP=0
  vdecode 130m three DM_VULKAN_BLOCK_STEP=3
  vdecode 130m four DM_VULKAN_BLOCK_STEP=4
  vdecode 130m three_t32 DM_VULKAN_BLOCK_STEP=3 DM_VULKAN_BLOCK_FRONT=32
fi
if has b130m; then
  for rep in 1 2; do
    for mode in 0 default; do
      e=(); [ "$mode" = default ] || e=(DM_VULKAN_BLOCK_STEP=$mode)
      env "${e[@]}" timeout 100 ./decimamba bench --shape 130m --backend cuda,vulkan -p 512 -n 64 -r 3 \
        --force > "$out/bench_130m_${mode}_$rep.md" 2>&1
      echo "bench 130m block=$mode rep $rep exit $?"
      grep "^| cuda\|^| vulkan" "$out/bench_130m_${mode}_$rep.md"
    done
  done
fi
if has v2.8b; then
  vdecode 2.8b off DM_VULKAN_BLOCK_STEP=0
  vdecode 2.8b four DM_VULKAN_BLOCK_STEP=4
  vdecode 2.8b three DM_VULKAN_BLOCK_STEP=3
fi
if has b2.8b; then
  for mode in 0 default; do
    e=(); [ "$mode" = default ] || e=(DM_VULKAN_BLOCK_STEP=$mode)
    env "${e[@]}" timeout 200 ./decimamba bench --shape 2.8b --backend cuda,vulkan -p 512 -n 16 -r 2 \
      --force > "$out/bench_2.8b_$mode.md" 2>&1
    echo "bench 2.8b block=$mode exit $?"
    grep "^| cuda\|^| vulkan" "$out/bench_2.8b_$mode.md"
  done
fi
