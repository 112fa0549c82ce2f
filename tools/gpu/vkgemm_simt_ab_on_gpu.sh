#!/usr/bin/env bash
# A/B of the Vulkan SIMT GEMM (shaders/gemm.comp: what devices without cooperative matrices run;
# forced here with DM_VULKAN_COOPMAT=0): bench_vulkan's prefill GEMMs from .gpupack-old (the
# build before) and .gpupack-one (this build) in turns, two rounds. WIDTHS (default 1536,5120),
# LENGTHS (default 4096). Builds nothing.
source tools/gpu/unpack.sh
gpu_enter .gpupack-old >/dev/null || exit 1; old=$PWD; cd $root
gpu_enter .gpupack-one >/dev/null || exit 1; new=$PWD
for r in 1 2; do
  for d in old new; do
    dir=${!d}
    (cd $dir && DM_VULKAN_COOPMAT=0 timeout 200 ./bench_vulkan --sections kernels --kernels gemm \
      --widths ${WIDTHS:-1536,5120} --lengths ${LENGTHS:-4096} --reps 5 2>&1 |
      grep -E "^\| gemm" | sed "s|^|$d |")
  done
done
