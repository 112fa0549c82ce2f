#!/usr/bin/env bash
# Two builds side by side in one GPU-host call: tools/gpu/ab_packs.sh PACK_A PACK_B [BENCH_ARGS...]
# runs `decimamba bench BENCH_ARGS` (default: 130m CUDA prefill 4K / 16K, no decimation) from
# pack A, then B, twice (A B A B), and before that TESTS (a gtest filter, optional) from pack B.
# For changes without a switch of their own. Logs to $OUT (ab_<A|B>_<run>.md).
set -u
source "$PWD/tools/gpu/unpack.sh"
root=$PWD
out=${OUT:-/tmp}
a=$1 b=$2
shift 2
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--shape 130m --backend cuda -p 4096,16384 -n 1 -r 5 --no-deci)
gpu_unpack "$a" || exit 1
dir_a=$PWD
cd "$root" && gpu_unpack "$b" || exit 1
dir_b=$PWD
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader \
  | tee "$out/card.txt"
export DM_TEST_DATA_DIR=$root/tests/data DM_SOURCE_DIR=$root
if [ -n "${TESTS:-}" ]; then
  (cd "$dir_b" && timeout 300 ./decimamba_tests --gtest_filter="$TESTS") > "$out/ab_tests.log" 2>&1
  echo "pack B tests exit $?"; grep -E "^\[  (FAILED|PASSED) |tests? from .* ran" "$out/ab_tests.log"
fi
for rep in 1 2; do
  for side in A B; do
    d=$dir_a; [ $side = B ] && d=$dir_b
    (cd "$d" && timeout 150 ./decimamba bench "${args[@]}") > "$out/ab_${side}_$rep.md" 2>&1
    echo "$side run $rep exit $?"; grep "^| cuda\|^| vulkan" "$out/ab_${side}_$rep.md"
  done
done
