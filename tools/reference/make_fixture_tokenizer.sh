#!/usr/bin/env bash
# Trains the small SentencePiece tokenizer used by the test fixtures (tests/data/tokenizer/fixture_sp.model).
# Runs on the Debian build machine (needs `spm_train` from Debian's `sentencepiece` package), not on the GPU host.
#
# Training text: the licence texts Debian ships in /usr/share/common-licenses (base-files; only regular
# files, symlinks such as GPL -> GPL-3 are skipped), read in sorted order. Identity normalization (no NFKC
# table: keeps the .model file small). Single-threaded so that the
# result does not depend on the machine.
#
# Usage: tools/reference/make_fixture_tokenizer.sh [OUT_DIR]   (default: tests/data/tokenizer)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$root/tests/data/tokenizer}"
command -v spm_train >/dev/null || { echo "make_fixture_tokenizer: spm_train not found (apt-get install sentencepiece)" >&2; exit 1; }

mkdir -p "$out"
inputs="$(find /usr/share/common-licenses -maxdepth 1 -type f | LC_ALL=C sort | paste -sd, -)"
[ -n "$inputs" ] || { echo "make_fixture_tokenizer: no training text in /usr/share/common-licenses" >&2; exit 1; }

spm_train \
  --input="$inputs" \
  --model_prefix="$out/fixture_sp" \
  --model_type=bpe \
  --vocab_size=512 \
  --byte_fallback=true \
  --split_digits=true \
  --character_coverage=0.9995 \
  --normalization_rule_name=identity \
  --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1 \
  --num_threads=1 \
  --random_seed=1234 \
  --minloglevel=1

echo "wrote $out/fixture_sp.model ($(stat -c %s "$out/fixture_sp.model") bytes), $out/fixture_sp.vocab"
if command -v spm_encode >/dev/null; then
  printf 'Hello world 2024, \xce\x94t decimation\n' | spm_encode --model="$out/fixture_sp.model" --output_format=piece
  printf 'Hello world 2024, \xce\x94t decimation\n' | spm_encode --model="$out/fixture_sp.model" --output_format=id
fi
