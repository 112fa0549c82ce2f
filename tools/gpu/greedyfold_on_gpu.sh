#!/usr/bin/env bash
# Vulkan greedy decoding with the one-submit-per-token fold (DM_VULKAN_REPLAY_FOLD=1) against
# the default, alternating ROUNDS times per shape (decimamba bench tgN --pick both), after the
# decode-path tests. tools/gpu/greedyfold_on_gpu.sh PACK
#   SHAPES="130m 2.8b" (default 130m; 130m runs tg64 × 5 repetitions, 2.8b tg16 × 3), ROUNDS=2,
#   TESTS=0 skips the tests.
set -u
source "$PWD/tools/gpu/unpack.sh"
gpu_enter "${1:-.gpupack}" >/dev/null || exit 1
out=${OUT:-/tmp}
cat "$out/card.txt"
if [ "${TESTS:-1}" != 0 ]; then
  timeout 200 ./decimamba_tests --gtest_filter='TextSampler*:*DecodeReplay*:BackendRecord*:*Generat*:BackendOps.Argmax:-Cli*' \
    > "$out/tests.log" 2>&1
  echo "tests exit $?"; grep -E "^\[  (FAILED|PASSED) |tests? from .* ran" "$out/tests.log" | head
fi
for shape in ${SHAPES:-130m}; do
  if [ "$shape" = 130m ]; then n=64 r=5; else n=16 r=3; fi
  for rep in $(seq 1 "${ROUNDS:-2}"); do
    for fold in 0 1; do
      DM_VULKAN_REPLAY_FOLD=$fold timeout 150 ./decimamba bench --shape "$shape" --backend vulkan -p 16 \
        -n "$n" -r "$r" --no-deci --pick both > "$out/fold${fold}_${shape}_$rep.md" 2>&1
      echo "$shape fold=$fold run $rep exit $?: $(grep "tg$n" "$out/fold${fold}_${shape}_$rep.md" | tr -s ' ' | tr '\n' ' ')"
    done
  done
done
