#!/usr/bin/env bash
# Greedy steps several to a recording (session 19): tools/gpu/greedy_unroll_on_gpu.sh [PACK]
# (default .gpupack; programs decimamba, decimamba_tests). Builds nothing. Logs to $OUT.
# 1. The decode replay tests on the H200 (CUDA and Vulkan, every fixture), greedy unrolled ones
#    included, and the fold / copies tests.
# 2. decimamba bench --pick greedy, CUDA and Vulkan, 130m tg64 and 2.8b tg32, DM_GREEDY_UNROLL
#    1 / 2 / 4 / 8 in turns (two rounds).
# 3. The logits path (--pick logits) on Vulkan with the fold on (now the default) and off.
set -u
pack=${1:-.gpupack}
source "$PWD/tools/gpu/unpack.sh"
gpu_enter "$pack" || exit 1
timeout 200 ./decimamba_tests \
  --gtest_filter='*DecodeReplay*:BackendRecord*:*DecodeSwitchErrors*:EvalGenerate*' \
  > "$out/tests.log" 2>&1
echo "tests: exit $?"
grep -E "^\[  (FAILED|PASSED) |tests? from .* ran" "$out/tests.log" | head -8
cd "$root"
for shape in "130m 64" "2.8b 32"; do
  set -- $shape
  SETTINGS="u1:DM_GREEDY_UNROLL=1;u2:DM_GREEDY_UNROLL=2;u4:DM_GREEDY_UNROLL=4;u8:DM_GREEDY_UNROLL=8" \
    ROUNDS=2 GREP='^\| (vulkan|cuda)' TIMEOUT=90 PACK="$pack" \
    bash tools/gpu/env_ab.sh ./decimamba bench --shape "$1" --backend cuda,vulkan -p 0 -n "$2" --pick greedy -r 3
done
for shape in "130m 64" "2.8b 32"; do
  set -- $shape
  SETTINGS="fold1:;fold0:DM_VULKAN_REPLAY_FOLD=0" \
    ROUNDS=2 GREP='^\| vulkan' TIMEOUT=60 PACK="$pack" \
    bash tools/gpu/env_ab.sh ./decimamba bench --shape "$1" --backend vulkan -p 0 -n "$2" --pick logits -r 3
done
