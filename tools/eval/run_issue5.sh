#!/usr/bin/env bash
# The DeciMamba evaluation of issue 5 with decimamba's own commands, on one model:
#   tools/eval/run_issue5.sh DECIMAMBA MODEL_DIR BACKEND OUT_DIR [EVAL_TEXT_DIR]
# passkey grid (depths 0..1 x 512..32768 tokens, 5 keys a cell) plain vs DeciMamba (the model's
# default decimation, config.json "decimamba" block), perplexity vs window on the held-out novels
# (EVAL_TEXT_DIR, default .corpus/eval), Mamba Mean Distance vs length (erf), prefill timing
# (bench). JSON goes to OUT_DIR; tools/eval/plots.py draws the figures from it.
# Env: LENGTHS, KEYS, PPL_WINDOWS, ERF_LENGTHS, BENCH_LENGTHS override the grids; MODES (default
# "plain deci") picks the modes; ERF_LENGTHS="" or BENCH_LENGTHS="" skips that part.
set -euo pipefail
dm=$1 model=$2 be=$3 out=$4 texts=${5:-.corpus/eval}
mkdir -p "$out"
LENGTHS=${LENGTHS:-512,1024,2048,4096,8192,16384,32768}
KEYS=${KEYS:-5}
PPL_WINDOWS=${PPL_WINDOWS:-1024 2048 4096 8192 16384 32768 65536}
ERF_LENGTHS=${ERF_LENGTHS-512 1024 2048 4096 8192 16384 32768}
BENCH_LENGTHS=${BENCH_LENGTHS-512,2048,8192,32768}
MODES=${MODES:-plain deci}
deci=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1]))['decimamba']['decimation']; print('--deci-layers %s --deci-L-base %g' % (','.join(map(str,d['layers'])), d['L_base']))" "$model/config.json")
t0=$(date +%s)
for mode in $MODES; do
  flags=$([ $mode = plain ] && echo --no-deci || echo "$deci")
  # shellcheck disable=SC2086
  "$dm" passkey --model "$model" --backend "$be" -q --lengths "$LENGTHS" --keys "$KEYS" $flags \
    --json "$out/passkey_$mode.json" --force
  for book in "$texts"/*.txt; do
    name=$(basename "$book" .txt)
    for w in $PPL_WINDOWS; do
      # shellcheck disable=SC2086
      "$dm" perplexity --model "$model" --backend "$be" -q --window "$w" $flags "$book" \
        --json "$out/ppl_${mode}_${name}_$w.json" --force > /dev/null || echo "skip $name W=$w"
    done
  done
  mkdir -p "$out/erf_$mode"
  for n in $ERF_LENGTHS; do
    # shellcheck disable=SC2086
    "$dm" erf --model "$model" --backend "$be" -q --tokens "$n" $flags --json "$out/erf_$mode/erf_$n.json" --force > /dev/null
  done
  echo "$mode done at $(( $(date +%s) - t0 )) s"
done
[ -z "$BENCH_LENGTHS" ] && exit 0
# shellcheck disable=SC2086
"$dm" bench --model "$model" --backend "$be" -p "$BENCH_LENGTHS" -n 16 -r 3 $deci --json "$out/bench.json" --force
echo "all done in $(( $(date +%s) - t0 )) s"
