# Sourced by the tools/gpu/*_on_gpu.sh scripts: gpu_unpack PACK_DIR unpacks a tools/gpu/bundle.sh
# pack into a fresh folder and enters its .gpu/ with the bundle's environment (env.sh). Fresh,
# because a warm GPU host keeps the files of the call before: a `.gpu/` left by another pack
# would otherwise run in this one's place (a helper's call timed another helper's binaries so).
gpu_unpack() {
  local dir
  dir=$(mktemp -d "$PWD/.gpu-run.XXXXXX") || return 1
  tar xJf "$1/gpu.tar.xz" -C "$dir" || { echo "gpu_unpack: no $1/gpu.tar.xz" >&2; return 1; }
  cd "$dir/.gpu" && source ./env.sh
}
