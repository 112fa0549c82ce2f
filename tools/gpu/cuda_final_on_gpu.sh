#!/usr/bin/env bash
# One GPU-host call that checks and times the CUDA side (Vulkan only where it is the yardstick):
# the whole test suite (Cli* excluded), the scan tests again with v6 forced, selective_scan on
# both backends side by side (CUDA v7 and v6, Vulkan chunked), compute-sanitizer memcheck and
# racecheck over the small CUDA kernel cases, and the decode step's graph device time.
# PACK names the pack folder (default .gpupack). Logs go to $OUT.
set -u
source "$PWD/tools/gpu/unpack.sh"
gpu_enter "${PACK:-.gpupack}" || exit 1
timeout 150 ./decimamba_tests --gtest_filter='-Cli*' > "$out/tests.log" 2>&1
echo "tests exit $?"; grep -E "^\[  (FAILED|PASSED) |tests? from .* ran" "$out/tests.log" | head -20
DM_CUDA_SCAN=v6 timeout 60 ./decimamba_tests --gtest_filter='*SelectiveScan*:*BackendOpsE2E*' > "$out/tests_v6.log" 2>&1
echo "scan tests with v6 forced exit $?"; grep -E "^\[  (FAILED|PASSED) " "$out/tests_v6.log"
{ timeout 60 ./bench_cuda copy,scan | grep selective_scan | sed 's/^/v7-default /'
  DM_CUDA_SCAN=v6 timeout 60 ./bench_cuda copy,scan | grep selective_scan | sed 's/^/v6 /'
  timeout 60 ./bench_vulkan --sections kernels --kernels selective_scan --widths 1536,5120 \
    --lengths 4096,16384 | grep selective_scan | sed 's/^/vulkan /'; } 2>/dev/null | tee "$out/scan.md"
export DM_CUDA_TEST_SMALL=1
f='CudaBackend.SelectiveScan:CudaBackend.RmsNorm:CudaBackend.CausalConv1dAndStep:CudaBackend.Gemm'
for tool in memcheck racecheck; do
  timeout 110 compute-sanitizer --tool $tool --error-exitcode 9 ./decimamba_tests --gtest_filter="$f" \
    > "$out/sanitizer_$tool.log" 2>&1
  echo "compute-sanitizer $tool exit $?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|^\[  (FAILED|PASSED) " "$out/sanitizer_$tool.log" | head -4
done
unset DM_CUDA_TEST_SMALL
timeout 100 ./bench_cuda decode-settings 2.8b,130m base > "$out/decode.md" 2>/dev/null
echo "decode exit $?"; grep "^| " "$out/decode.md"
