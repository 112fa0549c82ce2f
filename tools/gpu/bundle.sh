#!/usr/bin/env bash
# Builds nothing: bundles the programs of build/ (or $1) that tools/gpu/check_on_gpu.sh runs
# on the GPU host into .gpu/, stripped, and packs it as .gpupack/gpu.tar.xz (both git-ignored):
# ICU's data library alone is 31 MB, so carry the packed form (about 11 MB) to the GPU host.
set -euo pipefail
cd "$(dirname "$0")/../.."
b=${1:-build}
rm -rf .gpu
../shared/gpu-host/bundle.sh .gpu "$b/decimamba" "$b/decimamba_tests" "$b/bench_cuda" "$b/bench_vulkan"
strip .gpu/decimamba .gpu/decimamba_tests .gpu/bench_cuda .gpu/bench_vulkan
mkdir -p .gpupack
tar cJf .gpupack/gpu.tar.xz .gpu
ls -la .gpupack/gpu.tar.xz
