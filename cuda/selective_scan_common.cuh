// Device helpers shared by the prompt-scan kernels (selective_scan.cu, selective_scan_v6.cu):
// the MUFU-only activations and the cp.async staging primitives.
#pragma once

#include <cstdint>

#include "common.cuh"

namespace dm::cuda::scan {

constexpr float kLog2e = 1.4426950408889634f;
constexpr unsigned kFull = 0xffffffffu;
constexpr int kN = 16;  // d_state of the fast paths

__device__ __forceinline__ float ex2_approx(float x) {
  float r;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
  return r;
}
__device__ __forceinline__ float lg2_approx(float x) {
  float r;
  asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
  return r;
}
__device__ __forceinline__ float rcp_approx(float x) {
  float r;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
  return r;
}
// softplus with threshold 20 (log1p(e^x) = ln2·log2(1 + 2^(x·log2e))); SiLU via ex2 + rcp.
__device__ __forceinline__ float softplus_fast(float x) {
  return x > 20.f ? x : 0.6931471805599453f * lg2_approx(1.f + ex2_approx(x * kLog2e));
}
__device__ __forceinline__ float silu_fast(float x) {
  return x * rcp_approx(1.f + ex2_approx(-x * kLog2e));
}

// cp.async with a zero fill when !valid (src-size 0: nothing is read, the 16 bytes become 0).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async4(void* smem, const void* gmem, bool valid) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(s), "l"(gmem),
               "r"(valid ? 4 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

inline bool aligned16(const void* ptr, uint32_t stride) {
  return reinterpret_cast<uintptr_t>(ptr) % 16 == 0 && stride % 4 == 0;
}

// One level of the reduce-scatter of n = 2·OFF partial sums over lanes that differ in bit OFF:
// the lane with that bit set keeps the upper half. After the levels OFF = G/2 .. 1, lane g of a
// G-lane group holds the full sum of value g in yv[0].
template <int OFF, int N>
__device__ __forceinline__ void reduce_scatter(float (&yv)[N], int g) {
  const bool hi = g & OFF;
#pragma unroll
  for (int i = 0; i < OFF; ++i) {
    const float lo_v = yv[i], hi_v = yv[i + OFF];
    const float keep = hi ? hi_v : lo_v, send = hi ? lo_v : hi_v;
    yv[i] = keep + __shfl_xor_sync(kFull, send, OFF);
  }
  if constexpr (OFF > 1) reduce_scatter<OFF / 2>(yv, g);
}

}  // namespace dm::cuda::scan
