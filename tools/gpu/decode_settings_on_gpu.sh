#!/usr/bin/env bash
# One GPU-host call for decode A/B work: tools/gpu/decode_settings_on_gpu.sh [tests] [cuda] [vulkan]
#   tests   the whole test suite (Cli* excluded), summary lines only
#   cuda    bench_cuda decode-settings over $SETTINGS (';'-separated, see bench_cuda.cpp) for
#           $SHAPES (default 2.8b,130m): graph device time per setting, side by side
#   vulkan  bench_vulkan --sections decode for $SHAPES: fused shaders off/on, per-kernel tables
# PACK names the pack folder (default .gpupack). Logs go to $OUT.
set -u
source "$PWD/tools/gpu/unpack.sh"
gpu_enter "${PACK:-.gpupack}" || exit 1
SHAPES=${SHAPES:-2.8b,130m}
sections=${*:-tests cuda vulkan}
has() { [[ " $sections " == *" $1 "* ]]; }
if has tests; then
  timeout 150 ./decimamba_tests --gtest_filter='-Cli*' > "$out/tests.log" 2>&1
  echo "tests exit $?"; grep -E "^\[  (FAILED|PASSED) |tests? from .* ran" "$out/tests.log" | head -20
fi
if has cuda; then
  timeout 240 ./bench_cuda decode-settings "$SHAPES" "${SETTINGS:-base}" > "$out/decode_settings.md" 2> "$out/decode_settings.json"
  echo "bench_cuda decode-settings exit $?"; grep "^| " "$out/decode_settings.md"
fi
if has vulkan; then
  timeout 240 ./bench_vulkan --sections decode --shapes "$SHAPES" > "$out/vulkan_decode.md" 2> "$out/vulkan_decode.json"
  echo "bench_vulkan decode exit $?"; grep "^| " "$out/vulkan_decode.md"
fi
