#!/usr/bin/env bash
# Greedy decoding on the device (Backend::argmax, Executor::step_greedy) and the decode step's
# host path (logits into a reused vector), session 11: tools/gpu/greedy_on_gpu.sh PACK [BEFORE]
# 1. the tests that cover it (argmax against the CPU, greedy steps against the host's argmax,
#    replay, generation), compute-sanitizer memcheck over BackendOps.Argmax;
# 2. decimamba bench 130m tg64, CUDA and Vulkan: BEFORE's build if given (a pack of the previous
#    commit: every step's logits into a new vector) and PACK with --pick both (logits into one
#    reused vector; greedy picks on the device, one step run ahead), and PACK's Vulkan with
#    DM_VULKAN_REPLAY_FOLD=1, alternating twice; then the recorded step's device time
#    (bench_cuda decode-settings, if the pack has it). Logs to $OUT.
set -u
source "$PWD/tools/gpu/unpack.sh"
root=$PWD
out=${OUT:-/tmp}
pack=$1 before=${2:-}
gpu_enter "$pack" >/dev/null || exit 1
cat "$out/card.txt"
dir_new=$PWD
f='BackendOps.Argmax:DecodeReplay.*:BackendRecord.*:TextSampler.*:*E2E*:*Generat*:*Passkey*:-Cli*'
timeout 300 ./decimamba_tests --gtest_filter="$f" > "$out/tests.log" 2>&1
echo "tests exit $?"; grep -E "^\[  (FAILED|PASSED) |tests? from .* ran" "$out/tests.log" | head
timeout 200 compute-sanitizer --tool memcheck ./decimamba_tests --gtest_filter='BackendOps.Argmax' \
  > "$out/memcheck.log" 2>&1
echo "memcheck exit $?: $(grep -E 'ERROR SUMMARY' "$out/memcheck.log" | tail -1)"
dir_old=
if [ -n "$before" ]; then cd "$root" && gpu_unpack "$before" >/dev/null && dir_old=$PWD; fi
args=(--shape 130m -p 16 -n 64 -r 5 --no-deci)
for rep in 1 2; do
  if [ -n "$dir_old" ]; then
    (cd "$dir_old" && timeout 150 ./decimamba bench --backend cuda,vulkan "${args[@]}") > "$out/before_$rep.md" 2>&1
    echo "before run $rep exit $?"; grep "tg64" "$out/before_$rep.md"
  fi
  (cd "$dir_new" && timeout 150 ./decimamba bench --backend cuda,vulkan "${args[@]}" --pick both) > "$out/new_$rep.md" 2>&1
  echo "new run $rep exit $?"; grep "tg64" "$out/new_$rep.md"
  # The Vulkan recorder's one-submit-per-token form (opt-in), now that no vector is allocated
  # between the replay and the download.
  (cd "$dir_new" && DM_VULKAN_REPLAY_FOLD=1 timeout 150 ./decimamba bench --backend vulkan "${args[@]}" --pick both) \
    > "$out/fold_$rep.md" 2>&1
  echo "fold run $rep exit $?"; grep "tg64" "$out/fold_$rep.md"
done
# The recorded step's device time, replays back to back (no host in between), same card.
if [ -x "$dir_new/bench_cuda" ]; then
  (cd "$dir_new" && timeout 120 ./bench_cuda decode-settings 130m base) > "$out/graph.md" 2>&1
  echo "bench_cuda decode-settings exit $?"; grep "^| 130m" "$out/graph.md"
fi
