// idx[0] = the position of the largest of x[0 .. n) (params.h ArgmaxParams): greedy decoding's
// pick at the end of a decode step, so 4 bytes cross to the host instead of the logits (130m:
// 201 KB a token). Each thread folds a strided slice into one 64-bit key, common.cuh's pick_key,
// whose maximum is the largest value at its lowest index (NaN below every number, -0 == +0: the
// order of topk_indices and of the CPU backend); then a warp and a block maximum.
//
// Two forms (DM_CUDA_ARGMAX=grid|block, read per launch):
//   grid (default): a grid of 256-thread blocks, ~16 values a thread (4 float4 loads in flight);
//     each block's maximum goes to a scratch slot, and the last block to finish (a counter, as
//     rms_norm_gemm's) reduces the slots, writes idx and resets the counter. 50,280 logits: 13
//     blocks. H200, session 18 (bench_cuda greedy-gap, executor greedy loop): 130m 267.2-267.6
//     µs a token against 269.1-269.5 for one block, 2.8b 2163.9-2164.5 against 2164.8-2165.0.
//     The pick still adds ~5 µs to a recorded step (logits graph 258.5, greedy graph 264.1 at
//     130m), though spreading its arithmetic over 13 SMs instead of one saved only ~2: most of
//     it is waiting for the LM head GEMV to complete. Taking the pick in that GEMV's last block
//     instead (an atomicMax and a fence a block) measured no faster, and folding the final norm
//     into the GEMV as well 11-12 µs slower (bench/results/h200_session18_*.patch).
//   block: one block of 1024 threads, no scratch (the form before; kept to compare).
#include <algorithm>

#include "common.cuh"
#include "core/env.h"
#include "fused_step.cuh"

namespace dm::cuda {
namespace {

constexpr int kGridBlock = 256, kOneBlock = 1024;
constexpr uint32_t kPerThread = 16;  // values a thread of the grid form reads (4 float4)

// The largest key of x[start, n) read with stride `stride` by this thread; kVec: x is 16-byte
// aligned and its whole float4s are read as such (start and stride count float4s then), the
// last n % 4 values one by one (by the threads whose scalar index falls there).
template <bool kVec>
__device__ __forceinline__ uint64_t thread_best(const float* __restrict__ x, uint32_t n,
                                                uint32_t start, uint32_t stride) {
  uint64_t best = 0;  // below every element's key: its low half is 2^32 - 1 - i > 0
  uint32_t tail = 0;  // where the one-by-one reads start
  if constexpr (kVec) {
    const uint32_t n4 = n / 4;
    const float4* x4 = reinterpret_cast<const float4*>(x);
#pragma unroll 4
    for (uint32_t q = start; q < n4; q += stride) {
      const float4 v = x4[q];
      const uint32_t i = 4 * q;
      best = max(best, max(max(pick_key(v.x, i), pick_key(v.y, i + 1)),
                           max(pick_key(v.z, i + 2), pick_key(v.w, i + 3))));
    }
    tail = 4 * n4;
  }
#pragma unroll 4
  for (uint32_t i = tail + start; i < n; i += stride) best = max(best, pick_key(x[i], i));
  return best;
}

// The block's largest key, in thread 0 (every thread must call it).
template <int kBlock>
__device__ __forceinline__ uint64_t block_best(uint64_t best) {
  __shared__ uint64_t warp_best[kBlock / 32];
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) best = max(best, __shfl_xor_sync(0xffffffffu, best, off));
  if ((threadIdx.x & 31) == 0) warp_best[threadIdx.x >> 5] = best;
  __syncthreads();
  best = 0;
  if (threadIdx.x < 32) {
    if (threadIdx.x < kBlock / 32) best = warp_best[threadIdx.x];
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) best = max(best, __shfl_xor_sync(0xffffffffu, best, off));
  }
  return best;
}

template <bool kVec>
__global__ void __launch_bounds__(kOneBlock)
    argmax_block_kernel(ArgmaxParams p, const float* __restrict__ x, int32_t* __restrict__ idx) {
  pdl_wait();  // launched early (PDL) behind the LM head: its logits are complete from here
  pdl_trigger();
  const uint64_t best = block_best<kOneBlock>(thread_best<kVec>(x, p.n, threadIdx.x, kOneBlock));
  if (threadIdx.x == 0) idx[0] = pick_index(best);
}

template <bool kVec>
__global__ void __launch_bounds__(kGridBlock)
    argmax_grid_kernel(ArgmaxParams p, const float* __restrict__ x, int32_t* __restrict__ idx,
                       uint64_t* __restrict__ partial, unsigned* __restrict__ counter) {
  __shared__ unsigned last;
  pdl_wait();
  pdl_trigger();
  const uint32_t start = blockIdx.x * kGridBlock + threadIdx.x, stride = gridDim.x * kGridBlock;
  uint64_t best = block_best<kGridBlock>(thread_best<kVec>(x, p.n, start, stride));
  if (gridDim.x == 1) {
    if (threadIdx.x == 0) idx[0] = pick_index(best);
    return;
  }
  if (threadIdx.x == 0) {
    partial[blockIdx.x] = best;
    __threadfence();  // the slot is visible before the count that says so
    last = atomicAdd(counter, 1u) == gridDim.x - 1 ? 1u : 0u;
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  best = 0;
  for (uint32_t b = threadIdx.x; b < gridDim.x; b += kGridBlock)
    best = max(best, __ldcg(&partial[b]));
  best = block_best<kGridBlock>(best);
  if (threadIdx.x == 0) {
    idx[0] = pick_index(best);
    *counter = 0;  // for the next launch (stream order: none runs before this grid ends)
  }
}

bool grid_form() { return env_choice("cuda", "DM_CUDA_ARGMAX", {"grid", "block"}) == 0; }

}  // namespace

cudaError_t launch_argmax(const ArgmaxParams& p, const float* x, int32_t* idx, void* scratch,
                          cudaStream_t s) {
  // With PDL (fused_step.cuh) its launch overlaps the LM head GEMV before it.
  const bool vec = aligned16(x);
  if (!grid_form()) {
    if (vec) return launch_pdl(argmax_block_kernel<true>, 1, kOneBlock, 0, s, p, x, idx);
    return launch_pdl(argmax_block_kernel<false>, 1, kOneBlock, 0, s, p, x, idx);
  }
  // ~kPerThread values a thread (on the vector path start and stride count float4s).
  const unsigned blocks = std::max(
      1u, std::min(kArgmaxMaxBlocks, ceil_div(p.n, uint64_t(kGridBlock) * kPerThread)));
  auto* partial = static_cast<uint64_t*>(scratch);
  auto* counter = reinterpret_cast<unsigned*>(partial + kArgmaxMaxBlocks);
  if (vec)
    return launch_pdl(argmax_grid_kernel<true>, blocks, kGridBlock, 0, s, p, x, idx, partial,
                      counter);
  return launch_pdl(argmax_grid_kernel<false>, blocks, kGridBlock, 0, s, p, x, idx, partial,
                    counter);
}

}  // namespace dm::cuda
