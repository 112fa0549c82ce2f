#!/usr/bin/env bash
# Runs on the GPU host from the repo root (after tools/gpu/bundle.sh; PACK names the pack folder):
# the issue-5 evaluation of models/default with the CUDA backend (tools/eval/run_issue5.sh), and
# the PyTorch reference comparison at long prompts (tools/reference/compare_long.py). Results are
# packed as $OUT/issue5_eval.tar.gz; a short summary is printed.
set -u
root=$PWD
source "$PWD/tools/gpu/unpack.sh"
out=${OUT:-/tmp}
mkdir -p /tmp/eval_texts
[ -d .corpuspack ] && tar xJf .corpuspack/eval.tar.xz -C /tmp/eval_texts 2>/dev/null
(gpu_unpack "${PACK:-.gpupack}" || exit 1
  dm=$PWD/decimamba  # the unpacked pack's binary, run from the repo root
  cd "$root" && \
  LENGTHS=${LENGTHS:-512,1024,2048,4096,8192,16384,32768,65536} \
  ERF_LENGTHS=${ERF_LENGTHS:-512 1024 2048 4096 8192 16384 32768 65536} \
  BENCH_LENGTHS=${BENCH_LENGTHS:-512,2048,8192,32768,131072} \
  timeout 300 tools/eval/run_issue5.sh "$dm" models/default cuda /tmp/issue5 /tmp/eval_texts > "$out/issue5_eval.log" 2>&1
  echo "run_issue5 exit $?"
  timeout 150 python3 tools/reference/compare_long.py --decimamba "$dm" --model models/default \
    --backends cpu,cuda --lengths 8192,32768 --out /tmp/issue5/compare_long.json 2>&1 | tail -8)
tar czf "$out/issue5_eval.tar.gz" -C /tmp issue5
grep -A8 "passkey retrieval" "$out/issue5_eval.log" | head -40
