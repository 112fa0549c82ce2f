#!/usr/bin/env bash
# One GPU-host call for Vulkan decode A/B runs (session 10, bench/results/
# h100_session10_vkdecode_2026-11-28.md; its grid-cap and prefetch switches, DM_VULKAN_GEMV_GRID,
# DM_VULKAN_BLOCK_GRID, DM_VULKAN_PREFETCH, need that session's experiments patch applied):
# tools/gpu/vkdecode2_on_gpu.sh [SECTION...], in this order:
#   tests   FusedStep.*, DecodeReplay, BackendOpsVulkan.Gemv* (TESTF: another filter; TESTENV:
#           ENV=V words set for the run)
#   gemv    bench_vulkan --sections gemv, 2.8b and 130m (GV: the --gemv-variants, ';'-separated)
#   d2.8b   bench_vulkan decode 2.8b, --decode-settings S28 ("LABEL:ENV=V ENV=V;..."; ROUNDS
#           rounds, default 2; PROFILE=1: each setting's kernel profile)
#   d130m   bench_vulkan decode 130m, --decode-settings S130 (the same)
#   cuda    decimamba bench on CUDA (CUDA_PACK): 130m tg64 and 2.8b tg16
#   vk      decimamba bench on Vulkan, 130m tg64 and 2.8b tg16, each VKENV setting in turn
#           (';'-separated lists of space-separated ENV=V, "-" for none)
# PACK: the Vulkan pack (default .gpupack-vkdec2). Logs: $OUT/logs.tgz; a summary on stdout.
set -u
source "$PWD/tools/gpu/unpack.sh"
cuda_pack=$PWD/${CUDA_PACK:-.gpupack-lead}
gpu_enter "${PACK:-.gpupack-vkdec2}" || exit 1
final_out=$out
out=$(mktemp -d)
sections=${*:-tests gemv d2.8b d130m}
has() { tar czf "$final_out/logs.tgz" -C "$out" .; [[ " $sections " == *" $1 "* ]]; }
if has tests; then
  f=${TESTF:-'FusedStep.*:*DecodeReplay*:*BackendOpsVulkan.Gemv*'}
  read -ra tenv <<< "${TESTENV:-}"
  env "${tenv[@]}" timeout 180 ./decimamba_tests --gtest_filter="$f" > "$out/tests.log" 2>&1
  echo "tests exit $?"
  grep -E "^\[  (FAILED|PASSED) |tests? from .* ran|Failure" "$out/tests.log" | head -20
fi
if has gemv; then
  gv=${GV:-"default"}
  timeout 120 ./bench_vulkan --sections gemv --shapes 2.8b,130m --gemv-variants "$gv" \
    > "$out/gemv.md" 2>/dev/null
  echo "gemv exit $?"; grep -E "^\| (2.8b|130m) \| (in_proj|out_proj|lm_head|x_proj)" "$out/gemv.md" | cut -d'|' -f2-7
fi
vset() {  # SHAPE SETTINGS
  local prof=(); [ "${PROFILE:-0}" = 1 ] && prof=(--decode-profile)
  timeout 200 ./bench_vulkan --sections decode --shapes "$1" --decode-settings "$2" \
    --decode-rounds "${ROUNDS:-2}" "${prof[@]}" > "$out/decode_$1.md" 2>/dev/null
  echo "decode $1 exit $?"; grep -E "^\| $1 \|" "$out/decode_$1.md" | cut -d'|' -f4-5 | sed 's/DM_VULKAN_//g'
  grep -E "^(### Kernel|gemm.gemv |prefetch|mamba_step|rms_norm.residual)" "$out/decode_$1.md" | head -60
}
has d2.8b && vset 2.8b "${S28:-off:DM_VULKAN_BLOCK_STEP=0;four:DM_VULKAN_BLOCK_STEP=4}"
has d130m && vset 130m "${S130:-def;off:DM_VULKAN_BLOCK_STEP=0}"
if has cuda; then
  (cd "$root" && gpu_unpack "$cuda_pack" && for s in "130m -n 64 -r 3" "2.8b -n 16 -r 2"; do
    timeout 200 ./decimamba bench --shape ${s%% *} --backend cuda -p 512 ${s#* } --force
  done) > "$out/bench_cuda.md" 2>&1
  echo "cuda bench exit $?"; grep "^| cuda" "$out/bench_cuda.md"
fi
if has vk; then
  IFS=';' read -ra envs <<< "${VKENV:--}"
  for e in "${envs[@]}"; do
    vars=(); [ "$e" = - ] || read -ra vars <<< "$e"
    for s in "130m -n 64 -r 3" "2.8b -n 16 -r 2"; do
      env "${vars[@]}" timeout 200 ./decimamba bench --shape ${s%% *} --backend vulkan -p 512 ${s#* } \
        --force > "$out/bench_vk_${s%% *}_${e//[^A-Za-z0-9]/_}.md" 2>&1
      echo "vk bench ${s%% *} [$e] exit $?: $(grep '^| vulkan' "$out/bench_vk_${s%% *}_${e//[^A-Za-z0-9]/_}.md" | grep tg)"
    done
  done
fi
tar czf "$final_out/logs.tgz" -C "$out" .
