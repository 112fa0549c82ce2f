// idx[0] = the position of the largest of x[0 .. n) (params.h ArgmaxParams): greedy decoding's
// pick at the end of a decode step, so 4 bytes cross to the host instead of the logits
// (130m: 201 KB a token, and the host's copy of them). One block of 1024 threads: each thread
// folds a strided slice into one 64-bit key, order_key(x) above (2^32 - 1 - i), whose maximum
// is the largest value at its lowest index (NaN below every number, -0 == +0: the order of
// topk_indices and of the CPU backend); then a warp and a block maximum. 50,280 logits are ~13
// 16-byte loads a thread from L2, where the LM head GEMV just wrote them.
#include "common.cuh"
#include "fused_step.cuh"

namespace dm::cuda {
namespace {

constexpr int kBlock = 1024;

__device__ __forceinline__ uint64_t pick_key(float v, uint32_t i) {
  return (uint64_t(order_key(v)) << 32) | uint64_t(0xffffffffu - i);
}

// kVec: x is 16-byte aligned and its whole float4s are read as such (12-13 a thread at 130m,
// all in flight at once), the last n % 4 values one by one.
template <bool kVec>
__global__ void __launch_bounds__(kBlock) argmax_kernel(ArgmaxParams p, const float* __restrict__ x,
                                                        int32_t* __restrict__ idx) {
  __shared__ uint64_t warp_best[kBlock / 32];
  pdl_wait();  // launched early (PDL) behind the LM head: its logits are complete from here
  pdl_trigger();
  uint64_t best = 0;  // below every element's key: its low half is 2^32 - 1 - i > 0
  uint32_t tail = 0;  // where the one-by-one reads start
  if constexpr (kVec) {
    const uint32_t n4 = p.n / 4;
    const float4* x4 = reinterpret_cast<const float4*>(x);
#pragma unroll 8
    for (uint32_t q = threadIdx.x; q < n4; q += kBlock) {
      const float4 v = x4[q];
      const uint32_t i = 4 * q;
      best = max(best, max(max(pick_key(v.x, i), pick_key(v.y, i + 1)),
                           max(pick_key(v.z, i + 2), pick_key(v.w, i + 3))));
    }
    tail = 4 * n4;
  }
#pragma unroll 4
  for (uint32_t i = tail + threadIdx.x; i < p.n; i += kBlock) best = max(best, pick_key(x[i], i));
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) best = max(best, __shfl_xor_sync(0xffffffffu, best, off));
  if ((threadIdx.x & 31) == 0) warp_best[threadIdx.x >> 5] = best;
  __syncthreads();
  if (threadIdx.x < 32) {
    best = warp_best[threadIdx.x];
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) best = max(best, __shfl_xor_sync(0xffffffffu, best, off));
    if (threadIdx.x == 0) idx[0] = int32_t(0xffffffffu - uint32_t(best));
  }
}

}  // namespace

cudaError_t launch_argmax(const ArgmaxParams& p, const float* x, int32_t* idx, cudaStream_t s) {
  // With PDL (fused_step.cuh) its launch overlaps the LM head GEMV before it.
  if (reinterpret_cast<uintptr_t>(x) % 16 == 0) return launch_pdl(argmax_kernel<true>, 1, kBlock, 0, s, p, x, idx);
  return launch_pdl(argmax_kernel<false>, 1, kBlock, 0, s, p, x, idx);
}

}  // namespace dm::cuda
