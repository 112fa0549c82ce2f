#!/usr/bin/env bash
# One program run once per environment setting, the settings in turns, ROUNDS times: the A/B of
# a switch or a default in one GPU-host call (timings compare only within one call).
#   SETTINGS  ';'-separated "label:VAR=V VAR2=W" (an empty list after the colon: the defaults),
#             e.g. "spin0:DM_VULKAN_FENCE_SPIN_US=0;spin1000:DM_VULKAN_FENCE_SPIN_US=1000"
#   ROUNDS    rounds over the settings (default 2)
#   GREP      extended regex of the output lines to print (default: markdown table rows)
#   PACK      the pack (default .gpupack); COMMON: VAR=V settings every run gets (e.g.
#             DM_VULKAN_COOPMAT=0); TIMEOUT per run in seconds (default 200)
# Usage: SETTINGS=... tools/gpu/env_ab.sh ./decimamba bench --shape 130m --backend vulkan -p 0 -n 64
# Each printed line starts with "round R LABEL". Builds nothing; every run's whole output is
# also kept under $OUT (round_R_LABEL.log).
set -u
[ $# -ge 1 ] && [ -n "${SETTINGS:-}" ] || { echo "usage: SETTINGS='a:V=1;b:V=2' $0 PROGRAM ARGS..." >&2; exit 2; }
source "$PWD/tools/gpu/unpack.sh"
gpu_enter "${PACK:-.gpupack}" >/dev/null || exit 1
IFS=';' read -r -a settings <<< "$SETTINGS"
for r in $(seq "${ROUNDS:-2}"); do
  for s in "${settings[@]}"; do
    label=${s%%:*}
    vars=""
    [ "$s" != "$label" ] && vars=${s#*:}
    log="$out/round_${r}_${label//[^A-Za-z0-9_.-]/_}.log"
    # shellcheck disable=SC2086  # vars and COMMON are word lists of VAR=V
    env ${COMMON:-} $vars timeout "${TIMEOUT:-200}" "$@" > "$log" 2>&1
    rc=$?
    grep -E "${GREP:-^\|}" "$log" | sed "s|^|round $r $label |"
    [ $rc = 0 ] || echo "round $r $label: exit $rc (see $log)"
  done
done
