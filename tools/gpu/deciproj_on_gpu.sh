#!/usr/bin/env bash
# One GPU-host call for the decimating layer's fused scores (cuda/dt_proj_importance.cu):
# tools/gpu/deciproj_on_gpu.sh. The tests of the fusion and of decimation end to end, memcheck and
# racecheck over the fusion's tests, then the DeciMamba prefill at the target's setting (130m,
# 32K, layer 12, L_base 2000) on CUDA with the fused kernel off (DM_CUDA_DT_PROJ_IMPORTANCE=0:
# dt_proj GEMM + dt_importance) and on, alternating twice, each against decimation off.
# PACK names the pack folder (default .gpupack-lead); logs go to $OUT.
set -u
source "$PWD/tools/gpu/unpack.sh"
gpu_enter "${PACK:-.gpupack-lead}" || exit 1
f='PromptFusions.DtProj*:BackendOps.DtImportance*:*Decimation*:*BackendOpsE2E*:CudaBackend.*:-Cli*'
timeout 200 ./decimamba_tests --gtest_filter="$f" > "$out/tests.log" 2>&1
echo "tests exit $?"; grep -E "^\[  (FAILED|PASSED) |tests? from .* ran" "$out/tests.log" | head -12
for tool in memcheck racecheck; do
  DM_CUDA_TEST_SMALL=1 timeout 120 compute-sanitizer --tool $tool --error-exitcode 9 \
    ./decimamba_tests --gtest_filter='PromptFusions.DtProjImportance' > "$out/san_$tool.log" 2>&1
  echo "$tool exit $?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$out/san_$tool.log" | head -2
done
for v in 0 1; do
  DM_CUDA_DT_PROJ_IMPORTANCE=$v DM_BENCH_PROFILE_TOKENS=32768 DM_BENCH_PROFILE_DECI=12:2000 \
    timeout 120 ncu --profile-from-start off --kernel-name regex:'importance|nvjet' \
    --metrics gpu__time_duration.sum --csv ./bench_cuda prefill-profile 130m \
    > "$out/ncu_$v.csv" 2>> "$out/ncu.err"
  echo "ncu, DM_CUDA_DT_PROJ_IMPORTANCE=$v, exit $?"
  python3 "$root/tools/gpu/ncu_summary.py" "$out/ncu_$v.csv" 0 | grep -E "importance|launches|80x256|32x64"
done
args=(--shape 130m --backend cuda -p 32768 -n 1 -r 3 --deci-layers 12 --deci-L-base 2000)
for rep in 1 2; do
  for v in 0 1; do
    DM_CUDA_DT_PROJ_IMPORTANCE=$v timeout 120 ./decimamba bench "${args[@]}" \
      > "$out/deci_${v}_$rep.md" 2>&1
    echo "DM_CUDA_DT_PROJ_IMPORTANCE=$v run $rep exit $?"
    grep "pp32768" "$out/deci_${v}_$rep.md" | awk -F'|' '{print $4, $7}'
  done
done
