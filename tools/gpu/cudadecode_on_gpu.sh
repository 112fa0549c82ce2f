#!/usr/bin/env bash
# One GPU-host call for mamba_block_step's three-kernel form (x_proj folded into the norm_gemv
# and dt_scan kernels, DM_CUDA_DECODE_FORM=3) against the four-kernel form (=4):
#   tools/gpu/cudadecode_on_gpu.sh [tests] [sanitize] [bench] [e2e] [bench28]
#   tests     FusedStep.* on the CUDA backend (MambaBlockStep in forms 1, 3, 4), DecodeReplay /
#             BackendRecord / BackendOpsE2E with the CUDA entries (default and cuda:form=3)
#   sanitize  compute-sanitizer memcheck and racecheck over FusedStep.MambaBlockStep, CUDA only,
#             the cases up to 130m widths (DM_CUDA_TEST_SMALL=1)
#   bench     bench_cuda decode-settings 130m, forms 4 / 3 alternated ($SETTINGS_130M), graph
#             device time per token, one process
#   e2e       decimamba bench --shape 130m --backend cuda -p 512 -n 64 -r 3, form 4 then 3 then 4
#   bench28   bench_cuda decode-settings 2.8b, forms 4 / 3 (form 3 does not apply there: the same
#             kernels; a check that nothing changed)
# PACK names the pack folder (default .gpupack-cudadec). Logs: one archive in $OUT.
set -u
source "$PWD/tools/gpu/unpack.sh"
gpu_enter "${PACK:-.gpupack-cudadec}" || exit 1
f3=DM_CUDA_DECODE_FORM=3
f4=DM_CUDA_DECODE_FORM=4
SETTINGS_130M=${SETTINGS_130M:-$f4;$f3;$f4;$f3;$f4,DM_CUDA_DECODE_NORM=fused;$f3,DM_CUDA_DECODE_NORM=fused}
sections=${*:-tests sanitize bench e2e bench28}
has() { [[ " $sections " == *" $1 "* ]]; }
logs=$(mktemp -d)
if has tests; then
  DM_FUSED_TEST_BACKENDS=cuda timeout 150 ./decimamba_tests --gtest_filter='FusedStep.*' \
    > "$logs/tests_fused.log" 2>&1
  echo "FusedStep (cuda) exit $?"
  grep -E "^\[  (FAILED|PASSED) |tests? from .* ran|Failure|error" "$logs/tests_fused.log" | head -20
  timeout 150 ./decimamba_tests --gtest_filter='*DecodeReplay*cuda*:*BackendRecord*:*BackendOpsE2E*cuda*' \
    > "$logs/tests_e2e.log" 2>&1
  echo "DecodeReplay / BackendRecord / BackendOpsE2E (cuda) exit $?"
  grep -E "^\[  (FAILED|PASSED) |tests? from .* ran|Failure" "$logs/tests_e2e.log" | head -20
fi
if has sanitize; then
  fused_block_sanitize "$logs" 120
fi
if has bench; then
  timeout 90 ./bench_cuda decode-settings 130m "$SETTINGS_130M" > "$logs/decode_settings_130m.md" 2>/dev/null
  echo "bench_cuda decode-settings 130m exit $?"; grep -h "^| " "$logs/decode_settings_130m.md"
fi
if has e2e; then
  for f in 4 3 4 3; do
    DM_CUDA_DECODE_FORM=$f timeout 60 ./decimamba bench --shape 130m --backend cuda -p 512 -n 64 -r 3 \
      > "$logs/bench_130m_form$f.txt" 2>&1
    echo "decimamba bench 130m, DM_CUDA_DECODE_FORM=$f: exit $?"
    grep -E "^\|" "$logs/bench_130m_form$f.txt" | tail -2
  done
fi
if has bench28; then
  timeout 150 ./bench_cuda decode-settings 2.8b "${SETTINGS_28B:-$f4;$f3}" > "$logs/decode_settings_2.8b.md" 2>/dev/null
  echo "bench_cuda decode-settings 2.8b exit $?"; grep -h "^| 2.8b" "$logs/decode_settings_2.8b.md"
fi
tar czf "$out/cudadecode_logs.tgz" -C "$logs" .
