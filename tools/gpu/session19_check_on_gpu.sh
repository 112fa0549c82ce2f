#!/usr/bin/env bash
# Session 19's check: the whole suite but Cli* (CUDA's 32 download slots, the unrolled greedy
# steps, the Vulkan fold rule), the logits path with the fold on / off (a blocking download now
# submits apart), and decode numbers for the README (pick both, CUDA and Vulkan, 130m / 2.8b).
set -u
pack=${1:-.gpupack}
source "$PWD/tools/gpu/unpack.sh"
gpu_enter "$pack" || exit 1
timeout 330 ./decimamba_tests --gtest_filter='-Cli*' > "$out/tests.log" 2>&1
echo "tests: exit $?"
grep -E "^\[  (FAILED|PASSED) |tests? from .* ran|SKIPPED \]" "$out/tests.log" | head -12
cd "$root"
for shape in "130m 64" "2.8b 32"; do
  set -- $shape
  SETTINGS="fold1:;fold0:DM_VULKAN_REPLAY_FOLD=0" \
    ROUNDS=2 GREP='^\| vulkan' TIMEOUT=60 PACK="$pack" \
    bash tools/gpu/env_ab.sh ./decimamba bench --shape "$1" --backend vulkan -p 0 -n "$2" --pick logits -r 3
done
for shape in 130m 2.8b; do
  SETTINGS="default:" ROUNDS=1 GREP='^\| (vulkan|cuda)' TIMEOUT=120 PACK="$pack" \
    bash tools/gpu/env_ab.sh ./decimamba bench --shape "$shape" --backend cuda,vulkan -p 0 -n 64 --pick both -r 3
done
