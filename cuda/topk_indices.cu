// DeciMamba's token selection: the k best of scores[0, n) under a total order (higher score first,
// then lower index; NaN below every number, -0 == +0), written in ascending position order, then
// the protected tail n .. L-1. One block of 1024 threads, over an order-preserving 32-bit key of
// each score:
//   1. one read of the scores: the keys' smallest and largest value (and the keys into shared
//      memory where they fit: n ≤ ~56K on an H100, ~40K on an A100; else later steps read the
//      scores again);
//   2. radix select below the bits that all keys share, 8 bits a pass, MSB first: the k-th
//      largest key's prefix T and how many keys with that prefix are kept (the lowest-indexed);
//      it stops early when every key with the prefix is kept;
//   3. an ordered compaction over tiles of 8 positions a thread: each thread counts its keys
//      above T and equal to T, one block scan gives every thread its output offset and its rank
//      among the ties, and each thread writes its kept positions in order.
// H100, 32K candidates, k = 2000 (ncu, decimating 130m prefill, session 8): 36.6-37.2 us; the
// first form (4 passes from bit 31 that each re-read the scores from global one load at a time,
// a compaction of 1024 positions per pair of block scans) 62.9-64.2 us. Step 1's range made no
// difference there (passes from bit 31 over the shared keys: 37.6 us); aggregating the
// histogram updates per warp measured slower (__match_any_sync 55.2 us; one update where the
// whole warp shares a bucket, else one each: 45.4 us). Still above the ~15 us aimed at; the
// likely cost is shared-memory atomics contending on a few counters (not profiled).
#include "common.cuh"

namespace dm::cuda {
namespace {

constexpr int kBlock = 1024;
constexpr int kItems = 8;  // positions a thread owns per compaction tile
constexpr uint32_t kTile = kBlock * kItems;
constexpr unsigned kFull = 0xffffffffu;


// Exclusive prefix over the block of one value per thread; `total` gets the block's sum.
// `warp_sums` holds 32 values, written after a barrier, so calls may follow each other.
__device__ __forceinline__ uint32_t block_exclusive_scan(uint32_t v, uint32_t* warp_sums,
                                                         uint32_t& total) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  uint32_t incl = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const uint32_t n = __shfl_up_sync(kFull, incl, o);
    if (lane >= o) incl += n;
  }
  __syncthreads();
  if (lane == 31) warp_sums[wid] = incl;
  __syncthreads();
  const uint32_t w = warp_sums[lane];
  uint32_t wincl = w;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const uint32_t n = __shfl_up_sync(kFull, wincl, o);
    if (lane >= o) wincl += n;
  }
  total = __shfl_sync(kFull, wincl, 31);
  const uint32_t before = __shfl_sync(kFull, wincl - w, wid);  // exclusive sum of warp wid
  return before + incl - v;
}

template <bool kSmem>
__global__ void __launch_bounds__(kBlock, 1) topk_indices_kernel(TopkIndicesParams p,
                                                              const float* scores, int32_t* idx) {
  extern __shared__ uint4 skeys4[];  // n keys (rounded up to kItems) when kSmem
  uint32_t* skeys = reinterpret_cast<uint32_t*>(skeys4);
  __shared__ uint32_t hist[256];
  __shared__ uint32_t warp_sums[32], warp_max[32];
  __shared__ uint32_t sel_bucket, sel_rem, sel_count;
  const uint32_t tid = threadIdx.x, lane = tid & 31, n = p.n_candidates, k = p.k;
  const auto key_at = [&](uint32_t i) { return kSmem ? skeys[i] : order_key(scores[i]); };

  if (k == n) {  // every candidate is kept
    for (uint32_t i = tid; i < n; i += kBlock) idx[i] = int32_t(i);
  } else if (k > 0) {
    // 1. The keys' range (and the keys into shared memory): the bits above the highest one in
    // which the smallest and largest key differ are common to all, so the radix passes start
    // below them, where the keys spread over the buckets (scores of one binade share the top
    // 9 bits: a histogram of those would pile every key onto one or two counters).
    uint32_t kmin = ~0u, kmax = 0;
    for (uint32_t base = 0; base < n; base += kTile) {
      uint32_t key[kItems];
#pragma unroll
      for (int j = 0; j < kItems; ++j) {  // all loads first: kItems in flight
        const uint32_t i = base + j * kBlock + tid;
        key[j] = i < n ? order_key(scores[i]) : 0u;
      }
#pragma unroll
      for (int j = 0; j < kItems; ++j) {
        const uint32_t i = base + j * kBlock + tid;
        if (i < n) {
          if (kSmem) skeys[i] = key[j];
          kmin = min(kmin, key[j]);
          kmax = max(kmax, key[j]);
        }
      }
    }
    kmin = __reduce_min_sync(kFull, kmin);
    kmax = __reduce_max_sync(kFull, kmax);
    if (lane == 0) warp_sums[tid >> 5] = kmin, warp_max[tid >> 5] = kmax;
    __syncthreads();
    kmin = __reduce_min_sync(kFull, warp_sums[lane]);
    kmax = __reduce_max_sync(kFull, warp_max[lane]);

    // 2. Radix select over the bits below: the k-th largest key, 8 bits a pass, MSB first.
    const uint32_t diff = kmin ^ kmax;
    int hi = diff ? 31 - __clz(int(diff)) : -1;  // the highest bit left to decide
    uint32_t mask = hi >= 31 ? 0u : ~0u << (hi + 1);
    uint32_t prefix = kmin & mask, rem = k;
    while (hi >= 0) {
      const int w = min(8, hi + 1), shift = hi - w + 1;
      const uint32_t digit = (1u << w) - 1u;
      if (tid < 256) hist[tid] = 0;
      __syncthreads();
      for (uint32_t base = 0; base < n; base += kTile) {
        uint32_t key[kItems];
#pragma unroll
        for (int j = 0; j < kItems; ++j) {
          const uint32_t i = base + j * kBlock + tid;
          key[j] = i < n ? key_at(i) : 0u;
        }
#pragma unroll
        for (int j = 0; j < kItems; ++j)
          if (base + j * kBlock + tid < n && (key[j] & mask) == prefix)
            atomicAdd(&hist[(key[j] >> shift) & digit], 1u);
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
              sel_count = cnt[j];
              break;
            }
            acc += cnt[j];
          }
        }
      }
      __syncthreads();
      prefix |= sel_bucket << shift;
      mask |= digit << shift;
      rem = sel_rem;
      const bool all_kept = sel_count == rem;
      __syncthreads();  // sel_* and hist are rewritten next pass
      if (all_kept) break;  // every key with this prefix is kept: the low bits do not matter
      hi = shift - 1;
    }
    const uint32_t T = prefix, need = rem;  // keep (key & mask) > T, and the first `need` == T

    // 2. Ordered compaction: thread tid owns positions base + kItems·tid .. + kItems - 1.
    uint32_t kept = 0, eq_seen = 0;
    for (uint32_t base = 0; base < n; base += kTile) {
      const uint32_t i0 = base + kItems * tid;
      uint32_t key[kItems];
      if (kSmem && i0 < n) {  // the allocation covers whole kItems runs
#pragma unroll
        for (int j = 0; j < kItems / 4; ++j) {
          const uint4 v = skeys4[i0 / 4 + j];
          key[4 * j] = v.x & mask, key[4 * j + 1] = v.y & mask;
          key[4 * j + 2] = v.z & mask, key[4 * j + 3] = v.w & mask;
        }
      } else {
#pragma unroll
        for (int j = 0; j < kItems; ++j) key[j] = i0 + j < n ? key_at(i0 + j) & mask : 0u;
      }
      uint32_t gt = 0, eq = 0;
#pragma unroll
      for (int j = 0; j < kItems; ++j) {
        gt += i0 + j < n && key[j] > T;
        eq += i0 + j < n && key[j] == T;
      }
      uint32_t tile_total;  // counts ≤ kTile < 2^16: two in one word
      const uint32_t before = block_exclusive_scan(gt | eq << 16, warp_sums, tile_total);
      const uint32_t gt_before = before & 0xffffu, eq_total = tile_total >> 16;
      uint32_t eq_rank = eq_seen + (before >> 16);  // ties before my first position
      const uint32_t eq_kept_before = min(eq_seen, need);
      uint32_t pos = kept + gt_before + min(eq_rank, need) - eq_kept_before;
#pragma unroll
      for (int j = 0; j < kItems; ++j) {
        if (i0 + j >= n) break;
        const bool is_eq = key[j] == T;
        if (key[j] > T || (is_eq && eq_rank < need)) idx[pos++] = int32_t(i0 + j);
        eq_rank += is_eq;
      }
      kept += (tile_total & 0xffffu) + min(eq_seen + eq_total, need) - eq_kept_before;
      eq_seen += eq_total;
    }
  }
  // The protected tail, after the k kept positions.
  for (uint32_t j = tid; j < p.L - n; j += kBlock) idx[k + j] = int32_t(n + j);
}

}  // namespace

cudaError_t launch_topk_indices(const TopkIndicesParams& p, const float* scores, int32_t* idx,
                                cudaStream_t s) {
  if (p.k + (p.L - p.n_candidates) == 0) return cudaSuccess;
  // Keys in shared memory (rounded up to whole tiles of a thread's kItems) where the device's
  // per-block opt-in allows, less 4 KiB for the static arrays. The opt-in is raised once per
  // device, outside any graph capture in practice (the first prompt's call).
  thread_local int raised_for = -1;  // the device whose limit was raised
  thread_local size_t smem_max = 0;
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return e;
  if (dev != raised_for) {
    int optin = 0;
    e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    if (e == cudaSuccess && optin > 4096)
      e = cudaFuncSetAttribute(topk_indices_kernel<true>,
                               cudaFuncAttributeMaxDynamicSharedMemorySize, optin - 4096);
    if (e != cudaSuccess) return e;
    smem_max = optin > 4096 ? size_t(optin - 4096) : 0;
    raised_for = dev;
  }
  const size_t smem = size_t(ceil_div(p.n_candidates, kItems)) * kItems * sizeof(uint32_t);
  if (p.k > 0 && p.k < p.n_candidates && smem <= smem_max)
    topk_indices_kernel<true><<<1, kBlock, smem, s>>>(p, scores, idx);
  else
    topk_indices_kernel<false><<<1, kBlock, 0, s>>>(p, scores, idx);
  return cudaGetLastError();
}

}  // namespace dm::cuda
