#!/usr/bin/env bash
# Installs the Debian 12 packages decimamba builds and tests with. Root or sudo.
set -euo pipefail
pkgs=(build-essential cmake pkg-config nlohmann-json3-dev libsentencepiece-dev libcli11-dev
      libgtest-dev libicu-dev python3 zlib1g-dev)
# The tokenizer property test (scripts/test.sh) installs Hugging Face `tokenizers` with pip into
# a virtual environment under build/: Debian 12's system Python is PEP 668 externally managed.
pkgs+=(python3-venv python3-pip)
# The Vulkan backend: headers + loader, the GLSL compiler, lavapipe (CPU Vulkan for CI) and the
# validation layer (one test run has it on).
pkgs+=(libvulkan-dev glslc mesa-vulkan-drivers vulkan-validationlayers)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "installing: ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
