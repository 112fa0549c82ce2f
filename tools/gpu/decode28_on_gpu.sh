#!/usr/bin/env bash
# Where 2.8b decode stands on both backends (session 14): decimamba bench tg on CUDA and Vulkan,
# Vulkan's fence polling 0 / 1000 / default, the Vulkan decode GEMVs alone (GB/s) and one
# profiled Vulkan decode step. PACK names the pack. Builds nothing; long output under $OUT.
set -u
source "$PWD/tools/gpu/unpack.sh"
gpu_enter "${PACK:-.gpupack}" || exit 1
timeout 200 ./decimamba bench --shape 2.8b -p 0 -n 32 -r 3 --pick both 2>&1 | grep -E "tg32"
for spin in 0 1000; do
  DM_VULKAN_FENCE_SPIN_US=$spin timeout 100 ./decimamba bench --shape 2.8b --backend vulkan -p 0 -n 32 -r 3 2>&1 \
    | grep -E "tg32" | sed "s|^|spin $spin |"
done
timeout 200 ./bench_vulkan --sections gemv --shapes 130m,2.8b --gemv-variants "default" > $OUT/gemv.md 2>/dev/null
grep -E "^\|" $OUT/gemv.md | head -20
timeout 200 ./bench_vulkan --sections decode --shapes 2.8b > $OUT/decode.md 2>/dev/null
grep -E "^\|" $OUT/decode.md | head -40
