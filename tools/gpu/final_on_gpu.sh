#!/usr/bin/env bash
# One GPU-host call that runs the whole test suite and measures what the README's performance
# section reports: tools/gpu/final_on_gpu.sh [SECTION...], sections in this order:
#   tests    the whole test suite (Cli* excluded: it runs the CLI at its build-machine path; ~4-6
#            minutes since session 9's decode forms: FusedStep.* alone takes ~2),
#            then the scan and end-to-end tests again with the Vulkan warp scan forced
#   scan     selective_scan alone on both backends, same card, same run: bench_cuda copy,scan
#            and bench_vulkan with the default, chunked and warp scans side by side
#   bench    decimamba bench, CUDA and Vulkan side by side: 130m (decimation off and on), 2.8b
#            (bench130m / bench2.8b: one of them; 2.8b's random weights take minutes to draw)
#   deci     DeciMamba's prefill speed-up at the target's setting (130m, 32K tokens, layer 12,
#            L_base 2000), both backends side by side
#   long     a 130m-shaped prefill of 1,048,576 tokens on CUDA and on Vulkan (memory target)
#   decode   bench_cuda decode (the executor's step: eager, graph, fusions and PDL on/off) and
#            bench_vulkan --sections decode (fused shaders off/on, per-kernel tables)
#   barriers the Vulkan recorder's barriers, exact (the default) against DM_VULKAN_BARRIERS=wide,
#            alternating twice: bench_vulkan decode 130m, and decimamba bench 130m pp4096
#   kernels  bench_cuda kernels and bench_vulkan --sections kernels: every kernel's table
#   dispatch bench_dispatch: what one small kernel costs in a replayed chain, CUDA and Vulkan
#   deciprofile  ncu over one 32K-token CUDA prefill of 130m, decimation off and at the target's
#            setting (layer 12, L_base 2000): each kernel's summed time, to find what keeps the
#            speed-up under the layer work removed
#   fusiontests  the fusion tests (prompt and decode) and end-to-end tests on the GPU, then
#            compute-sanitizer memcheck over the conv and scan prompt fusions (part of 'tests' but the memcheck)
#   fusions  130m prefill on CUDA with the fusions off (DM_FUSED_STEP=0) and on, alternating twice
#   share    ncu over one 16K-token CUDA prefill of 130m and 2.8b (bench_cuda prefill-profile):
#            each kernel's time in isolation, and the GEMMs' share (target: the rest <= 25%);
#            SHARE_SHAPES="130m" for one shape
#   kcat     CUDA prefill with the K-concatenated GEMM weights off (DM_CUDA_GEMM_KCAT=0) and on
#            (the default), alternating twice: 130m pp4096/16384, 2.8b pp4096, the DeciMamba 32K
#            setting (speed-up against decimation off, same setting)
#   gemmtable  the GEMM tests, then CUDA prefill with cuda_gemm_algo.cpp's tile table off
#            (DM_CUDA_GEMM_TABLE=0) and on, alternating twice: 130m pp4096/16384, the DeciMamba
#            32K setting, 2.8b pp4096 (decimation off and at layer 22, L_base 2000)
#   scansplit  130m CUDA prefill 16K / 32K with the v7u scan writing out_proj's operand
#            (default) and not (DM_CUDA_SCAN_SPLIT=0: y, then a conversion), alternating twice
#   staging  130m CUDA decode (tg64, every token's logits downloaded) with the small transfers
#            from / to pageable memory (DM_CUDA_PINNED_STAGING=0) and through page-locked staging
#            (the default), alternating twice
#   vkgemm   the Vulkan tensor-core GEMM's variants (default choice, t32, n256, n192) on the
#            130m and 2.8b prefill GEMMs at 4K and 16K
# (default: all but decode). PACK names the pack folder (default .gpupack). Logs go to $OUT.
set -u
source "$PWD/tools/gpu/unpack.sh"
gpu_enter "${PACK:-.gpupack}" || exit 1
sections=${*:-tests scan bench long}
has() { [[ " $sections " == *" $1 "* ]]; }
dm=$PWD/decimamba
if has tests; then
  timeout 480 ./decimamba_tests --gtest_filter='-Cli*' > "$out/tests.log" 2>&1
  echo "tests exit $?"
  grep -E "^\[  (FAILED|PASSED) |tests? from .* ran" "$out/tests.log" | head -20
  f='BackendOps.SelectiveScan*:BackendOpsVulkan.SelectiveScanPaths:*BackendOpsE2E*'
  for m in warp; do
    DM_VULKAN_SCAN=$m timeout 60 ./decimamba_tests --gtest_filter="$f" > "$out/tests_$m.log" 2>&1
    echo "tests with DM_VULKAN_SCAN=$m exit $?"
    grep -E "^\[  (FAILED|PASSED) " "$out/tests_$m.log" | head -10
  done
fi
if has scan; then
  timeout 60 ./bench_cuda copy,scan > "$out/scan_cuda.md" 2> "$out/scan_cuda.json"
  echo "bench_cuda scan exit $?"
  timeout 100 ./bench_vulkan --sections kernels --kernels selective_scan --widths 1536,5120 \
    --lengths 4096,16384 --scan-modes "default;chunked;warp" \
    > "$out/scan_vulkan.md" 2> "$out/scan_vulkan.json"
  echo "bench_vulkan scan exit $?"
  grep -h "selective_scan" "$out/scan_cuda.md" "$out/scan_vulkan.md" | head -40
fi
if has bench || has bench130m; then
  timeout 130 "$dm" bench --shape 130m --backend cuda,vulkan -p 4096,16384 -n 64 -r 3 --deci passkey-130m --pick both \
    --json "$out/bench_130m.json" --force > "$out/bench_130m.md" 2>&1; echo "bench 130m exit $?"
  grep "^| cuda\|^| vulkan" "$out/bench_130m.md"
fi
if has bench || has bench2.8b; then
  timeout 320 "$dm" bench --shape 2.8b --backend cuda,vulkan -p 4096 -n 16 -r 2 --deci-layers 22 --deci-L-base 2000 --pick both \
    --json "$out/bench_2.8b.json" --force > "$out/bench_2.8b.md" 2>&1; echo "bench 2.8b exit $?"
  grep "^| cuda\|^| vulkan" "$out/bench_2.8b.md"
fi
if has deci; then
  timeout 150 "$dm" bench --shape 130m --backend cuda,vulkan -p 32768 -n 1 -r 3 --deci-layers 12 \
    --deci-L-base 2000 --json "$out/bench_deci32k.json" --force > "$out/bench_deci32k.md" 2>&1
  echo "bench deci 32K exit $?"; grep "^| cuda\|^| vulkan" "$out/bench_deci32k.md"
fi
if has long; then
  for be in cuda vulkan; do
    timeout 60 "$dm" bench --shape 130m --backend "$be" -p 1048576 -n 1 -r 1 --no-deci \
      > "$out/long_$be.md" 2>&1; echo "1M-token prefill on $be exit $?"
    grep "^| $be" "$out/long_$be.md"
  done
fi
if has decode; then
  timeout 120 ./bench_cuda decode 130m,2.8b > "$out/decode_cuda.md" 2> "$out/decode_cuda.json"
  echo "bench_cuda decode exit $?"; grep "graph (device time)" "$out/decode_cuda.md"
  timeout 150 ./bench_vulkan --sections decode --shapes 130m,2.8b > "$out/decode_vulkan.md" 2>/dev/null
  echo "bench_vulkan decode exit $?"; grep "^| 130m\|^| 2.8b" "$out/decode_vulkan.md"
fi
if has barriers; then
  for rep in 1 2; do
    for mode in wide exact; do
      DM_VULKAN_BARRIERS=$mode timeout 60 ./bench_vulkan --sections decode --shapes 130m \
        > "$out/barriers_decode_${mode}_$rep.md" 2>/dev/null
      echo "barriers $mode: 130m decode exit $?"; grep "^| 130m" "$out/barriers_decode_${mode}_$rep.md"
      DM_VULKAN_BARRIERS=$mode timeout 60 "$dm" bench --shape 130m --backend vulkan -p 4096 -n 64 \
        -r 3 --no-deci > "$out/barriers_bench_${mode}_$rep.md" 2>&1
      echo "barriers $mode: 130m bench exit $?"; grep "^| vulkan" "$out/barriers_bench_${mode}_$rep.md"
    done
  done
fi
if has kernels; then
  timeout 150 ./bench_cuda kernels > "$out/kernels_cuda.md" 2>/dev/null; echo "bench_cuda kernels exit $?"
  timeout 200 ./bench_vulkan --sections kernels > "$out/kernels_vulkan.md" 2>/dev/null; echo "bench_vulkan kernels exit $?"
fi
if has share; then
  for shape in ${SHARE_SHAPES:-130m 2.8b}; do
    timeout 250 ncu --profile-from-start off --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \
      --csv ./bench_cuda prefill-profile "$shape" > "$out/ncu_prefill_$shape.csv" 2>> "$out/ncu.err"
    echo "ncu prefill $shape exit $?"
    python3 "$root/tools/gpu/ncu_summary.py" "$out/ncu_prefill_$shape.csv" 0 > "$out/ncu_prefill_$shape.md"
    sed -n 1,16p "$out/ncu_prefill_$shape.md"; grep "^GEMM kernels" "$out/ncu_prefill_$shape.md"
  done
fi
if has dispatch; then
  timeout 60 ./bench_dispatch cuda,vulkan > "$out/dispatch.md" 2>&1; echo "bench_dispatch exit $?"
  grep "^| " "$out/dispatch.md"
fi
if has fusiontests; then
  timeout 200 ./decimamba_tests \
    --gtest_filter='PromptFusions.*:FusedStep.*:*BackendOpsE2E*:*ExecutorFixture*:CudaBackend.*' \
    > "$out/tests_fusions.log" 2>&1
  echo "fusion tests exit $?"; grep -E "^\[  (FAILED|PASSED) |tests? from .* ran" "$out/tests_fusions.log" | head
fi
if has fusiontests || has tests; then
  timeout 200 compute-sanitizer --tool memcheck --error-exitcode 9 ./decimamba_tests \
    --gtest_filter='PromptFusions.SelectiveScanGemm:PromptFusions.CausalConv1dGemm' \
    > "$out/memcheck_fusions.log" 2>&1
  echo "memcheck prompt fusions exit $?: $(grep -E 'ERROR SUMMARY' "$out/memcheck_fusions.log" | tail -1)"
fi
if has deciprofile; then
  for d in off 12:2000; do
    tag=${d/:/_}
    DM_BENCH_PROFILE_TOKENS=32768 DM_BENCH_PROFILE_DECI=${d#off} timeout 280 ncu --profile-from-start off \
      --metrics gpu__time_duration.sum --csv ./bench_cuda prefill-profile 130m \
      > "$out/ncu_deci_$tag.csv" 2>> "$out/ncu.err"
    echo "ncu 32K prefill, decimation $d exit $?"
    python3 "$root/tools/gpu/ncu_summary.py" "$out/ncu_deci_$tag.csv" 0 > "$out/ncu_deci_$tag.md"
    sed -n 1,22p "$out/ncu_deci_$tag.md"
  done
fi
# alternate VAR TAG BENCH_ARGS...: `decimamba bench BENCH_ARGS` with VAR=0, then VAR=1, twice
# (A/B comparisons in one call); logs $out/TAG_<value>_<run>.md.
alternate() {
  local var=$1 tag=$2 rep v
  shift 2
  for rep in 1 2; do
    for v in 0 1; do
      env "$var=$v" timeout 100 "$dm" bench "$@" > "$out/${tag}_${v}_$rep.md" 2>&1
      echo "$tag: $var=$v run $rep exit $?"; grep "^| cuda" "$out/${tag}_${v}_$rep.md"
    done
  done
}
if has fusions; then
  alternate DM_FUSED_STEP fusions --shape 130m --backend cuda -p 4096,16384 -n 1 -r 5 --no-deci
fi
if has kcat; then
  alternate DM_CUDA_GEMM_KCAT kcat_130m --shape 130m --backend cuda -p 4096,16384 -n 1 -r 5 --no-deci
  alternate DM_CUDA_GEMM_KCAT kcat_deci --shape 130m --backend cuda -p 32768 -n 1 -r 3 \
    --deci-layers 12 --deci-L-base 2000
  for k in 0 1; do
    DM_CUDA_GEMM_KCAT=$k timeout 120 "$dm" bench --shape 2.8b --backend cuda -p 4096 -n 1 -r 3 \
      --no-deci > "$out/kcat_2.8b_$k.md" 2>&1
    echo "2.8b DM_CUDA_GEMM_KCAT=$k exit $?"; grep "^| cuda" "$out/kcat_2.8b_$k.md"
  done
fi
if has gemmtable; then
  timeout 200 ./decimamba_tests --gtest_filter='CudaBackend.Gemm*:PromptFusions.*:*BackendOpsE2E*' \
    > "$out/gemmtable_tests.log" 2>&1
  echo "gemm table tests exit $?"; grep -E "^\[  (FAILED|PASSED) |tests? from .* ran" "$out/gemmtable_tests.log"
  alternate DM_CUDA_GEMM_TABLE table_130m --shape 130m --backend cuda -p 4096,16384 -n 1 -r 5 --no-deci
  alternate DM_CUDA_GEMM_TABLE table_deci --shape 130m --backend cuda -p 32768 -n 1 -r 3 \
    --deci-layers 12 --deci-L-base 2000
  for t in 0 1; do
    DM_CUDA_GEMM_TABLE=$t timeout 150 "$dm" bench --shape 2.8b --backend cuda -p 4096 -n 1 -r 3 \
      --deci-layers 22 --deci-L-base 2000 > "$out/table_2.8b_$t.md" 2>&1
    echo "2.8b DM_CUDA_GEMM_TABLE=$t exit $?"; grep "^| cuda" "$out/table_2.8b_$t.md"
  done
fi
if has scansplit; then
  alternate DM_CUDA_SCAN_SPLIT scansplit --shape 130m --backend cuda -p 16384,32768 -n 1 -r 5 --no-deci
fi
if has staging; then
  alternate DM_CUDA_PINNED_STAGING staging --shape 130m --backend cuda -p 512 -n 64 -r 3 --no-deci
fi
if has vkgemm; then
  timeout 200 ./bench_vulkan --sections kernels --kernels gemm --widths 1536,5120 \
    --lengths 4096,16384 --reps 10 --gemm-variants default,t32,n256,n192 \
    > "$out/vkgemm.md" 2> "$out/vkgemm.json"
  echo "bench_vulkan gemm variants exit $?"; grep "^| " "$out/vkgemm.md" | head -40
fi
