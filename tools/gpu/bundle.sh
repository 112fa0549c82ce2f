#!/usr/bin/env bash
# tools/gpu/bundle.sh [BUILD_DIR [PACK_DIR]]
# Builds nothing: bundles the programs of BUILD_DIR (default build/) that tools/gpu/check_on_gpu.sh
# runs on the GPU host, stripped, and packs them as PACK_DIR/gpu.tar.xz (default .gpupack/, which
# is git-ignored, as is every .gpupack*/): ICU's data library alone is 31 MB, so carry the packed
# form (about 11 MB) to the GPU host and unpack it there with `tar xJf PACK_DIR/gpu.tar.xz`
# (it holds one folder, .gpu/). Two bundles with different PACK_DIRs can be made at once.
set -euo pipefail
cd "$(dirname "$0")/../.."
b=${1:-build}
pack=${2:-.gpupack}
stage=$(mktemp -d "$PWD/.gpu-stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
progs=()
# PROGS="bench_cuda decimamba_tests" bundles only those (a slim pack beside another one).
for p in ${PROGS:-decimamba decimamba_tests bench_cuda bench_vulkan bench_dispatch}; do
  [ -e "$b/$p" ] && progs+=("$b/$p")
done
../shared/gpu-host/bundle.sh "$stage/.gpu" "${progs[@]}"
for p in "${progs[@]}"; do strip "$stage/.gpu/$(basename "$p")"; done
mkdir -p "$pack"
tar cJf "$pack/gpu.tar.xz" -C "$stage" .gpu
ls -la "$pack/gpu.tar.xz"
