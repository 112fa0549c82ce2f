// The GEMM's kernels. Large M runs in cuBLAS (src/backend/cuda/cuda_gemm.cpp); for it these
// split fp32 activations into two fp16 / bf16 parts (hi = round(x), lo = round(x - hi)) so the
// tensor cores see them without losing precision, and add the bias. Small M (decode) runs in
// gemv_small_m: memory-bound, it reads each weight once in its stored dtype and multiplies in fp32.
#include <cstdlib>

#include "common.cuh"
#include "fused_step.cuh"

namespace dm::cuda {
namespace {

constexpr int kBlock = 256;

template <typename T>
__device__ __forceinline__ float to_f32(T v);
template <>
__device__ __forceinline__ float to_f32<__half>(__half v) { return __half2float(v); }
template <>
__device__ __forceinline__ float to_f32<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

// x (M×K, row stride x_stride) -> the GEMM operand (hi, and lo unless null; M×K dense:
// split_store's values, common.cuh). Grid: (K tiles, M).
__global__ void __launch_bounds__(kBlock) convert_rows_kernel(uint32_t K, const float* x,
                                                              uint32_t x_stride, GemmSplitOut out) {
  const size_t m = blockIdx.y;
  const uint32_t k = blockIdx.x * kBlock + threadIdx.x;
  if (k < K) split_store(out, m, k, x[m * x_stride + k]);
}

// The same with four elements per thread (K % 4 == 0, 16-byte aligned rows): one 16-byte load
// and two 8-byte stores instead of four and eight (split_store4); a flat grid over the M·K/4
// pieces, so short rows (K = 768 at 130m) leave no thread idle. Same values.
__global__ void __launch_bounds__(kBlock) convert_rows_vec4_kernel(uint32_t M, uint32_t K,
                                                                   const float* __restrict__ x,
                                                                   uint32_t x_stride,
                                                                   GemmSplitOut out) {
  const uint32_t K4 = K / 4;
  const uint64_t i = uint64_t(blockIdx.x) * kBlock + threadIdx.x;
  if (i >= uint64_t(M) * K4) return;
  const uint64_t m = i / K4, k = (i % K4) * 4;
  split_store4(out, m, uint32_t(k), *reinterpret_cast<const float4*>(x + m * x_stride + k));
}

// y[m, n] = Σ_k x[m, k] · w[n, k] (+ bias[n]) for M ≤ kMaxM rows: one warp per n, each lane a
// strided run of k, 8 weights (16 or 32 bytes) per load when rows are aligned, fp32 FMAs, a
// warp reduction per m. x (a few rows) stays in L1/L2.
constexpr int kMaxM = 8;

template <typename WT>
__device__ __forceinline__ void load8(const WT* p, float (&w)[8]) {
  if constexpr (sizeof(WT) == 2) {
    const uint4 q = __ldg(reinterpret_cast<const uint4*>(p));
    const WT* h = reinterpret_cast<const WT*>(&q);
#pragma unroll
    for (int j = 0; j < 8; ++j) w[j] = to_f32<WT>(h[j]);
  } else {
    const float4 a = __ldg(reinterpret_cast<const float4*>(p));
    const float4 b = __ldg(reinterpret_cast<const float4*>(p) + 1);
    w[0] = a.x, w[1] = a.y, w[2] = a.z, w[3] = a.w, w[4] = b.x, w[5] = b.y, w[6] = b.z, w[7] = b.w;
  }
}
template <typename WT>
__device__ __forceinline__ float load1(const WT* p) {
  if constexpr (sizeof(WT) == 2) return to_f32<WT>(p[0]);
  else return __ldg(p);
}

// RB rows per block; the block's 8 warps split each row's K into KS = 8 / RB interleaved
// slices (split-K for thin matrices such as x_proj, so that enough loads are in flight), the
// slices summed through shared memory. Unrolled by 4: four 16-byte weight loads per lane in flight.
// MM: the most rows the instantiation takes (1 for decode: fewer registers, more blocks per SM).
// Launched with PDL (fused_step.cuh): the first kPrefetchChunks chunks of each lane's weights
// are loaded before pdl_wait(), x (the previous kernel's output) only after it.
template <typename WT, bool kVec, int RB, int MM>
__global__ void __launch_bounds__(kBlock) gemv_small_m_kernel(uint32_t M, uint32_t N, uint32_t K,
                                                              const float* x, uint32_t x_stride,
                                                              const WT* w, uint32_t w_stride,
                                                              const void* bias, uint32_t bias_dtype,
                                                              float* y, uint32_t y_stride) {
  constexpr int NW = kBlock / 32, KS = NW / RB;
  __shared__ float part[NW][MM];
  const int wid = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int r = wid / KS, ks = wid % KS;
  const uint32_t n = blockIdx.x * RB + r;
  float acc[MM];
#pragma unroll
  for (int m = 0; m < MM; ++m) acc[m] = 0.f;
  if (kVec) {
    constexpr uint32_t step = KS * 32 * 8;
    const uint32_t k0 = (ks * 32 + lane) * 8;
    const WT* wr = w + size_t(n < N ? n : 0) * w_stride;
    WChunk<WT> pre[kPrefetchChunks];
#pragma unroll
    for (int j = 0; j < kPrefetchChunks; ++j)
      if (n < N && k0 + j * step < K) pre[j] = load_chunk<WT>(wr + k0 + j * step);
    pdl_wait();
    pdl_trigger();
    if (n < N) {
#pragma unroll
      for (int j = 0; j < kPrefetchChunks; ++j) {
        const uint32_t k = k0 + j * step;
        if (k < K) {
          float wv[8];
          unpack_chunk<WT>(pre[j], wv);
#pragma unroll
          for (int m = 0; m < MM; ++m)
            if (m < int(M)) acc[m] = dot8(wv, x + size_t(m) * x_stride + k, acc[m]);
        }
      }
#pragma unroll 4
      for (uint32_t k = k0 + kPrefetchChunks * step; k < K; k += step) {
        float wv[8];
        load8<WT>(wr + k, wv);
#pragma unroll
        for (int m = 0; m < MM; ++m) {
          if (m < int(M)) {
            const float4 a = __ldg(reinterpret_cast<const float4*>(x + size_t(m) * x_stride + k));
            const float4 b = __ldg(reinterpret_cast<const float4*>(x + size_t(m) * x_stride + k) + 1);
            float s = acc[m];
            s = fmaf(wv[0], a.x, s), s = fmaf(wv[1], a.y, s), s = fmaf(wv[2], a.z, s);
            s = fmaf(wv[3], a.w, s), s = fmaf(wv[4], b.x, s), s = fmaf(wv[5], b.y, s);
            s = fmaf(wv[6], b.z, s), s = fmaf(wv[7], b.w, s);
            acc[m] = s;
          }
        }
      }
    }
  } else {
    pdl_wait();
    pdl_trigger();
    if (n < N) {
      const WT* wr = w + size_t(n) * w_stride;
      for (uint32_t k = ks * 32 + lane; k < K; k += KS * 32) {
        const float wv = load1<WT>(wr + k);
#pragma unroll
        for (int m = 0; m < MM; ++m)
          if (m < int(M)) acc[m] = fmaf(wv, __ldg(x + size_t(m) * x_stride + k), acc[m]);
      }
    }
  }
#pragma unroll
  for (int m = 0; m < MM; ++m) {
    if (m < int(M)) {
      const float s = warp_sum(acc[m]);
      if (lane == 0) part[wid][m] = s;
    }
  }
  __syncthreads();
  if (int(threadIdx.x) < RB * int(M)) {
    const int rr = threadIdx.x / M, m = threadIdx.x % M;
    const uint32_t nn = blockIdx.x * RB + rr;
    if (nn < N) {
      float s = 0.f;
#pragma unroll
      for (int j = 0; j < KS; ++j) s += part[rr * KS + j][m];
      y[size_t(m) * y_stride + nn] = s + (bias ? load_f(bias, bias_dtype, nn) : 0.f);
    }
  }
}

template <typename WT, bool kVec>
cudaError_t gemv_rb(uint32_t M, uint32_t N, uint32_t K, const float* x, uint32_t x_stride,
                    const WT* wp, uint32_t w_stride, const void* bias, uint32_t bias_dtype,
                    float* y, uint32_t y_stride, cudaStream_t s) {
  // K split: gemv_k_split (fused_step.cuh); DM_CUDA_GEMV_KS, read per launch so that a
  // benchmark can flip it, forces one.
  const char* e = std::getenv("DM_CUDA_GEMV_KS");
  const int forced = e ? std::atoi(e) : 0;
  const int ks = forced == 1 || forced == 2 || forced == 4 || forced == 8 ? forced
                                                                          : gemv_k_split(N, K);
  const int rb = 8 / ks;
  const unsigned blocks = ceil_div(N, rb);
#define DM_GEMV(RB)                                                                            \
  case RB:                                                                                     \
    return M == 1 ? launch_pdl(gemv_small_m_kernel<WT, kVec, RB, 1>, dim3(blocks), dim3(kBlock), \
                               0, s, M, N, K, x, x_stride, wp, w_stride, bias, bias_dtype, y,   \
                               y_stride)                                                       \
                  : launch_pdl(gemv_small_m_kernel<WT, kVec, RB, kMaxM>, dim3(blocks),          \
                               dim3(kBlock), 0, s, M, N, K, x, x_stride, wp, w_stride, bias,     \
                               bias_dtype, y, y_stride);
  switch (rb) {
    DM_GEMV(1)
    DM_GEMV(2)
    DM_GEMV(4)
    DM_GEMV(8)
    default: break;
  }
#undef DM_GEMV
  return cudaGetLastError();
}

template <typename WT>
cudaError_t gemv_typed(uint32_t M, uint32_t N, uint32_t K, const float* x, uint32_t x_stride,
                       const void* w, uint32_t w_stride, const void* bias, uint32_t bias_dtype,
                       float* y, uint32_t y_stride, cudaStream_t s) {
  const bool vec = K % 8 == 0 && aligned16(w) && (size_t(w_stride) * sizeof(WT)) % 16 == 0 &&
                   aligned16(x) && x_stride % 4 == 0;
  const WT* wp = static_cast<const WT*>(w);
  if (vec)
    return gemv_rb<WT, true>(M, N, K, x, x_stride, wp, w_stride, bias, bias_dtype, y, y_stride, s);
  return gemv_rb<WT, false>(M, N, K, x, x_stride, wp, w_stride, bias, bias_dtype, y, y_stride, s);
}

__global__ void __launch_bounds__(kBlock) add_bias_kernel(uint32_t N, float* y, uint32_t y_stride,
                                                          const void* bias, uint32_t bias_dtype) {
  const size_t m = blockIdx.y;
  const uint32_t n = blockIdx.x * kBlock + threadIdx.x;
  if (n < N) y[m * y_stride + n] += load_f(bias, bias_dtype, n);
}

}  // namespace

cudaError_t launch_convert_rows(uint32_t M, uint32_t K, const float* x, uint32_t x_stride,
                                const GemmSplitOut& out, cudaStream_t s) {
  if (M == 0 || K == 0) return cudaSuccess;
  if (out.cols != K || out.stride < K) return cudaErrorInvalidValue;
  // 8-byte operand stores, 16-byte x loads.
  const uintptr_t a = reinterpret_cast<uintptr_t>(out.hi) |
                      (out.lo ? reinterpret_cast<uintptr_t>(out.lo) : 0);
  if (K % 4 == 0 && x_stride % 4 == 0 && out.stride % 4 == 0 && a % 8 == 0 &&
      reinterpret_cast<uintptr_t>(x) % 16 == 0 && uint64_t(M) * K / 4 / kBlock < (1u << 31)) {
    const unsigned blocks = ceil_div(uint64_t(M) * (K / 4), kBlock);
    convert_rows_vec4_kernel<<<blocks, kBlock, 0, s>>>(M, K, x, x_stride, out);
    return cudaGetLastError();
  }
  // Rows in grid.y (at most 65535 per launch): long prompts go in slices.
  for (uint32_t m0 = 0; m0 < M; m0 += 65535u) {
    const uint32_t rows = M - m0 < 65535u ? M - m0 : 65535u;
    GemmSplitOut o = out;
    o.hi = static_cast<uint16_t*>(out.hi) + size_t(m0) * out.stride;
    o.lo = out.lo ? static_cast<uint16_t*>(out.lo) + size_t(m0) * out.stride : nullptr;
    convert_rows_kernel<<<dim3(ceil_div(K, kBlock), rows), kBlock, 0, s>>>(
        K, x + size_t(m0) * x_stride, x_stride, o);
  }
  return cudaGetLastError();
}

cudaError_t launch_gemv_small_m(uint32_t M, uint32_t N, uint32_t K, const float* x,
                                uint32_t x_stride, const void* w, uint32_t w_stride,
                                uint32_t w_dtype, const void* bias, uint32_t bias_dtype, float* y,
                                uint32_t y_stride, cudaStream_t s) {
  if (M == 0 || N == 0) return cudaSuccess;
  if (M > uint32_t(kMaxM)) return cudaErrorInvalidValue;
  switch (w_dtype) {
    case 0: return gemv_typed<float>(M, N, K, x, x_stride, w, w_stride, bias, bias_dtype, y, y_stride, s);
    case 1: return gemv_typed<__half>(M, N, K, x, x_stride, w, w_stride, bias, bias_dtype, y, y_stride, s);
    case 2: return gemv_typed<__nv_bfloat16>(M, N, K, x, x_stride, w, w_stride, bias, bias_dtype, y, y_stride, s);
    default: return cudaErrorInvalidValue;
  }
}

cudaError_t launch_add_bias(uint32_t M, uint32_t N, float* y, uint32_t y_stride, const void* bias,
                            uint32_t bias_dtype, cudaStream_t s) {
  if (M == 0 || N == 0) return cudaSuccess;
  for (uint32_t m0 = 0; m0 < M; m0 += 65535u) {
    const uint32_t rows = M - m0 < 65535u ? M - m0 : 65535u;
    add_bias_kernel<<<dim3(ceil_div(N, kBlock), rows), kBlock, 0, s>>>(
        N, y + size_t(m0) * y_stride, y_stride, bias, bias_dtype);
  }
  return cudaGetLastError();
}

// Any kernel will do: it fails to launch-configure when the binary has no code for the device.
cudaError_t check_kernel_image() {
  cudaFuncAttributes attr;
  return cudaFuncGetAttributes(&attr, add_bias_kernel);
}

}  // namespace dm::cuda
