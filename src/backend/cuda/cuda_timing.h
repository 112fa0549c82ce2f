// Device-side timing for benchmarks and the copy-bandwidth ceiling the floors are measured
// against, through Backend& so that callers need no CUDA headers. Throw unless cuda.
#pragma once

#include <cstddef>
#include <functional>
#include <vector>

#include "backend/backend.h"

namespace dm {

// Median over `reps` of the device time (CUDA events on the backend's stream) of the work that
// enqueue() puts on the backend, after `warmup` untimed runs. Milliseconds.
double cuda_time_ms(Backend& backend, const std::function<void()>& enqueue, int reps = 20,
                    int warmup = 3);

// The device time (CUDA events on the backend's stream, one pair around the whole loop) of
// `iters` back-to-back calls of enqueue(), divided by iters, after `warmup` untimed calls;
// settle() runs after the end event is recorded (e.g. to take downloads still outstanding).
// Unlike cuda_time_ms, what lies between two calls (launch gaps, work enqueue() adds between
// the recorded units) is counted. Milliseconds per call.
double cuda_loop_time_ms(Backend& backend, const std::function<void()>& enqueue, int iters,
                         int warmup = 4, const std::function<void()>& settle = nullptr);

// Device-to-device cudaMemcpy of `bytes`, median of several, as (bytes read + bytes written)/s
// in GB/s: the bandwidth ceiling of a streaming kernel on this card.
double cuda_copy_bandwidth_gbs(Backend& backend, size_t bytes = size_t(1) << 30);

// Runs enqueue() and waits for it between cudaProfilerStart and cudaProfilerStop, so that a
// profiler started with `ncu --profile-from-start off` sees exactly that work.
void cuda_profiler_range(Backend& backend, const std::function<void()>& enqueue);

// After a synchronize: the records of the one-kernel Mamba block's DM_CUDA_DECODE_BLOCK_TRACE=1
// launches (kernels.h, kDecodeTraceWords words: per slot, block 0's 16 words then the last
// block's; %globaltimer ns at the kernel's stamps, word 15 the launch's epoch, 0: never written).
std::vector<unsigned long long> cuda_decode_block_trace(Backend& backend);

}  // namespace dm
