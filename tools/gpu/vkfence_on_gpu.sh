#!/usr/bin/env bash
# The A/B that decides DM_VULKAN_FENCE_SPIN_US's default (src/backend/vulkan/recorder.cpp
# wait_fence): `decimamba bench` 130m decode on Vulkan, every token's logits waited for and as
# greedy generation runs it, with the recorder blocking at once (0) and polling first (SPINS,
# default "200 1000"), in turns, ROUNDS times (default 2). PACK names the pack (default .gpupack).
# Builds nothing; prints the tg rows.
set -u
source "$PWD/tools/gpu/unpack.sh"
gpu_enter "${PACK:-.gpupack}" >/dev/null || exit 1
for r in $(seq "${ROUNDS:-2}"); do
  for spin in 0 ${SPINS:-200 1000}; do
    DM_VULKAN_FENCE_SPIN_US=$spin timeout 200 ./decimamba bench --shape 130m --backend vulkan \
      -p 0 -n 64 -r 3 --pick both 2>&1 | grep -E "tg64" | sed "s|^|round $r spin $spin |"
  done
done
