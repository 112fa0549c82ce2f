#!/usr/bin/env bash
# A/B of the Vulkan decode step: bench_vulkan --sections decode from two packs in turns, three
# rounds: .gpupack-old (a slim pack of the build before) and .gpupack-one (this build).
# SHAPES (default 130m), SETTINGS (bench_vulkan --decode-settings; default: one that sets an
# unused variable, i.e. the defaults), PROFILE=1 adds
# each run's per-kernel table. Builds nothing.
source tools/gpu/unpack.sh
gpu_enter .gpupack-old >/dev/null || exit 1; old=$PWD; cd $root
gpu_enter .gpupack-one >/dev/null || exit 1; new=$PWD
for r in 1 2 3; do
  for d in old new; do
    dir=${!d}
    (cd $dir && timeout 120 ./bench_vulkan --sections decode --shapes ${SHAPES:-130m} --decode-settings "${SETTINGS:-default:DM_VULKAN_X=0}" --decode-rounds 1 ${PROFILE:+--decode-profile} 2>&1 | grep -E "^\| (130m|2.8b)|mamba_step|gemm.gemv " | sed "s|^|$d |")
  done
done
