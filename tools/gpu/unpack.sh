# Sourced by the tools/gpu/*_on_gpu.sh scripts, run from the repo root on the GPU host.
# gpu_unpack PACK_DIR unpacks a tools/gpu/bundle.sh pack into a fresh folder and enters its .gpu/
# with the bundle's environment (env.sh). Fresh, because a warm GPU host keeps the files of the
# call before: a `.gpu/` left by another pack would otherwise run in this one's place (a helper's
# call timed another helper's binaries so).
gpu_unpack() {
  local dir
  dir=$(mktemp -d "$PWD/.gpu-run.XXXXXX") || return 1
  tar xJf "$1/gpu.tar.xz" -C "$dir" || { echo "gpu_unpack: no $1/gpu.tar.xz" >&2; return 1; }
  cd "$dir/.gpu" && source ./env.sh
}

# gpu_enter PACK_DIR: every script's preamble. Sets root (the repo root) and out ($OUT, else /tmp),
# unpacks and enters the pack (gpu_unpack), prints the card (also into $out/card.txt: each number
# a script reports is read on that card) and exports the test data paths the tests read.
gpu_enter() {
  root=$PWD
  out=${OUT:-/tmp}
  gpu_unpack "$1" || return 1
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader \
    | tee "$out/card.txt"
  export DM_TEST_DATA_DIR=$root/tests/data DM_SOURCE_DIR=$root
}

# fused_block_sanitize LOGS TIMEOUT: compute-sanitizer memcheck and racecheck over
# FusedStep.MambaBlockStep on CUDA (small cases), logs in LOGS, one summary line each.
fused_block_sanitize() {
  local logs=$1 limit=$2 tool
  for tool in memcheck racecheck; do
    DM_FUSED_TEST_BACKENDS=cuda DM_CUDA_TEST_SMALL=1 timeout "$limit" compute-sanitizer --tool $tool \
      --error-exitcode 9 ./decimamba_tests --gtest_filter='FusedStep.MambaBlockStep' \
      > "$logs/sanitizer_$tool.log" 2>&1
    echo "compute-sanitizer $tool exit $?"
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|^\[  (FAILED|PASSED) " "$logs/sanitizer_$tool.log" | head -4
  done
}
