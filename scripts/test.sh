#!/usr/bin/env bash
# Builds decimamba and runs the whole test suite twice: a Release build, then a build under
# AddressSanitizer + UndefinedBehaviorSanitizer (CUDA left out there: CI has no GPU to run it,
# and the Release build already compiles it). Installs missing Debian packages first.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
jobs=$(nproc)

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDM_SANITIZE=ON -DDM_BENCH=OFF -DDM_CUDA=OFF
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --test-dir build-asan --output-on-failure
