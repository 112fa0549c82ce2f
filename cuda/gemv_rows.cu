// Batch-1 GEMVs of a decode step, y = x · wᵀ (+ bias), with RW rows per warp, and the same
// GEMV as the decode front of a Mamba block with the norm folded in (NormFoldGemvArgs).
//
// Rows per warp. gemv_small_m (gemm.cu) gives each row its own warps: every warp loads the input
// row for its K slice, as many bytes of input (fp32) as of weights (fp16) per row, all of it
// through L1. Here each lane loads an input chunk once and multiplies it into RW rows' weight
// chunks: input traffic per weight byte falls by RW. Block: kWarps / KS row groups of RW rows;
// the KS warps of a group split K (gemv_small_m's interleaved 8-element chunks), and every row's
// sums run in gemv_small_m's order for the same KS (lane, warp butterfly, slices ascending).
//
// The norm fold (kNorm). normed = h ⊙ g · s with h = residual + x, g the norm weight and
// s = 1 / sqrt(mean(h²) + eps), so in_proj(normed)[n] = s · Σ_k w[n, k] · (g[k] · h[k]). Each lane
// reads residual, x and g where it read the input, accumulates Σ h² beside the dot, and the two
// sums meet in the block's one reduction: no norm kernel runs before the GEMV, no block waits for
// another. (A 2.8b layer's one-row rms_norm cost ~5.1 µs of a token on an H200, session 15
// call 3: nearly all launch and dependency.) Every row group sums h² over the same lane
// partition, so s has the same bits everywhere; block 0 stores it for the later kernel that
// finishes the norm's side effects (residual += x, the `normed` row: fused_step.cu's dt_scan
// tail), which cannot happen here while other blocks still read the old residual.
//
// The conv step (kConv: causal_conv1d_step's arithmetic, conv_step_window's order of sums) runs in
// the epilogue of the thread that stores column n < C; its taps and bias are loaded before
// pdl_wait() (weights), its window right after it, beside the row loads, so the epilogue waits on
// nothing (session 15's epilogue that loaded them after the reduction lost 85 µs a token at 2.8b).
//
// Values of the fold: the normed row is never rounded to fp32 before the dot, and Σ h² is fp32
// where rms_norm.cu sums in double, so xz differs from the composition's in the last bits
// (FusedStep.MambaBlockStep checks it against the CPU backend). No atomics, fixed orders: the
// same bits on every launch.
#include <cstdio>
#include <cstdlib>

#include "core/error.h"
#include "fused_step.cuh"

namespace dm::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int kWarps = kBlock / 32;

// Eight consecutive values of a 16-byte aligned vector of any float dtype (F32, F16, BF16).
__device__ __forceinline__ void load8_any(const void* p, uint32_t dtype, uint32_t k,
                                          float (&v)[8]) {
  if (dtype == 0) {
    const float4 a = __ldg(reinterpret_cast<const float4*>(static_cast<const float*>(p) + k));
    const float4 b = __ldg(reinterpret_cast<const float4*>(static_cast<const float*>(p) + k) + 1);
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
  } else if (dtype == 1) {
    unpack_chunk<__half>(load_chunk<__half>(static_cast<const __half*>(p) + k), v);
  } else {
    unpack_chunk<__nv_bfloat16>(
        load_chunk<__nv_bfloat16>(static_cast<const __nv_bfloat16*>(p) + k), v);
  }
}

__device__ __forceinline__ void load_f8(const float* p, float (&v)[8]) {
  const float4 a = *reinterpret_cast<const float4*>(p);
  const float4 b = *reinterpret_cast<const float4*>(p + 4);
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}

// The GEMV's input at k..k+7: x (plain: a.residual is the input row), or g · h with
// ss += Σ h² (kNorm). Plain loads: the rows were written by earlier kernels of this stream.
template <bool kNorm>
__device__ __forceinline__ void input8(const NormFoldGemvArgs& a, uint32_t k, float (&in)[8],
                                       float& ss) {
  load_f8(a.residual + k, in);
  if constexpr (kNorm) {
    if (a.x) {
      float x[8];
      load_f8(a.x + k, x);
#pragma unroll
      for (int j = 0; j < 8; ++j) in[j] += x[j];
    }
    float g[8];
    load8_any(a.norm_w, a.norm_dtype, k, g);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      ss = fmaf(in[j], in[j], ss);
      in[j] = g[j] * in[j];
    }
  }
}

// s + Σ_j w[j] · in[j], FMAs in order j = 0..7 (dot8's order).
__device__ __forceinline__ float dot8r(const float (&w)[8], const float (&in)[8], float s) {
#pragma unroll
  for (int j = 0; j < 8; ++j) s = fmaf(w[j], in[j], s);
  return s;
}

// One chunk k..k+7 of the input into the RW rows' sums (rows past N: !ok, skipped).
template <typename WT, int RW, bool kNorm>
__device__ __forceinline__ void rows_chunk(const NormFoldGemvArgs& a, uint32_t k,
                                           const WChunk<WT> (&c)[RW], const bool (&ok)[RW],
                                           float (&acc)[RW], float& ss) {
  float in[8];
  input8<kNorm>(a, k, in, ss);
#pragma unroll
  for (int i = 0; i < RW; ++i)
    if (ok[i]) {
      float wv[8];
      unpack_chunk<WT>(c[i], wv);
      acc[i] = dot8r(wv, in, acc[i]);
    }
}

// Chunks per row a lane loads before pdl_wait(): 16 registers of fp16 weights per row and chunk,
// at most 64 in all.
template <int RW>
struct PreChunks {
  static constexpr int value = RW == 1 ? 4 : RW == 2 ? 4 : 2;
};

template <typename WT, int KS, int RW, bool kNorm, bool kConv>
__global__ void __launch_bounds__(kBlock) gemv_rows_kernel(NormFoldGemvArgs a) {
  constexpr int RG = kWarps / KS;  // row groups
  constexpr int BR = RG * RW;      // rows per block
  constexpr int kPre = PreChunks<RW>::value;
  constexpr uint32_t step = KS * 32 * 8;
  __shared__ float part[kWarps][RW], sq[kWarps];
  const uint32_t N = a.N, K = a.K;
  const int wid = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int rg = wid / KS, ks = wid % KS;
  const uint32_t row0 = blockIdx.x * BR + rg * RW;
  const uint32_t k0 = (ks * 32 + lane) * 8;
  const WT* wr[RW];
  bool ok[RW];
#pragma unroll
  for (int i = 0; i < RW; ++i) {
    ok[i] = row0 + i < N;
    wr[i] = static_cast<const WT*>(a.w) + size_t(ok[i] ? row0 + i : 0) * a.w_stride;
  }

  // Weights first: they do not depend on earlier kernels.
  WChunk<WT> pre[kPre][RW];
#pragma unroll
  for (int j = 0; j < kPre; ++j)
#pragma unroll
    for (int i = 0; i < RW; ++i)
      if (ok[i] && k0 + j * step < K) pre[j][i] = load_chunk<WT>(wr[i] + k0 + j * step);
  // The storing thread's bias, conv taps and conv bias (d_conv 4).
  const uint32_t ne = blockIdx.x * BR + threadIdx.x;  // the column thread threadIdx.x < BR stores
  const bool stores = int(threadIdx.x) < BR && ne < N;
  const bool conv_here = kConv && stores && ne < a.conv_channels;
  float cw[4] = {0.f, 0.f, 0.f, 0.f}, cb = 0.f, bias_n = 0.f;
  if (conv_here) {
#pragma unroll
    for (int t = 0; t < 4; ++t) cw[t] = load_f(a.conv_w, a.conv_w_dtype, size_t(ne) * 4 + t);
    if (a.conv_has_bias) cb = load_f(a.conv_b, a.conv_b_dtype, ne);
  }
  if (stores && a.bias) bias_n = load_f(a.bias, a.bias_dtype, ne);
  pdl_wait();
  pdl_trigger();
  float4 win = make_float4(0.f, 0.f, 0.f, 0.f);
  if (conv_here) win = *reinterpret_cast<const float4*>(a.conv_state + size_t(ne) * 4);

  float acc[RW], ss = 0.f;
#pragma unroll
  for (int i = 0; i < RW; ++i) acc[i] = 0.f;
  if (ok[0]) {
#pragma unroll
    for (int j = 0; j < kPre; ++j) {
      const uint32_t k = k0 + j * step;
      if (k < K) rows_chunk<WT, RW, kNorm>(a, k, pre[j], ok, acc, ss);
    }
#pragma unroll 2
    for (uint32_t k = k0 + kPre * step; k < K; k += step) {
      WChunk<WT> c[RW];
#pragma unroll
      for (int i = 0; i < RW; ++i)
        if (ok[i]) c[i] = load_chunk<WT>(wr[i] + k);
      rows_chunk<WT, RW, kNorm>(a, k, c, ok, acc, ss);
    }
  }
#pragma unroll
  for (int i = 0; i < RW; ++i) acc[i] = warp_sum(acc[i]);
  if constexpr (kNorm) ss = warp_sum(ss);
  if (lane == 0) {
#pragma unroll
    for (int i = 0; i < RW; ++i) part[wid][i] = acc[i];
    sq[wid] = ss;
  }
  __syncthreads();
  if (!stores) return;
  const int g = threadIdx.x / RW, i = threadIdx.x % RW;
  float dot = 0.f, sum = 0.f;
#pragma unroll
  for (int j = 0; j < KS; ++j) {
    dot += part[g * KS + j][i];
    if constexpr (kNorm) sum += sq[g * KS + j];
  }
  float v = dot;
  if constexpr (kNorm) {
    const float s = 1.f / sqrtf(sum / float(a.D) + a.eps);
    v = dot * s;
    if (blockIdx.x == 0 && threadIdx.x == 0) *a.scale = s;
  }
  v = v + bias_n;
  a.y[ne] = v;
  if (conv_here) {  // conv_step_window's sums, in its order
    float c = cb;
    c += cw[0] * win.y;
    c += cw[1] * win.z;
    c += cw[2] * win.w;
    c += cw[3] * v;
    *reinterpret_cast<float4*>(a.conv_state + size_t(ne) * 4) = make_float4(win.y, win.z, win.w, v);
    a.conv_y[ne] = silu(c);
  }
}

template <typename WT, bool kNorm, bool kConv>
cudaError_t launch_shape(const NormFoldGemvArgs& a, GemvShape sh, cudaStream_t s) {
#define DM_ROWS(KS, RW)                                                                           \
  if (sh.ks == KS && sh.rw == RW)                                                                 \
    return launch_pdl(gemv_rows_kernel<WT, KS, RW, kNorm, kConv>,                                 \
                      dim3(ceil_div(a.N, uint32_t(kWarps / KS * RW))), dim3(kBlock), 0, s, a);
  DM_ROWS(2, 1) DM_ROWS(2, 2) DM_ROWS(2, 4)
  DM_ROWS(4, 1) DM_ROWS(4, 2) DM_ROWS(4, 4)
  DM_ROWS(8, 1) DM_ROWS(8, 2) DM_ROWS(8, 4)
#undef DM_ROWS
  return cudaErrorInvalidValue;
}

template <bool kNorm, bool kConv>
cudaError_t launch_typed(const NormFoldGemvArgs& a, cudaStream_t s) {
  const GemvShape sh = gemv_rows_shape(a.N);
  switch (a.w_dtype) {
    case 0: return launch_shape<float, kNorm, kConv>(a, sh, s);
    case 1: return launch_shape<__half, kNorm, kConv>(a, sh, s);
    default: return launch_shape<__nv_bfloat16, kNorm, kConv>(a, sh, s);
  }
}

// The kernel's 16-byte loads: K whole chunks of 8, w's rows and the input row 16-byte aligned.
bool rows_ok(uint32_t N, uint32_t K, const float* in, const void* w, uint32_t w_stride,
             uint32_t w_dtype) {
  const size_t wsize = w_dtype == 0 ? 4 : 2;
  return w_dtype <= 2 && K % 8 == 0 && N > 0 && aligned16(w) &&
         (size_t(w_stride) * wsize) % 16 == 0 && aligned16(in);
}

}  // namespace

GemvShape gemv_rows_shape(uint32_t N) {
  if (const char* e = std::getenv("DM_CUDA_GEMV_SHAPE"); e && *e) {  // "KSxRW", e.g. 4x2
    GemvShape f;
    if (std::sscanf(e, "%ux%u", &f.ks, &f.rw) != 2 || (f.ks != 2 && f.ks != 4 && f.ks != 8) ||
        (f.rw != 1 && f.rw != 2 && f.rw != 4))
      fail("[cuda] DM_CUDA_GEMV_SHAPE=", e, ": want KSxRW, KS 2, 4 or 8 and RW 1, 2 or 4 (e.g. 4x2)");
    return f;
  }
  // RW 4 for wide matrices, else 2 (more rows per warp leave too few blocks); then the fewest
  // warps per row (from 8) that still leave two blocks per SM. Measured on an H200 (bench_cuda
  // gemv, every shape side by side, bench/results/h200_session16_2026-11-28.md): the fastest
  // shape or within 2% of it for the decode GEMVs of 130m and 2.8b but 2.8b's in_proj (2x4
  // 15.2 µs, 8x4 14.2), where the decode runs the norm fold, whose fastest shape is 2x4. K does
  // not enter it: lanes whose chunks start past K idle (130m's in_proj at 4x4, K 768: a quarter
  // of them), and that was still its fastest shape.
  static const uint32_t sms = uint32_t(sm_count());
  GemvShape sh;
  sh.rw = N >= 2048 ? 4 : 2;
  sh.ks = 8;
  auto blocks = [&](uint32_t ks) { return ceil_div(N, kWarps / ks * sh.rw); };
  while (sh.ks > 2 && blocks(sh.ks / 2) >= 2 * sms) sh.ks /= 2;
  return sh;
}

bool gemv_rows_supported(uint32_t N, uint32_t K, const float* x, const void* w,
                         uint32_t w_stride, uint32_t w_dtype) {
  return rows_ok(N, K, x, w, w_stride, w_dtype);
}

cudaError_t launch_gemv_rows(uint32_t N, uint32_t K, const float* x, const void* w,
                             uint32_t w_stride, uint32_t w_dtype, const void* bias,
                             uint32_t bias_dtype, float* y, cudaStream_t s) {
  NormFoldGemvArgs a;
  a.N = N, a.K = K, a.D = K, a.residual = x, a.w = w, a.w_stride = w_stride, a.w_dtype = w_dtype;
  a.bias = bias, a.bias_dtype = bias_dtype, a.y = y;
  if (N == 0) return cudaSuccess;
  if (!rows_ok(N, K, x, w, w_stride, w_dtype) || !y) return cudaErrorInvalidValue;
  return launch_typed<false, false>(a, s);
}

bool norm_fold_gemv_supported(const NormFoldGemvArgs& a) {
  const bool conv_ok = a.conv_channels == 0 ||
                       (a.conv_channels <= a.N && a.conv_d == 4 && aligned16(a.conv_state) &&
                        a.conv_w && a.conv_y);
  return rows_ok(a.N, a.K, a.residual, a.w, a.w_stride, a.w_dtype) && a.y && a.norm_dtype <= 2 && a.K == a.D && (!a.x || aligned16(a.x)) &&
         aligned16(a.norm_w) && a.scale && conv_ok;
}

cudaError_t launch_norm_fold_gemv(const NormFoldGemvArgs& a, cudaStream_t s) {
  if (!norm_fold_gemv_supported(a)) return cudaErrorInvalidValue;
  return a.conv_channels > 0 ? launch_typed<true, true>(a, s) : launch_typed<true, false>(a, s);
}

}  // namespace dm::cuda
