#!/usr/bin/env bash
# After a change to the Vulkan backend only, in one short GPU-host call: the tests that reach
# Vulkan (its own suites, the kernel table, the decode replays, end to end, the recorder; Cli*
# excluded: they run the CLI at its build-machine path; FusedStep.* too: ~2 minutes of its own,
# final_on_gpu.sh's tests run it), the GEMM tests again with cooperative matrices off (what AMD
# and Intel run: the SIMT GEMMs), then decimamba bench 130m on both backends (prefill 4K / 16K,
# decode tg64 with every token's logits and greedy).
# PACK names the pack (default .gpupack). Builds nothing; logs to $OUT.
set -u
source "$PWD/tools/gpu/unpack.sh"
gpu_enter "${PACK:-.gpupack}" || exit 1
f='*Vulkan*:BackendOps*:*DecodeReplay*:*E2E*:BackendRecord*:-Cli*'
timeout 300 ./decimamba_tests --gtest_filter="$f" > "$out/tests.log" 2>&1
echo "tests exit $?"
grep -E "^\[  (FAILED|PASSED|SKIPPED) |tests? from .* ran" "$out/tests.log" | head -20
DM_VULKAN_COOPMAT=0 timeout 120 ./decimamba_tests \
  --gtest_filter='*GemmVecPaths*:*GemvPaths*:BackendOps.Gemm*:*BackendOpsE2E*' > "$out/tests_simt.log" 2>&1
echo "tests with DM_VULKAN_COOPMAT=0 exit $?"
grep -E "^\[  (FAILED|PASSED|SKIPPED) |tests? from .* ran" "$out/tests_simt.log" | head -10
if [ "${BENCH:-1}" = 1 ]; then
  timeout 200 ./decimamba bench --shape 130m --backend cuda,vulkan -p 4096,16384 -n 64 -r 3 --pick both \
    --no-deci > "$out/bench130m.md" 2>&1
  echo "bench exit $?"; grep -E "^\| (cuda|vulkan)" "$out/bench130m.md"
fi
