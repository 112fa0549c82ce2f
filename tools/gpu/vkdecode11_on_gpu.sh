#!/usr/bin/env bash
# One GPU-host call for session 11's Vulkan decode A/B runs (bench/results/
# h100_session11_vkdecode_2026-11-28.md): tools/gpu/vkdecode11_on_gpu.sh [SECTION...], in order:
#   tests   DecodeReplay, FusedStep, BackendOpsE2E and BackendRecord (incl. the folded replay's
#           tests) on the GPU; then FusedStep.MambaBlockStep* + DecodeReplay with the block step's
#           late conv loads (DM_VULKAN_BLOCK_CONV_LATE=1) and DecodeReplay folded
#           (DM_VULKAN_REPLAY_FOLD=1)
#   d130m   bench_vulkan --sections decode, 130m, --decode-settings S130 (default: the default,
#           the block step's late conv loads, the replay folded), ROUNDS rounds (default 3)
# (Session 11's calls ran a build in which the fold was the default and the A/B setting was
# DM_VULKAN_REPLAY_FOLD=0; it has been opt-in since.)
#   fold    decimamba bench 130m -p 512 -n 64 -r 5, fold on / off alternating twice (4 processes)
#   late28  decimamba bench 2.8b -p 512 -n 16 -r 2, DM_VULKAN_GEMV_CONV_LATE=0 / 1 alternating
#           twice (4 processes)
# PACK: the pack (default .gpupack-vkh11). Logs: $OUT/logs.tgz; a summary on stdout.
set -u
source "$PWD/tools/gpu/unpack.sh"
gpu_enter "${PACK:-.gpupack-vkh11}" || exit 1
final_out=$out
out=$(mktemp -d)
cp "$final_out/card.txt" "$out/" 2>/dev/null
sections=${*:-tests d130m fold late28}
has() { tar czf "$final_out/logs.tgz" -C "$out" .; [[ " $sections " == *" $1 "* ]]; }
t0=$SECONDS
stamp() { echo "  [$((SECONDS - t0)) s]"; }
if has tests; then
  timeout 170 ./decimamba_tests \
    --gtest_filter='*DecodeReplay*:FusedStep.*:*BackendOpsE2E*:BackendRecord*' > "$out/tests.log" 2>&1
  echo "tests exit $?"; grep -E "^\[  (FAILED|PASSED) |tests? from .* ran|Failure" "$out/tests.log" | head -12
  DM_VULKAN_BLOCK_CONV_LATE=1 timeout 60 ./decimamba_tests \
    --gtest_filter='FusedStep.MambaBlockStep*:*DecodeReplay*' > "$out/tests_late.log" 2>&1
  echo "tests BLOCK_CONV_LATE=1 exit $?"; grep -E "^\[  (FAILED|PASSED) |Failure" "$out/tests_late.log" | head -6
  DM_VULKAN_REPLAY_FOLD=1 timeout 40 ./decimamba_tests \
    --gtest_filter='*DecodeReplay*:BackendRecord*' > "$out/tests_fold.log" 2>&1
  echo "tests REPLAY_FOLD=1 exit $?"; grep -E "^\[  (FAILED|PASSED) |Failure" "$out/tests_fold.log" | head -6
  stamp
fi
if has d130m; then
  s=${S130:-"def;late:DM_VULKAN_BLOCK_CONV_LATE=1;fold:DM_VULKAN_REPLAY_FOLD=1"}
  timeout 90 ./bench_vulkan --sections decode --shapes 130m --decode-settings "$s" \
    --decode-rounds "${ROUNDS:-3}" > "$out/decode_130m.md" 2>/dev/null
  echo "decode 130m exit $?"; grep -E "^\| 130m \|" "$out/decode_130m.md" | cut -d'|' -f4-5 | sed 's/DM_VULKAN_//g'
  stamp
fi
bench() {  # TAG SHAPE ARGS... (ENV set by the caller)
  local tag=$1 shape=$2; shift 2
  timeout 120 ./decimamba bench --shape "$shape" --backend vulkan -p 512 "$@" --force \
    > "$out/bench_${shape}_$tag.md" 2>&1
  echo "$shape [$tag] exit $?: $(grep '^| vulkan' "$out/bench_${shape}_$tag.md" | grep tg)"
}
if has fold; then
  for r in 1 2; do
    for f in 1 0; do DM_VULKAN_REPLAY_FOLD=$f bench "fold${f}_r$r" 130m -n 64 -r 5; done
  done
  stamp
fi
if has late28; then
  for r in 1 2; do
    for l in 0 1; do DM_VULKAN_GEMV_CONV_LATE=$l bench "late${l}_r$r" 2.8b -n 16 -r 2; done
  done
  stamp
fi
tar czf "$final_out/logs.tgz" -C "$out" .
