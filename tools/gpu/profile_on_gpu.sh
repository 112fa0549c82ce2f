#!/usr/bin/env bash
# One GPU-host call that says where the two unmet targets' time goes (session 6's baseline):
#   1. the whole test suite (tools/gpu/final_on_gpu.sh tests);
#   2. ncu --set full over the default CUDA scan at d_inner 1536, L 4096 (bench_cuda scan's first
#      v7 launch): pipe utilisation (is it the exp unit, the issue slots or DRAM?) and stalls;
#   3. ncu over one eager 130m CUDA decode step: each kernel's time and DRAM bytes in isolation;
#   4. bench_cuda decode 130m: the graph-replayed step's device time against the floor.
# PACK names the pack folder (default .gpupack). Logs go to $OUT as one archive.
set -u
PACK=${PACK:-.gpupack} bash tools/gpu/final_on_gpu.sh tests
source "$PWD/tools/gpu/unpack.sh"
gpu_enter "${PACK:-.gpupack}" || exit 1
timeout 200 ncu --set full -k regex:scan_v7 -c 1 ./bench_cuda scan > "$out/ncu_scan.txt" 2>> "$out/ncu.err"
echo "ncu scan exit $?"
grep -E "scan_v7|Duration|Issue Slots Busy|Warp Cycles Per Issued|No Eligible|Achieved Occupancy|Registers Per|Executed Ipc|Memory Throughput|DRAM Throughput|Compute \(SM\)" "$out/ncu_scan.txt" | head -30
timeout 200 ncu --profile-from-start off --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \
  --csv ./bench_cuda decode-profile 130m > "$out/ncu_decode_130m.csv" 2>> "$out/ncu.err"
echo "ncu decode exit $?"
python3 "$root/tools/gpu/ncu_summary.py" "$out/ncu_decode_130m.csv" 16 > "$out/ncu_decode_130m.md"
head -40 "$out/ncu_decode_130m.md"
timeout 100 ./bench_cuda decode 130m > "$out/decode_cuda.md" 2> /dev/null
echo "bench_cuda decode exit $?"; grep "graph" "$out/decode_cuda.md" | head
cd "$out" && tar czf logs.tgz --remove-files *.txt *.log *.md *.csv *.err 2>/dev/null; ls "$out"
