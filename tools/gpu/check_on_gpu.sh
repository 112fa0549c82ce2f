#!/usr/bin/env bash
# Runs on the GPU host from the repo root, after tools/gpu/bundle.sh built .gpu/ here:
# the whole test suite (Vulkan on the NVIDIA driver, CUDA, end to end on every fixture), the
# same greedy continuation on every backend, then (with "bench") the benchmarks.
# Logs go to $OUT; a short summary is printed last.
set -u
source "$PWD/tools/gpu/unpack.sh"
gpu_enter "${DM_GPUPACK:-.gpupack}" || exit 1
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
  # The backend comparison users run: both GPU backends side by side on the same card.
  for shape in 130m 2.8b; do
    timeout 200 ./decimamba bench --shape "$shape" --backend cuda,vulkan -p 512,4096 -n 64 -r 3 \
      --replay both --json "$out/bench_$shape.json" --force | tee "$out/bench_$shape.md"
  done
fi
