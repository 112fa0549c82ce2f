#!/usr/bin/env bash
# One GPU-host call for the one-kernel Mamba block of a decode step (cuda/mamba_block_step.cu):
# tools/gpu/decode_block_on_gpu.sh [tests] [bench] [sanitize]   (default: all three)
#   tests     FusedStep.* (mamba_block_step with the one kernel forced on and off; only the CUDA
#             backend unless DM_FUSED_TEST_BACKENDS says otherwise), DecodeReplay / BackendRecord
#             (recorded steps bit-identical to eager), BackendOpsE2E (every backend); then
#             FusedStep.MambaBlockStep and DecodeReplay again with the flags grid barrier
#   bench     bench_cuda decode-settings (graph device time of the executor's step), 130m over
#             $SETTINGS_130M and 2.8b over $SETTINGS_28B, each in one process
#   sanitize  compute-sanitizer memcheck and racecheck over FusedStep.MambaBlockStep, CUDA only,
#             the cases up to 130m widths (DM_CUDA_TEST_SMALL=1)
# PACK names the pack folder (default .gpupack-block). Logs go to $OUT (7 files).
set -u
source "$PWD/tools/gpu/unpack.sh"
gpu_enter "${PACK:-.gpupack-block}" || exit 1
on=DM_CUDA_DECODE_BLOCK=1
SETTINGS_130M=${SETTINGS_130M:-DM_CUDA_DECODE_BLOCK=0;$on;$on,DM_CUDA_DECODE_BLOCK_BARRIER=flags;$on,DM_CUDA_DECODE_BLOCK_PER_SM=2;$on,DM_CUDA_PDL=0;base}
SETTINGS_28B=${SETTINGS_28B:-DM_CUDA_DECODE_BLOCK=0;$on;base}
sections=${*:-tests bench sanitize}
has() { [[ " $sections " == *" $1 "* ]]; }
export DM_FUSED_TEST_BACKENDS=${DM_FUSED_TEST_BACKENDS:-cuda}
if has tests; then
  timeout 100 ./decimamba_tests --gtest_filter='FusedStep.*:*DecodeReplay*:*BackendRecord*:*BackendOpsE2E*' \
    > "$out/tests.log" 2>&1
  echo "tests exit $?"
  DM_CUDA_DECODE_BLOCK_BARRIER=flags timeout 40 ./decimamba_tests \
    --gtest_filter='FusedStep.MambaBlockStep:*DecodeReplay*' >> "$out/tests.log" 2>&1
  echo "tests (flags barrier) exit $?"; grep -E "^\[  (FAILED|PASSED) |tests? from .* ran|Failure" "$out/tests.log" | head -20
fi
if has bench; then
  timeout 40 ./bench_cuda decode-settings 130m "$SETTINGS_130M" > "$out/decode_130m.md" 2>/dev/null
  echo "bench_cuda decode-settings 130m exit $?"
  timeout 60 ./bench_cuda decode-settings 2.8b "$SETTINGS_28B" > "$out/decode_2.8b.md" 2>/dev/null
  echo "bench_cuda decode-settings 2.8b exit $?"; grep -h "^| " "$out/decode_130m.md" "$out/decode_2.8b.md"
fi
if has sanitize; then
  for tool in memcheck racecheck; do
    DM_FUSED_TEST_BACKENDS=cuda DM_CUDA_TEST_SMALL=1 timeout 30 compute-sanitizer --tool $tool \
      --error-exitcode 9 ./decimamba_tests --gtest_filter='FusedStep.MambaBlockStep' \
      > "$out/sanitizer_$tool.log" 2>&1
    echo "compute-sanitizer $tool exit $?"
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|^\[  (FAILED|PASSED) " "$out/sanitizer_$tool.log" | head -4
  done
fi
