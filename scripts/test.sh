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

# Tokenizer property test: fresh random strings through decimamba's tokenizer.json reader and
# through Hugging Face `tokenizers` (pip, in a venv under build/ since Debian's Python is PEP 668
# externally managed); any difference fails with the string printed. The GPT-NeoX-20B file joins
# when ../shared/data/gpt-neox-20b/ exists beside the repository.
if [ ! -x build/pyenv/bin/python ]; then python3 -m venv build/pyenv; fi
build/pyenv/bin/python -m pip install --quiet --disable-pip-version-check "tokenizers==0.23.3"
tok_args=(--tokenizer tests/data/tokenizer/small_bpe.json)
if [ -f ../shared/data/gpt-neox-20b/tokenizer.json ]; then
  tok_args+=(--tokenizer ../shared/data/gpt-neox-20b/tokenizer.json)
else
  echo "tokenizer property test: ../shared/data/gpt-neox-20b/tokenizer.json absent, small tokenizer only"
fi
build/pyenv/bin/python tools/tokenizer/property_test.py --bench build/bench_tokenizer \
  "${tok_args[@]}" --count 5000

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDM_SANITIZE=ON -DDM_BENCH=OFF -DDM_CUDA=OFF
cmake --build build-asan -j"$jobs"
export UBSAN_OPTIONS=print_stacktrace=1
# Leak checks cover the project's own code. Mesa's lavapipe and the validation layer leak when the
# loader unloads them (their frames show as "<unknown module>"), so this run hides the Vulkan
# driver (the Vulkan tests skip, saying why)...
VK_DRIVER_FILES=/dev/null VK_ICD_FILENAMES=/dev/null ASAN_OPTIONS=detect_leaks=1 \
  build-asan/decimamba_tests
# ...and the tests that drive a Vulkan device run again with it, under ASan + UBSan without
# leak checks. (The validation-layer run is part of the Release stage above.)
ASAN_OPTIONS=detect_leaks=0 build-asan/decimamba_tests \
  --gtest_filter='BackendOps*:*BackendOpsE2E*:*Replay*:CliInfo*:CliProfile*:CliBench*'

