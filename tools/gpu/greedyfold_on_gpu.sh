#!/usr/bin/env bash
# Session 11's last check: the final build's decode-path tests on the GPU, then Vulkan greedy
# decoding with the one-submit-per-token fold (DM_VULKAN_REPLAY_FOLD=1) against the default,
# alternating twice (decimamba bench 130m tg64 --pick both). tools/gpu/greedyfold_on_gpu.sh PACK
set -u
source "$PWD/tools/gpu/unpack.sh"
gpu_enter "${1:-.gpupack}" >/dev/null || exit 1
out=${OUT:-/tmp}
cat "$out/card.txt"
timeout 200 ./decimamba_tests --gtest_filter='TextSampler*:*DecodeReplay*:BackendRecord*:*Generat*:BackendOps.Argmax:-Cli*' \
  > "$out/tests.log" 2>&1
echo "tests exit $?"; grep -E "^\[  (FAILED|PASSED) |tests? from .* ran" "$out/tests.log" | head
for rep in 1 2; do
  for fold in 0 1; do
    DM_VULKAN_REPLAY_FOLD=$fold timeout 100 ./decimamba bench --shape 130m --backend vulkan -p 16 -n 64 -r 5 \
      --no-deci --pick both > "$out/fold${fold}_$rep.md" 2>&1
    echo "fold=$fold run $rep exit $?"; grep "tg64" "$out/fold${fold}_$rep.md"
  done
done
