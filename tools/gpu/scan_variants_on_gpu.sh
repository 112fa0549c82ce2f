#!/usr/bin/env bash
# One GPU-host call that checks and times CUDA prompt-scan configurations side by side, with the
# default in the same run (e.g. TESTS="default v7x" BENCH="default v7u v7x" NCU="v7u"
# SANITIZE="v7x" bash tools/gpu/scan_variants_on_gpu.sh):
#   TESTS="default v7p ..."  the scan and end-to-end tests once per DM_CUDA_SCAN value
#                            ("default": unset), filter TEST_FILTER (default
#                            '*SelectiveScan*:*Cuda*Scan*:*E2E*');
#   BENCH="default v7u ..."  bench_cuda copy,scan per value (d_inner 1536 … 5120, L 4K / 16K),
#                            then one table (µs per value, the best per shape);
#   NCU="v7u v7p ..."        ncu over the first scan launch (d_inner 1536, L 4K) per value:
#                            time, L1 / issue use, shared wavefronts and bank conflicts;
#   NCU_STALL="v7u ..."      the same launch's stall reasons per issued instruction (≥ 0.05);
#   SANITIZE="default ..."   compute-sanitizer memcheck and racecheck over CudaBackend.SelectiveScan
#                            (DM_CUDA_TEST_SMALL=1) per value.
#   OLD_PACK=.gpupack-old    a second pack (the previous build): BENCH value "old" runs its
#                            bench_cuda with DM_CUDA_SCAN unset, in the same call.
#   A BENCH value may carry a round suffix (default@2, old@2): timed again, its own column.
# PACK names the pack folder (default .gpupack-scan). Logs: one archive in $OUT
# (scan_logs[_TAG].tgz). STOP_ON_HANG=1: a test run that times out ends the call there (a new
# kernel that deadlocks would otherwise spend TEST_TIMEOUT per value and then the bench's).
set -u
source "$PWD/tools/gpu/unpack.sh"
olddir=
if [ -n "${OLD_PACK:-}" ]; then
  gpu_unpack "$OLD_PACK" || exit 1
  olddir=$PWD
  cd - > /dev/null
fi
gpu_enter "${PACK:-.gpupack-scan}" || exit 1
logs=$(mktemp -d)
with_scan() {  # with_scan VALUE CMD...: CMD with DM_CUDA_SCAN=VALUE ("default": unset; "old":
  local v=${1%@*}; shift  # the OLD_PACK's programs, unset)
  if [ "$v" = old ]; then (cd "$olddir" && env -u DM_CUDA_SCAN "$@")
  elif [ "$v" = default ]; then env -u DM_CUDA_SCAN "$@"; else DM_CUDA_SCAN=$v "$@"; fi
}
for v in ${TESTS:-}; do
  t0=$SECONDS
  echo "=== DM_CUDA_SCAN=$v" >> "$logs/tests.log"
  with_scan "$v" timeout ${TEST_TIMEOUT:-90} ./decimamba_tests \
    --gtest_filter="${TEST_FILTER:-*SelectiveScan*:*Cuda*Scan*:*E2E*}" >> "$logs/tests.log" 2>&1
  rc=$?
  echo "tests $v exit $rc ($((SECONDS - t0)) s): $(tail -n 60 "$logs/tests.log" | grep -E '^\[  (PASSED|FAILED) ' | tr '\n' ' ')"
  if [ $rc -eq 124 ] && [ -n "${STOP_ON_HANG:-}" ]; then
    echo "stopping: $v timed out"
    tar czf "$out/scan_logs${TAG:+_$TAG}.tgz" -C "$logs" .
    exit 1
  fi
done
for v in ${BENCH:-}; do
  with_scan "$v" timeout 60 ./bench_cuda copy,scan 2>>"$logs/bench.err" | grep '^| selective_scan' | sed "s/^/$v /"
done > "$logs/scan.md"
if [ -s "$logs/scan.md" ]; then
  awk -F'|' '{ v = $1; gsub(/ /, "", v); sh = $3; gsub(/^ +| +z +$/, "", sh); us = $4 + 0
               if (!(sh in seen)) { seen[sh] = 1; shapes[++ns] = sh }
               if (!(v in vseen)) { vseen[v] = 1; vars[++nv] = v }
               t[sh, v] = us; pct[sh, v] = $7 }
       END { printf "| shape |"; for (j = 1; j <= nv; ++j) printf " %s |", vars[j]; print " best |"
             for (i = 1; i <= ns; ++i) { sh = shapes[i]; best = ""; bu = 1e30; printf "| %s |", sh
               for (j = 1; j <= nv; ++j) { u = t[sh, vars[j]]; printf " %.1f |", u
                 if (u > 0 && u < bu) { bu = u; best = vars[j] " " pct[sh, vars[j]] } }
               print " " best " |" } }' "$logs/scan.md" | tee "$logs/scan_table.md"
fi
m=gpu__time_duration.sum,l1tex__throughput.avg.pct_of_peak_sustained_active,sm__inst_executed.sum
m=$m,smsp__issue_active.avg.pct_of_peak_sustained_active,sm__warps_active.avg.per_cycle_active
m=$m,l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum,l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum
m=$m,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum
m=$m,smsp__inst_executed_op_shfl.sum,sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active
m=$m,sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active,launch__registers_per_thread
for v in ${NCU:-}; do
  with_scan "$v" timeout 90 ncu --metrics "$m" -k regex:"${NCU_KERNEL:-scan_v7s?_kernel}" \
    -c 1 ./bench_cuda scan \
    > "$logs/ncu_$v.txt" 2>&1
  echo "ncu $v exit $?"
  grep -E "^ +(gpu__|l1tex__|sm__|smsp__|launch__)" "$logs/ncu_$v.txt" | sed "s/^ */$v /"
done
for v in ${NCU_STALL:-}; do  # stall reasons per issued instruction, same launch as NCU
  with_scan "$v" timeout 90 ncu --metrics \
    'regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio' \
    -k regex:"${NCU_KERNEL:-scan_v7s?_kernel}" -c 1 ./bench_cuda scan \
    > "$logs/ncu_stall_$v.txt" 2>&1
  echo "ncu stalls $v exit $?"
  grep -E "^ +smsp__" "$logs/ncu_stall_$v.txt" | awk -v v="$v" '$NF + 0 >= 0.05 {
    sub(/smsp__average_warps_issue_stalled_/, "", $1); sub(/_per_issue_active.ratio/, "", $1)
    printf "%s %s %s\n", v, $1, $NF }'
done
export DM_CUDA_TEST_SMALL=1
for v in ${SANITIZE:-}; do
  for tool in memcheck racecheck; do
    with_scan "$v" timeout ${SAN_TIMEOUT:-100} compute-sanitizer --tool $tool --error-exitcode 9 \
      ./decimamba_tests --gtest_filter='CudaBackend.SelectiveScan' >> "$logs/sanitizer.log" 2>&1
    echo "compute-sanitizer $tool $v exit $?: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$logs/sanitizer.log" | tail -1)"
  done
done
tar czf "$out/scan_logs${TAG:+_$TAG}.tgz" -C "$logs" .
