#!/usr/bin/env bash
# One GPU-host call for the one-kernel Mamba block of a decode step (cuda/mamba_block_step.cu,
# session 6's exchange-word design): tools/gpu/decode_block_on_gpu.sh [tests] [bench] [sanitize]
#   tests     FusedStep.* (mamba_block_step with the one kernel forced on and off, the CUDA backend
#             only), DecodeReplay / BackendRecord / BackendOpsE2E with the one kernel forced on
#             (DM_CUDA_DECODE_BLOCK=1), then the same with the default setting
#   bench     bench_cuda decode-settings 130m over $SETTINGS_130M (graph device time, one process,
#             settings alternated), bench_cuda decode-trace 130m (the kernel's stamps), and with
#             FULL_DECODE=1 bench_cuda decode 130m,2.8b (the default path's full table)
#             TRACE_SETTINGS: the settings decode-trace runs (default base); SETTINGS_28B: also
#             bench_cuda decode-settings 2.8b over these
#   TESTS_DEFAULT=0 skips the tests' second pass (default setting)
#   ncu       ncu over two of the one kernel's launches in an eager step (DM_CUDA_DECODE_BLOCK=1):
#             duration, warp stall reasons, instruction mix
#   sanitize  compute-sanitizer memcheck and racecheck over FusedStep.MambaBlockStep, CUDA only,
#             the cases up to 130m widths (DM_CUDA_TEST_SMALL=1)
# PACK names the pack folder (default .gpupack-decode). Logs: one archive in $OUT.
set -u
source "$PWD/tools/gpu/unpack.sh"
gpu_enter "${PACK:-.gpupack-decode}" || exit 1
on=DM_CUDA_DECODE_BLOCK=1
off=DM_CUDA_DECODE_BLOCK=0
SETTINGS_130M=${SETTINGS_130M:-$off;$on;$off;$on}
sections=${*:-tests bench sanitize}
has() { [[ " $sections " == *" $1 "* ]]; }
logs=$(mktemp -d)
export DM_FUSED_TEST_BACKENDS=${DM_FUSED_TEST_BACKENDS:-cuda}
filter='FusedStep.*:*DecodeReplay*:*BackendRecord*:*BackendOpsE2E*'
if has tests; then
  DM_CUDA_DECODE_BLOCK=1 timeout 120 ./decimamba_tests --gtest_filter="$filter" > "$logs/tests_block.log" 2>&1
  echo "tests (block forced) exit $?"
  grep -E "^\[  (FAILED|PASSED) |tests? from .* ran|Failure|error" "$logs/tests_block.log" | head -20
  if [ "${TESTS_DEFAULT:-1}" = 1 ]; then
    timeout 120 ./decimamba_tests --gtest_filter="$filter" > "$logs/tests_default.log" 2>&1
    echo "tests (default) exit $?"
    grep -E "^\[  (FAILED|PASSED) |tests? from .* ran|Failure" "$logs/tests_default.log" | head -20
  fi
fi
if has bench; then
  timeout 60 ./bench_cuda decode-settings 130m "$SETTINGS_130M" > "$logs/decode_settings_130m.md" 2>/dev/null
  echo "bench_cuda decode-settings 130m exit $?"; grep -h "^| " "$logs/decode_settings_130m.md"
  if [ -n "${SETTINGS_28B:-}" ]; then
    timeout 90 ./bench_cuda decode-settings 2.8b "$SETTINGS_28B" > "$logs/decode_settings_2.8b.md" 2>/dev/null
    echo "bench_cuda decode-settings 2.8b exit $?"; grep -h "^| 2.8b" "$logs/decode_settings_2.8b.md"
  fi
  timeout 60 ./bench_cuda decode-trace 130m "${TRACE_SETTINGS:-base}" > "$logs/decode_trace_130m.md" 2>/dev/null
  echo "bench_cuda decode-trace 130m exit $?"; grep -h -E "^\| |per layer" "$logs/decode_trace_130m.md"
  if [ -n "${FULL_DECODE:-}" ]; then
    timeout 120 ./bench_cuda decode 130m,2.8b > "$logs/decode.md" 2>/dev/null
    echo "bench_cuda decode exit $?"; grep -h "^| " "$logs/decode.md"
  fi
fi
if has ncu; then
  DM_CUDA_DECODE_BLOCK=1 timeout 150 ncu --profile-from-start off -k regex:mamba_block_step \
    --launch-skip 3 --launch-count 2 --cache-control none --section SpeedOfLight \
    --section WarpStateStats --section LaunchStats --section InstructionStats --section Occupancy \
    ./bench_cuda decode-profile 130m > "$logs/ncu_block_130m.txt" 2> "$logs/ncu.err"
  echo "ncu exit $?"
  grep -E "Duration|Stall|stall|Warp Cycles|Issued Ipc|Executed Ipc|No Instruction|Long Scoreboard|Barrier|Branch|Instructions" "$logs/ncu_block_130m.txt" | head -40
fi
if has sanitize; then
  fused_block_sanitize "$logs" 60
fi
tar czf "$out/decode6_logs.tgz" -C "$logs" .
