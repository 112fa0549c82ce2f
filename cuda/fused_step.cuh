// Programmatic dependent launch (PDL, Hopper) for the decode kernels, and the 8-weight chunk
// loads their GEMVs share (gemm.cu's gemv_small_m, fused_step.cu).
//
// A kernel launched with launch_pdl() may start while the kernel before it on the stream is
// still running (once every block of that one has passed pdl_trigger()). Before pdl_wait() it may
// only read what no earlier kernel writes (weights); pdl_wait() returns once the previous grid
// has completed and its writes are visible. Every block of such a kernel executes pdl_wait()
// before it reads predecessor output and before it exits, so "completed" is transitive down the
// stream. The decode kernels call pdl_trigger() right after their wait: at most the next kernel
// starts early (its prefetch overlaps this kernel), never a chain of them.
//
// DM_CUDA_PDL=0 (read at each launch) or a device below compute capability 9.0: plain launches,
// and the griddepcontrol instructions are no-ops (no programmatic dependency to wait for).
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "common.cuh"

namespace dm::cuda {

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

// Whether launch_pdl sets the attribute: DM_CUDA_PDL is not "0" and the current device has
// compute capability ≥ 9.0 (fused_step.cu).
bool pdl_enabled();

template <typename... KArgs, typename... Args>
cudaError_t launch_pdl(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem,
                       cudaStream_t s, Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl_enabled() ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

// Eight consecutive weights of a row, raw (16 bytes of fp16 / bf16, 32 of fp32), so a load can
// be issued before pdl_wait() and converted after.
template <typename WT>
struct WChunk {
  uint4 q;
};
template <>
struct WChunk<float> {
  float4 a, b;
};

template <typename WT>
__device__ __forceinline__ WChunk<WT> load_chunk(const WT* p) {
  if constexpr (sizeof(WT) == 2) {
    return WChunk<WT>{__ldg(reinterpret_cast<const uint4*>(p))};
  } else {
    return WChunk<WT>{__ldg(reinterpret_cast<const float4*>(p)),
                      __ldg(reinterpret_cast<const float4*>(p) + 1)};
  }
}

__device__ __forceinline__ float wt_to_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ float wt_to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename WT>
__device__ __forceinline__ void unpack_chunk(const WChunk<WT>& c, float (&w)[8]) {
  if constexpr (sizeof(WT) == 2) {
    const WT* h = reinterpret_cast<const WT*>(&c.q);
#pragma unroll
    for (int j = 0; j < 8; ++j) w[j] = wt_to_f32(h[j]);
  } else {
    w[0] = c.a.x, w[1] = c.a.y, w[2] = c.a.z, w[3] = c.a.w;
    w[4] = c.b.x, w[5] = c.b.y, w[6] = c.b.z, w[7] = c.b.w;
  }
}

// s + Σ_j w[j] · x[k + j], x 16-byte aligned (global or shared), FMAs in order j = 0..7.
__device__ __forceinline__ float dot8(const float (&w)[8], const float* x, float s) {
  const float4 a = *reinterpret_cast<const float4*>(x);
  const float4 b = *reinterpret_cast<const float4*>(x + 4);
  s = fmaf(w[0], a.x, s), s = fmaf(w[1], a.y, s), s = fmaf(w[2], a.z, s);
  s = fmaf(w[3], a.w, s), s = fmaf(w[4], b.x, s), s = fmaf(w[5], b.y, s);
  s = fmaf(w[6], b.z, s), s = fmaf(w[7], b.w, s);
  return s;
}

// Chunks per lane a GEMV loads before pdl_wait().
constexpr int kPrefetchChunks = 4;

// How many warps of a GEMV block share one row (split K), for N rows of K weights: the larger of
//  - doubling while the grid is small (< 1056 blocks: 8 per SM of an H100) and each slice keeps
//    at least two 256-element steps (short, thin matrices: x_proj, 130m's out_proj), and
//  - doubling while each slice keeps at least 640 weights (long rows: 2.8b's in_proj and LM
//    head split 4 ways, out_proj 8: more, shorter warps, an even end of the grid).
// Measured on an H100 (bench_cuda gemv: a recorded chain of GEMVs, every split side by side,
// bench/results/h100_cuda_decode_session4_2026-11-27.md): the best or within 0.1 µs of it for
// every decode GEMV of the 130m and 2.8b shapes. DM_CUDA_GEMV_KS=1|2|4|8 forces a split.
inline int gemv_k_split(uint32_t N, uint32_t K) {
  int grid_rule = 1, long_rule = 1;
  while (grid_rule < 8 && K >= uint32_t(grid_rule) * 2 * 256 && ceil_div(N, 8 / grid_rule) < 1056)
    grid_rule *= 2;
  while (long_rule < 8 && K >= uint32_t(long_rule) * 2 * 640) long_rule *= 2;
  return grid_rule > long_rule ? grid_rule : long_rule;
}

}  // namespace dm::cuda
