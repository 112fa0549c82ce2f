// DeciMamba's token selection: the k best of scores[0, n) under a total order (higher score first,
// then lower index; NaN below every number, -0 == +0), written in ascending position order, then
// the protected tail n .. L-1. One block of 1024 threads:
//   1. radix select, 4 passes of 8 bits over an order-preserving 32-bit key of the score, finds
//      the k-th largest key T and how many of the keys equal to T are kept (the lowest-indexed);
//   2. an ordered compaction (ballots and a block scan per 1024 positions) writes every position
//      whose key is above T, or equal to T and among the first `need` such positions.
// O(n) work, no sort. DeciMamba calls it at most a few times per prompt.
#include "common.cuh"

namespace dm::cuda {
namespace {

constexpr int kBlock = 1024;
constexpr unsigned kFull = 0xffffffffu;

// Larger key = better score. NaN maps to 0, below -inf (0x007fffff).
__device__ __forceinline__ uint32_t score_key(float s) {
  if (isnan(s)) return 0u;
  if (s == 0.f) s = 0.f;  // -0 ties with +0
  const uint32_t b = __float_as_uint(s);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// Exclusive prefix over the block of a per-thread 0/1 flag; returns the flag's position and sets
// `total` to the block's count. `warp_counts` holds 32 values; begins and ends with a barrier.
__device__ __forceinline__ uint32_t block_rank(bool flag, uint32_t* warp_counts, uint32_t& total) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  const unsigned ballot = __ballot_sync(kFull, flag);
  const uint32_t in_warp = __popc(ballot & ((1u << lane) - 1u));
  __syncthreads();
  if (lane == 0) warp_counts[wid] = __popc(ballot);
  __syncthreads();
  const uint32_t v = lane < (kBlock / 32) ? warp_counts[lane] : 0u;
  uint32_t incl = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const uint32_t n = __shfl_up_sync(kFull, incl, o);
    if (lane >= o) incl += n;
  }
  total = __shfl_sync(kFull, incl, 31);
  const uint32_t before = __shfl_sync(kFull, incl - v, wid);  // exclusive sum of warp wid
  return before + in_warp;
}

__global__ void __launch_bounds__(kBlock) topk_indices_kernel(TopkIndicesParams p,
                                                              const float* scores, int32_t* idx) {
  __shared__ uint32_t hist[256];
  __shared__ uint32_t warp_counts[32];
  __shared__ uint32_t sel_bucket, sel_rem;
  const uint32_t tid = threadIdx.x, n = p.n_candidates, k = p.k;

  if (k == n) {  // every candidate is kept
    for (uint32_t i = tid; i < n; i += kBlock) idx[i] = int32_t(i);
  } else if (k > 0) {
    // 1. Radix select: the k-th largest key, MSB first.
    uint32_t prefix = 0, mask = 0, rem = k;
    for (int shift = 24; shift >= 0; shift -= 8) {
      if (tid < 256) hist[tid] = 0;
      __syncthreads();
      for (uint32_t i = tid; i < n; i += kBlock) {
        const uint32_t key = score_key(scores[i]);
        if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);
      }
      __syncthreads();
      if (tid < 32) {
        // Lane l covers buckets 255-8l .. 248-8l (descending); find where the count from the top
        // reaches rem.
        uint32_t cnt[8], local = 0;
#pragma unroll
        for (int j = 0; j < 8; ++j) local += (cnt[j] = hist[255 - 8 * tid - j]);
        uint32_t incl = local;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
          const uint32_t v = __shfl_up_sync(kFull, incl, o);
          if (tid >= uint32_t(o)) incl += v;
        }
        const uint32_t excl = incl - local;
        if (excl < rem && incl >= rem) {  // exactly one lane
          uint32_t acc = excl;
#pragma unroll
          for (int j = 0; j < 8; ++j) {
            if (acc + cnt[j] >= rem) {
              sel_bucket = 255u - 8u * tid - j;
              sel_rem = rem - acc;
              break;
            }
            acc += cnt[j];
          }
        }
      }
      __syncthreads();
      prefix |= sel_bucket << shift;
      mask |= 255u << shift;
      rem = sel_rem;
      __syncthreads();  // sel_* and hist are rewritten next pass
    }
    const uint32_t T = prefix, need_eq = rem;  // keep keys > T and the first need_eq keys == T

    // 2. Ordered compaction.
    uint32_t kept = 0, eq_seen = 0;
    for (uint32_t base = 0; base < n; base += kBlock) {
      const uint32_t i = base + tid;
      const uint32_t key = i < n ? score_key(scores[i]) : 0u;
      const bool gt = i < n && key > T, eq = i < n && key == T;
      uint32_t eq_total, keep_total;
      const uint32_t eq_rank = eq_seen + block_rank(eq, warp_counts, eq_total);
      const bool keep = gt || (eq && eq_rank < need_eq);
      const uint32_t pos = kept + block_rank(keep, warp_counts, keep_total);
      if (keep) idx[pos] = int32_t(i);
      eq_seen += eq_total;
      kept += keep_total;
    }
  }
  // The protected tail, after the k kept positions.
  for (uint32_t j = tid; j < p.L - n; j += kBlock) idx[k + j] = int32_t(n + j);
}

}  // namespace

cudaError_t launch_topk_indices(const TopkIndicesParams& p, const float* scores, int32_t* idx,
                                cudaStream_t s) {
  if (p.k + (p.L - p.n_candidates) == 0) return cudaSuccess;
  topk_indices_kernel<<<1, kBlock, 0, s>>>(p, scores, idx);
  return cudaGetLastError();
}

}  // namespace dm::cuda
