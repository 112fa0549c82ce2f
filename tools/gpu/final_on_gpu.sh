#!/usr/bin/env bash
# One GPU-host call after the issue-5 evaluation: the DeciMamba half of it on CUDA (passkey grid,
# perplexity, prefill timing), the backend benchmark (CUDA and Vulkan, decimation off and on) for
# the 130m and 2.8b shapes, then the whole test suite. PACK names the pack folder.
set -u
root=$PWD
[ -d .gpu ] || tar xJf "${PACK:-.gpupack}/gpu.tar.xz"
out=${OUT:-/tmp}
mkdir -p /tmp/eval_texts /tmp/issue5
tar xJf .corpuspack/eval.tar.xz -C /tmp/eval_texts
cd .gpu && source ./env.sh && cd "$root"
dm=$root/.gpu/decimamba
MODES=deci ERF_LENGTHS="" LENGTHS=512,1024,2048,4096,8192,16384,32768,65536 BENCH_LENGTHS=512,2048,8192,32768,131072 \
  timeout 150 tools/eval/run_issue5.sh "$dm" models/default cuda /tmp/issue5 /tmp/eval_texts > "$out/issue5_deci.log" 2>&1
echo "issue5 deci exit $?"
tar czf "$out/issue5_deci.tar.gz" -C /tmp issue5
timeout 130 "$dm" bench --shape 130m --backend cuda,vulkan -p 4096,16384 -n 64 -r 3 --deci passkey-130m \
  --json "$out/bench_130m.json" --force > "$out/bench_130m.md" 2>&1; echo "bench 130m exit $?"
timeout 130 "$dm" bench --shape 2.8b --backend cuda,vulkan -p 4096 -n 32 -r 2 --deci-layers 22 --deci-L-base 4000 \
  --json "$out/bench_2.8b.json" --force > "$out/bench_2.8b.md" 2>&1; echo "bench 2.8b exit $?"
export DM_TEST_DATA_DIR=$root/tests/data DM_SOURCE_DIR=$root
(cd .gpu && timeout 150 ./decimamba_tests --gtest_filter='-Cli*' > "$out/tests.log" 2>&1; echo "tests exit $?")
grep -E "^\[  (FAILED|PASSED|SKIPPED) " "$out/tests.log" | head -20
tail -3 "$out/tests.log"
