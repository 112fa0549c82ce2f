#!/usr/bin/env bash
# Two builds side by side in one GPU-host call: tools/gpu/ab_packs.sh PACK_A PACK_B [ARGS...]
# runs `PROGRAM ARGS` from pack A, then B, ROUNDS times (default 2: A B A B), and before that
# TESTS (a gtest filter, optional) from pack B. For changes without a switch of their own.
# Variables set for the call reach both programs (e.g. DM_VULKAN_COOPMAT=0). Logs to $OUT
# (ab_<A|B>_<round>.md); prints the lines matching GREP.
#   PROGRAM  default "decimamba bench", ARGS default: 130m CUDA prefill 4K / 16K, no decimation
#   GREP     default "^| cuda|^| vulkan" (bench_vulkan's tables: e.g. "^| 130m|mamba_step")
# Examples (a slim pack of the build before as .gpupack-old, this build as .gpupack-one):
#   the Vulkan decode step:  PROGRAM=./bench_vulkan GREP="^\| 130m|mamba_step" ROUNDS=3 \
#     tools/gpu/ab_packs.sh .gpupack-old .gpupack-one --sections decode --shapes 130m \
#     --decode-settings default:DM_VULKAN_X=0 --decode-rounds 1
#   the SIMT GEMM:  DM_VULKAN_COOPMAT=0 PROGRAM=./bench_vulkan GREP="^\| gemm" \
#     tools/gpu/ab_packs.sh .gpupack-old .gpupack-one --sections kernels --kernels gemm \
#     --widths 1536,5120 --lengths 4096 --reps 5
set -u
source "$PWD/tools/gpu/unpack.sh"
root=$PWD
out=${OUT:-/tmp}
a=$1 b=$2
shift 2
args=("$@")
read -ra program <<< "${PROGRAM:-./decimamba bench}"
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
for rep in $(seq "${ROUNDS:-2}"); do
  for side in A B; do
    d=$dir_a; [ $side = B ] && d=$dir_b
    (cd "$d" && timeout 200 "${program[@]}" "${args[@]}") > "$out/ab_${side}_$rep.md" 2>&1
    echo "$side run $rep exit $?"; grep -E "${GREP:-^\| cuda|^\| vulkan}" "$out/ab_${side}_$rep.md"
  done
done
