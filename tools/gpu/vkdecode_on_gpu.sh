#!/usr/bin/env bash
# One GPU-host call for the Vulkan decode layer in three or four dispatches
# (VulkanBackend::mamba_block_step, shaders/mamba_step.comp): tools/gpu/vkdecode_on_gpu.sh
# [SECTION...], in this order:
#   tests   the decode fusion, replay and end-to-end tests on the GPU
#   v130m   bench_vulkan --sections decode --shapes 130m with DM_VULKAN_BLOCK_STEP=0 (Backend's
#           composition), 4 and 3, and other in_proj shapes (DM_VULKAN_BLOCK_FRONT=T): µs per
#           token of the replayed step (the "fused shaders 1" row) and the kernel profiles
#   b130m   decimamba bench --shape 130m -p 512 -n 64 -r 3, Vulkan with the block step off (=0)
#           and at its default, alternating twice; CUDA beside it once per round
#   v2.8b   bench_vulkan decode 2.8b: off, 4 at several T, 3
#   b2.8b   decimamba bench --shape 2.8b -p 512 -n 16 -r 2: Vulkan off and forced to 4; CUDA
#   alt130m decimamba bench --shape 130m --backend vulkan -p 512 -n 64 -r 3: the forms 0, 4,
#           3 and 3 with 16 and 8 invocations per in_proj row (DM_VULKAN_BLOCK_FRONT), in turn,
#           three rounds (single runs differ by up to 30 µs/token)
# (default: tests v130m b130m). PACK: the pack (default .gpupack-vkblock2); CUDA_PACK: a pack
# with the CUDA backend for the CUDA rows (default: PACK). Logs: $OUT/logs.tgz.
set -u
source "$PWD/tools/gpu/unpack.sh"
cuda_pack=$PWD/${CUDA_PACK:-${PACK:-.gpupack-vkblock2}}
gpu_enter "${PACK:-.gpupack-vkblock2}" || exit 1
final_out=$out
out=$(mktemp -d)
sections=${*:-tests v130m b130m}
# has SECTION: whether to run it (and the logs so far packed first, in case a later one hangs)
has() { tar czf "$final_out/logs.tgz" -C "$out" .; [[ " $sections " == *" $1 "* ]]; }
if has tests; then
  f='FusedStep.*:*DecodeReplay*:*BackendOpsE2E*'
  timeout 150 ./decimamba_tests --gtest_filter="$f" > "$out/tests.log" 2>&1
  echo "tests exit $?"
  grep -E "^\[  (FAILED|PASSED) |tests? from .* ran|Failure" "$out/tests.log" | head -20
fi
vdecode() {  # SHAPE LABEL [ENV=VALUE...]: the replayed step's µs per token, fused shaders on
  local shape=$1 label=$2
  shift 2
  env "$@" timeout 120 ./bench_vulkan --sections decode --shapes "$shape" \
    > "$out/vdecode_${shape}_$label.md" 2>/dev/null
  echo "bench_vulkan decode $shape $label ($*) exit $?: $(grep "^| $shape | [0-9]* | 1 |" "$out/vdecode_${shape}_$label.md")"
}
cuda_bench() {  # SHAPE LABEL ARGS...: decimamba bench on CUDA from the CUDA pack
  local shape=$1 label=$2
  shift 2
  (cd "$root" && gpu_unpack "$cuda_pack" && timeout 200 ./decimamba bench --shape "$shape" \
    --backend cuda "$@" --force) > "$out/bench_${shape}_cuda_$label.md" 2>&1
  echo "bench $shape cuda $label exit $?"; grep "^| cuda" "$out/bench_${shape}_cuda_$label.md"
}
vk_bench() {  # SHAPE MODE LABEL ARGS...: decimamba bench on Vulkan, DM_VULKAN_BLOCK_STEP=MODE
  local shape=$1 mode=$2 label=$3
  shift 3
  e=(); [ "$mode" = default ] || e=(DM_VULKAN_BLOCK_STEP=$mode)
  env "${e[@]}" timeout 200 ./decimamba bench --shape "$shape" --backend vulkan "$@" --force \
    > "$out/bench_${shape}_vk_${mode}_$label.md" 2>&1
  echo "bench $shape vulkan block=$mode $label exit $?"; grep "^| vulkan" "$out/bench_${shape}_vk_${mode}_$label.md"
}
if has v130m; then
  vdecode 130m off DM_VULKAN_BLOCK_STEP=0
  vdecode 130m four DM_VULKAN_BLOCK_STEP=4
  vdecode 130m three DM_VULKAN_BLOCK_STEP=3
  vdecode 130m four_t64 DM_VULKAN_BLOCK_STEP=4 DM_VULKAN_BLOCK_FRONT=64
  vdecode 130m three_t16 DM_VULKAN_BLOCK_STEP=3 DM_VULKAN_BLOCK_FRONT=16
  vdecode 130m off2 DM_VULKAN_BLOCK_STEP=0
fi
if has b130m; then
  for rep in 1 2; do
    cuda_bench 130m "$rep" -p 512 -n 64 -r 3
    for mode in 0 default; do vk_bench 130m "$mode" "$rep" -p 512 -n 64 -r 3; done
  done
fi
if has v2.8b; then
  vdecode 2.8b off DM_VULKAN_BLOCK_STEP=0
  vdecode 2.8b four DM_VULKAN_BLOCK_STEP=4
  vdecode 2.8b four_t32 DM_VULKAN_BLOCK_STEP=4 DM_VULKAN_BLOCK_FRONT=32
  vdecode 2.8b four_t16 DM_VULKAN_BLOCK_STEP=4 DM_VULKAN_BLOCK_FRONT=16
  vdecode 2.8b three_t8 DM_VULKAN_BLOCK_STEP=3 DM_VULKAN_BLOCK_FRONT=8
fi
if has b2.8b; then
  cuda_bench 2.8b 1 -p 512 -n 16 -r 2
  for mode in 0 4; do vk_bench 2.8b "$mode" 1 -p 512 -n 16 -r 2; done
fi
if has alt130m; then
  for rep in 1 2 3; do
    for form in 0 4 3 3:16 3:8; do
      e=(DM_VULKAN_BLOCK_STEP=${form%%:*}); [[ $form == *:* ]] && e+=(DM_VULKAN_BLOCK_FRONT=${form#*:})
      env "${e[@]}" timeout 60 ./decimamba bench --shape 130m --backend vulkan -p 512 -n 64 -r 3 \
        --force > "$out/alt_${form/:/_t}_$rep.md" 2>&1
      echo "round $rep form $form exit $?: $(grep '^| vulkan.*tg64' "$out/alt_${form/:/_t}_$rep.md")"
    done
  done
fi
tar czf "$final_out/logs.tgz" -C "$out" .
