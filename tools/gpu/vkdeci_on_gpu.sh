#!/usr/bin/env bash
# One GPU-host call for the Vulkan DeciMamba prefill (130m, 32K tokens, layer 12 keeps 2000): the
# Vulkan tests on the card, then per-dispatch profiles of the 32K prefill decimated and not
# (DM_VULKAN_PROFILE: timestamp queries, one row per kernel and grid, so a kernel at 32K and at
# 2,000 rows gets two rows), then `decimamba bench` wall clock, decimation off and on, for the
# BEFORE pack (optional) and PACK in turns (ROUNDS times), each under every setting of CONFIGS.
#   PACK=.gpupack-vkdeci BEFORE=.gpupack-vkdeci-before CONFIGS="default;DM_VULKAN_GEMM_SPLITK=1" \
#     PROFILE_CONFIGS="default;DM_VULKAN_GEMM_SPLITK=1" tools/gpu/vkdeci_on_gpu.sh
# CONFIGS / PROFILE_CONFIGS: ';'-separated settings, each "default" or space-separated VAR=VALUE.
# Builds nothing; unpacks each pack afresh (tools/gpu/unpack.sh); logs go to $OUT as one tar.
set -u
source "$PWD/tools/gpu/unpack.sh"
top=$PWD
logs=$(mktemp -d)
bench_args=(bench --shape 130m --backend vulkan -p 32768 -n 1 --deci-layers 12 --deci-L-base 2000)
# with_config "SETTING" CMD...: CMD with the setting's variables exported ("default": none).
with_config() {
  local cfg=$1
  shift
  if [ "$cfg" = default ]; then "$@"; else env $cfg "$@"; fi
}
# Pack directories, unpacked once each (gpu_enter leaves us inside the last one).
declare -A dir
for name in after before; do
  pack=${PACK:-.gpupack-vkdeci}
  [ $name = before ] && pack=${BEFORE-}
  [ -n "$pack" ] || continue
  cd "$top" && gpu_enter "$pack" > "$logs/card.txt" || exit 1
  dir[$name]=$PWD
done
cat "$logs/card.txt"
cd "${dir[after]}" || exit 1

# The Cli tests are left out: they run the CLI from its build directory, absent here.
if [ "${TESTS:-1}" = 1 ]; then
  timeout "${TEST_TIMEOUT:-300}" ./decimamba_tests \
    --gtest_filter="${TEST_FILTER:-*Vulkan*:BackendOps*:*E2E*:*Decimat*:-Cli*}" \
    > "$logs/tests.log" 2>&1
  echo "tests exit $?"
  grep -E "^\[  (FAILED|PASSED|SKIPPED) |tests? from .* ran" "$logs/tests.log" | head -30
fi

# Profiles: each file holds the off run's and the decimated run's dispatches (one warm-up and one
# timed prefill of each, one decode token); split by grid later.
# PACK only (DM_VULKAN_PROFILE is new): once per setting of PROFILE_CONFIGS.
IFS=';' read -ra pcfgs <<< "${PROFILE_CONFIGS:-default}"
i=0
for cfg in "${pcfgs[@]}"; do
  i=$((i + 1))
  f="$logs/prof${i}.txt"
  echo "# $cfg" > "$f"
  with_config "$cfg" env DM_VULKAN_PROFILE="$f" timeout 120 ./decimamba "${bench_args[@]}" -r 1 \
    > "$logs/prof${i}.bench" 2>&1
  echo "profile $i ($cfg): exit $?, $(grep -c . "$f") lines"
done

# The decimation's kernels and the GEMMs at 2,001 and 32K rows, each pack (bench_vulkan: device
# µs per kernel, median of the repetitions; topk_indices there keeps L/2 - 16). GEMM_VARIANTS:
# PACK's GEMMs once per DM_VULKAN_GEMM_COOPMAT value too.
for name in before after; do
  [ -n "${dir[$name]-}" ] || continue
  cd "${dir[$name]}"
  variants=()
  [ $name = after ] && [ -n "${GEMM_VARIANTS-}" ] && variants=(--gemm-variants "$GEMM_VARIANTS")
  timeout 200 ./bench_vulkan --sections kernels --kernels "${KERNELS:-dt_importance,topk_indices,gather_rows,gemm}" \
    --widths "${WIDTHS:-1536}" --lengths "${LENGTHS:-2001,32768}" --reps 20 "${variants[@]}" > "$logs/kernels_$name.md" 2> "$logs/kernels_$name.json"
  echo "bench_vulkan ($name): exit $?"
  grep -E "^\| .*(dt_importance|topk|gather|gemm|proj)" "$logs/kernels_$name.md" | head -20
done
cd "${dir[after]}"

IFS=';' read -ra cfgs <<< "${CONFIGS:-default}"
for round in $(seq "${ROUNDS:-2}"); do
  for name in before after; do
    [ -n "${dir[$name]-}" ] || continue
    cd "${dir[$name]}"
    for cfg in "${cfgs[@]}"; do
      echo "== round $round, pack $name, $cfg"
      with_config "$cfg" timeout 150 ./decimamba "${bench_args[@]}" -r 3 2>&1 | tee -a "$logs/bench.log" \
        | grep -E "pp32768"
    done
  done
done
cd "$top"
# Each profile: its rows of at least 0.1 ms (kernel, grid, dispatches, total ms, µs a dispatch).
python3 - "$logs"/prof*.txt <<'EOF' | tee "$logs/profile_summary.md"
import sys
for path in sys.argv[1:]:
    lines = open(path).read().splitlines()
    print(f"\n{lines[0]}  ({path.rsplit('/', 1)[-1]})\n")
    print("| kernel | grid | calls | total ms | us each |\n|---|---|---:|---:|---:|")
    total = 0.0
    for l in lines[1:]:
        f = l.split()
        if len(f) < 6 or f[0] == "kernel":
            continue
        calls, ms, avg = int(f[-4]), float(f[-3]), float(f[-2])
        total += ms
        if ms >= 0.1:
            print(f"| {' '.join(f[:-5])} | {f[-5]} | {calls} | {ms:.3f} | {avg:.1f} |")
    print(f"| all | | | {total:.3f} | |")
EOF
tar czf "${OUT:-/tmp}/vkdeci_logs.tgz" -C "$logs" .
