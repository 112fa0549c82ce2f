#!/usr/bin/env bash
# One GPU-host call for Vulkan's non-blocking small download (session 11, bench/results/
# h100_session11_vkasync_2026-11-28.md): tools/gpu/vkasync_on_gpu.sh [PACK]
# 1. the tests: BackendRecord (incl. VulkanAsyncDownload*) and DecodeReplay (greedy steps, run
#    ahead), on the default (async on), then DecodeReplay.Greedy* with DM_VULKAN_ASYNC_DOWNLOAD=0;
# 2. decimamba bench 130m -p 16 -n 64 -r 5 --no-deci --pick both on Vulkan,
#    DM_VULKAN_ASYNC_DOWNLOAD=1 / 0 alternating twice (4 processes).
# PACK: default .gpupack-vkh11. Logs: $OUT/logs.tgz; a summary on stdout.
set -u
source "$PWD/tools/gpu/unpack.sh"
gpu_enter "${1:-.gpupack-vkh11}" >/dev/null || exit 1
final_out=$out
out=$(mktemp -d)
cp "$final_out/card.txt" "$out/" && cat "$out/card.txt"
save() { tar czf "$final_out/logs.tgz" -C "$out" .; }
t0=$SECONDS
stamp() { echo "  [$((SECONDS - t0)) s]"; }
timeout 30 ./decimamba_tests --gtest_filter='BackendRecord*:*DecodeReplay*:-Cli*' > "$out/tests.log" 2>&1
echo "tests exit $?"; grep -E "^\[  (FAILED|PASSED) |Failure" "$out/tests.log" | head -8
DM_VULKAN_ASYNC_DOWNLOAD=0 timeout 12 ./decimamba_tests --gtest_filter='*DecodeReplay.Greedy*' \
  > "$out/tests_sync.log" 2>&1
echo "tests ASYNC_DOWNLOAD=0 exit $?"; grep -E "^\[  (FAILED|PASSED) |Failure" "$out/tests_sync.log" | head -4
stamp; save
for r in 1 2; do
  for a in 1 0; do
    DM_VULKAN_ASYNC_DOWNLOAD=$a timeout 20 ./decimamba bench --shape 130m --backend vulkan -p 16 -n 64 \
      -r 5 --no-deci --pick both > "$out/bench_async${a}_r$r.md" 2>&1
    echo "async=$a run $r exit $?"; grep "tg64" "$out/bench_async${a}_r$r.md"
    save
  done
done
stamp; save
