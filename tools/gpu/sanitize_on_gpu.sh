#!/usr/bin/env bash
# compute-sanitizer over the CUDA kernel tests session 8 changed (CudaBackend.* run only the
# CUDA backend): memcheck over the GEMM, conv, top-k, gather and dt_importance tests
# (K-concatenated operands, the conv's state from its first tile, the rewritten decimation
# kernels) and the conv prompt fusion; racecheck (shared-memory hazards) over top-k (block scans
# and counters in shared memory, both its paths), dt_importance (staged bias), gather, the conv. PACK names the pack folder. Logs to $OUT.
set -u
source "$PWD/tools/gpu/unpack.sh"
gpu_enter "${PACK:-.gpupack}" || exit 1
mem='CudaBackend.Gemm*:CudaBackend.CausalConv1dAndStep:CudaBackend.TopkIndices:CudaBackend.GatherRows:CudaBackend.DtImportance:PromptFusions.CausalConv1dGemm'
race='CudaBackend.TopkIndices:CudaBackend.DtImportance:CudaBackend.GatherRows:CudaBackend.CausalConv1dAndStep'
timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 ./decimamba_tests --gtest_filter="$mem" \
  > "$out/memcheck.log" 2>&1
echo "memcheck exit $?: $(grep -E 'ERROR SUMMARY' "$out/memcheck.log" | tail -1)"
grep -E "^\[  (FAILED|PASSED) |tests? from .* ran" "$out/memcheck.log" | head
timeout 120 compute-sanitizer --tool racecheck --error-exitcode 9 ./decimamba_tests --gtest_filter="$race" \
  > "$out/racecheck.log" 2>&1
echo "racecheck exit $?: $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' "$out/racecheck.log" | tail -1)"
grep -E "^\[  (FAILED|PASSED) |tests? from .* ran" "$out/racecheck.log" | head
