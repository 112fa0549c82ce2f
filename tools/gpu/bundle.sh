#!/usr/bin/env bash
# Builds nothing: bundles the programs of build/ (or $1) that tools/gpu/check_on_gpu.sh runs
# on the GPU host into .gpu/ (git-ignored; name it in the device run's carry).
set -euo pipefail
cd "$(dirname "$0")/../.."
b=${1:-build}
rm -rf .gpu
../shared/gpu-host/bundle.sh .gpu "$b/decimamba" "$b/decimamba_tests" "$b/bench_cuda" "$b/bench_vulkan"
