#!/usr/bin/env bash
# One-off (session 19's last call): tests touched since call 3, the README's decode numbers
# (pick both, CUDA and Vulkan, two rounds), Vulkan greedy with the fold off (default) / on now
# that greedy steps go four to a recording, and bench_vulkan unroll at 2.8b (first row warm-up).
set -u
pack=${1:-.gpupack}
source "$PWD/tools/gpu/unpack.sh"
gpu_enter "$pack" || exit 1
timeout 150 ./decimamba_tests \
  --gtest_filter='*DecodeReplay*:*VulkanReplayFold*:BackendDownloads*:*DecodeSwitchErrors*:EvalGenerate*' \
  > "$out/tests.log" 2>&1
echo "tests: exit $?"
grep -E "^\[  (FAILED|PASSED) |tests? from .* ran" "$out/tests.log" | head -8
timeout 100 ./bench_vulkan --sections unroll --shapes 2.8b > "$out/unroll.md" 2> "$out/unroll.json"
echo "unroll exit $?"; grep -E "^\| 2.8b" "$out/unroll.md"
cd "$root"
for shape in "130m 64" "2.8b 32"; do
  set -- $shape
  SETTINGS="default:" ROUNDS=2 GREP='^\| (vulkan|cuda)' TIMEOUT=120 PACK="$pack" \
    bash tools/gpu/env_ab.sh ./decimamba bench --shape "$1" --backend cuda,vulkan -p 0 -n "$2" --pick both -r 3
done
for shape in "130m 64" "2.8b 32"; do
  set -- $shape
  SETTINGS="fold0:;fold1:DM_VULKAN_REPLAY_FOLD=1" ROUNDS=2 GREP='^\| vulkan' TIMEOUT=60 PACK="$pack" \
    bash tools/gpu/env_ab.sh ./decimamba bench --shape "$1" --backend vulkan -p 0 -n "$2" --pick greedy -r 3
done
