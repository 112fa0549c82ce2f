// Device helpers shared by the kernels: weight loads of any stored dtype, the activation
// functions with the CPU reference's formulas, block reductions.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/kernels.h"

namespace dm::cuda {

// DType values (core/dtype.h): F32 0, F16 1, BF16 2, I32 3.
__device__ __forceinline__ float load_f(const void* p, uint32_t dtype, size_t i) {
  switch (dtype) {
    case 0: return static_cast<const float*>(p)[i];
    case 1: return __half2float(static_cast<const __half*>(p)[i]);
    case 2: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    default: return float(static_cast<const int32_t*>(p)[i]);
  }
}

// F.softplus with threshold 20, and x·sigmoid(x): the formulas of backend/cpu/cpu_math.h.
__device__ __forceinline__ float softplus(float x) { return x > 20.f ? x : log1pf(expf(x)); }
__device__ __forceinline__ float silu(float x) { return x / (1.f + expf(-x)); }

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over a block of blockDim.x threads (a multiple of 32, at most 1024); every thread gets
// the total. `scratch` holds 32 values; the call begins and ends with a barrier, so it can be
// reused right away.
template <typename T>
__device__ __forceinline__ T block_sum(T v, T* scratch) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) scratch[wid] = v;
  __syncthreads();
  T t = lane < nw ? scratch[lane] : T(0);
  t = warp_sum(t);
  __syncthreads();
  return t;
}

// rms_norm's scale 1 / sqrt(mean of squares + eps) from each thread's partial sum of squares
// (double, as the CPU reference sums): the block's total, then the mean over D. Begins and
// ends with a barrier (block_sum); every thread gets the scale.
__device__ __forceinline__ float rms_scale(double ss, double* scratch, uint32_t D, float eps) {
  ss = block_sum(ss, scratch);
  const float var = D > 0 ? float(ss / double(D)) : 0.f;
  return 1.f / sqrtf(var + eps);
}

// Writes v as element (row, col) of the GEMM operand (kernels.h GemmSplitOut; split.hi set):
// hi = round(v), lo = round(v - hi), in the weights' dtype. The values of launch_convert_rows.
__device__ __forceinline__ void split_store(const GemmSplitOut& split, size_t row, uint32_t col,
                                            float v) {
  const size_t i = row * split.stride + col;
  if (split.dtype == 1) {
    const __half h = __float2half_rn(v);
    static_cast<__half*>(split.hi)[i] = h;
    if (split.lo) static_cast<__half*>(split.lo)[i] = __float2half_rn(v - __half2float(h));
  } else {
    const __nv_bfloat16 h = __float2bfloat16_rn(v);
    static_cast<__nv_bfloat16*>(split.hi)[i] = h;
    if (split.lo)
      static_cast<__nv_bfloat16*>(split.lo)[i] = __float2bfloat16_rn(v - __bfloat162float(h));
  }
}

// Four consecutive columns col .. col + 3 (col a multiple of 4, split.stride too) as two 8-byte
// stores, hi and lo: split_store's values.
__device__ __forceinline__ void split_store4(const GemmSplitOut& split, size_t row, uint32_t col,
                                             float4 v) {
  const float f[4] = {v.x, v.y, v.z, v.w};
  uint32_t h[4], l[4];  // the 16-bit patterns
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    if (split.dtype == 1) {
      const __half hv = __float2half_rn(f[j]), lv = __float2half_rn(f[j] - __half2float(hv));
      h[j] = __half_as_ushort(hv), l[j] = __half_as_ushort(lv);
    } else {
      const __nv_bfloat16 hv = __float2bfloat16_rn(f[j]);
      const __nv_bfloat16 lv = __float2bfloat16_rn(f[j] - __bfloat162float(hv));
      h[j] = __bfloat16_as_ushort(hv), l[j] = __bfloat16_as_ushort(lv);
    }
  }
  const size_t i = row * split.stride + col;
  *reinterpret_cast<uint2*>(static_cast<uint16_t*>(split.hi) + i) =
      make_uint2(h[0] | h[1] << 16, h[2] | h[3] << 16);
  if (split.lo)
    *reinterpret_cast<uint2*>(static_cast<uint16_t*>(split.lo) + i) =
        make_uint2(l[0] | l[1] << 16, l[2] | l[3] << 16);
}

// An order-preserving 32-bit key of a float: larger key = larger value, -0 ties with +0, NaN
// maps to 0, below -inf (0x007fffff). The total order of topk_indices and argmax.
__device__ __forceinline__ uint32_t order_key(float s) {
  if (isnan(s)) return 0u;
  if (s == 0.f) s = 0.f;  // -0 ties with +0
  const uint32_t b = __float_as_uint(s);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// A greedy pick's 64-bit key of value v at position i: order_key(v) above, 2^32 - 1 - i below,
// so the largest key is the largest value at its lowest position (argmax's order); 0 is below
// every key (its low half is never 0 for i < 2^32 - 1).
__device__ __forceinline__ uint64_t pick_key(float v, uint32_t i) {
  return (uint64_t(order_key(v)) << 32) | uint64_t(0xffffffffu - i);
}
__device__ __forceinline__ int32_t pick_index(uint64_t key) {
  return int32_t(0xffffffffu - uint32_t(key));
}

inline unsigned ceil_div(uint64_t a, uint64_t b) { return unsigned((a + b - 1) / b); }
// Whether p is 16-byte aligned (the 16-byte load paths' host-side check).
inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Whether the current device has compute capability 9.0 or later (PDL, TMA), asked once per
// device (fused_step.cu).
bool device_sm90_or_later();
// The current device's SM count, 1 when it cannot be asked (fused_step.cu).
int sm_count();

}  // namespace dm::cuda
