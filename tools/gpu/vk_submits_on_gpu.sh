#!/usr/bin/env bash
# Vulkan decode's submit boundaries (session 18's lead, for the next GPU call):
#   tools/gpu/vk_submits_on_gpu.sh [PACK]  (default .gpupack; programs decimamba, bench_vulkan,
#   decimamba_tests). Builds nothing. Logs to $OUT.
# 1. The replay tests with the two switches forced: DecodeReplay / BackendOpsE2E / BackendRecord
#    under DM_VULKAN_REPLAY_FOLD=1 and DM_VULKAN_REPLAY_COPIES=2 (bit-identical to eager).
# 2. bench_vulkan --sections unroll (130m, 2.8b): steps per recording, one-step recordings two at
#    a time in turn, the first row again last.
# 3. decimamba bench --pick greedy, Vulkan, 130m tg64 and 2.8b tg32, settings in turns (two
#    rounds): base, fold (one submit a greedy token instead of two), copies=2, both.
set -u
pack=${1:-.gpupack}
source "$PWD/tools/gpu/unpack.sh"
gpu_enter "$pack" || exit 1
for env in DM_VULKAN_REPLAY_FOLD=1 DM_VULKAN_REPLAY_COPIES=2; do
  env "$env" timeout 120 ./decimamba_tests \
    --gtest_filter='*DecodeReplay*vulkan*:*BackendOpsE2E*vulkan*:BackendRecord*' \
    > "$out/tests_${env%%=*}.log" 2>&1
  echo "tests under $env: exit $?"
  grep -E "^\[  (FAILED|PASSED) |tests? from .* ran" "$out/tests_${env%%=*}.log" | head -6
done
timeout 150 ./bench_vulkan --sections unroll --shapes 130m,2.8b > "$out/unroll.md" 2> "$out/unroll.json"
echo "unroll exit $?"; grep -E "^\| (130m|2.8b)" "$out/unroll.md"
cd "$root"
for shape in "130m 64" "2.8b 32"; do
  set -- $shape
  SETTINGS="base:;fold:DM_VULKAN_REPLAY_FOLD=1;copies:DM_VULKAN_REPLAY_COPIES=2;both:DM_VULKAN_REPLAY_FOLD=1 DM_VULKAN_REPLAY_COPIES=2" \
    ROUNDS=2 GREP='^\| vulkan' TIMEOUT=60 PACK="$pack" \
    bash tools/gpu/env_ab.sh ./decimamba bench --shape "$1" --backend vulkan -p 0 -n "$2" --pick greedy -r 3
done
