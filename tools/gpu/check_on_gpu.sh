#!/usr/bin/env bash
# Runs on the GPU host from the repo root, after tools/gpu/bundle.sh built .gpu/ here:
# the whole test suite (Vulkan on the NVIDIA driver, CUDA, end to end on every fixture), the
# same greedy continuation on every backend, then (with "bench") the benchmarks.
# Logs go to $OUT; a short summary is printed last.
set -u
root=$PWD
cd .gpu && source ./env.sh
out=${OUT:-/tmp}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
export DM_TEST_DATA_DIR=$root/tests/data DM_SOURCE_DIR=$root
# Cli* runs the CLI at its build-machine path; it is covered by CI.
./decimamba_tests --gtest_filter='-Cli*' > "$out/tests.log" 2>&1
echo "tests exit code: $?"
grep -E "^\[  (FAILED|PASSED|SKIPPED) " "$out/tests.log" | head -30
for be in cpu vulkan cuda; do
  printf '%-7s' "$be:"
  ./decimamba generate --model "$root/models/default" --backend "$be" --temperature 0 -n 24 \
    --quiet "It is a truth universally acknowledged, that" 2>&1 | tr '\n' ' '
  echo
done
if [ "${1:-}" = bench ]; then
  ./bench_cuda "${2:-copy,kernels,decode,prefill}" 2>"$out/bench_cuda.json" | tee "$out/bench_cuda.md"
  ./bench_vulkan 2>"$out/bench_vulkan.json" | tee "$out/bench_vulkan.md"
fi
