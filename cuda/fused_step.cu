// The decode fusions of Backend (backend.h, "Decode fusions"), one row (batch 1):
//
// norm_gemv: residual add + rms_norm + GEMV (+ the conv step of the first C outputs). The norm
//   of one D-row is cheap, so every block recomputes it into shared memory (the same per-thread
//   element split and double sum as rms_norm.cu, so the normed row is the same bits) and then
//   runs gemv_small_m's row loop on it. The updated residual must not be written while other
//   blocks may still read the old one: each block counts itself out on an atomic counter after
//   its last residual read, and the last block writes residual += x (and resets the counter).
//   An output column c < C is also the conv input of channel c, owned by the one thread that
//   wrote it, so that thread advances channel c's conv window (causal_conv1d_step.cu's formula).
// dt_scan_n16: dt_proj (an R-long dot per channel, split over the channel's 16 lanes) fused
//   into selective_scan_step's d_state-16 kernel (a lane per state).
//
// x_proj folded away (mamba_block_step's three-kernel form, kernels.h XProjPartials): norm_gemv's
//   group g of RB rows that holds conv channels also multiplies its RB new xc values by their
//   x_proj columns and stores the J = R + 2N partial sums part[g][j]; dt_scan_n16 then starts by
//   reducing them itself, every block redundantly, in a fixed order: the G groups split into
//   `cs` contiguous slices (cs the thread-block cluster size on sm_90, else 1), a slice's groups
//   summed in ascending steps of S = 256 / J (S sub-sums per output, added in order), the cs
//   slice sums added in rank order through distributed shared memory. The same bits on every
//   launch, eager or replayed. A separate x_proj GEMV kernel (its launch, ramp and tail) is gone;
//   what it costs instead is the partial stores and, per dt_scan block, G / cs · J loads. That
//   measured slower (130m: 433 against 356 µs a token, H100, session 9; not profiled: the
//   reduction's chain of round trips after the wait is the suspect), so it is opt-in
//   (cuda_fusions.cpp, DM_CUDA_DECODE_FORM=3).
//
// Both are launched with PDL (fused_step.cuh): weights are loaded before pdl_wait().
#include <cooperative_groups.h>

#include <cstdlib>
#include <cstring>

#include "causal_conv1d_step.cuh"
#include "fused_step.cuh"

namespace dm::cuda {

bool device_sm90_or_later() {
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) {
    cudaGetLastError();
    return false;
  }
  static int major[64] = {};  // 0: not asked yet; races only write the same value
  if (major[dev] == 0) {
    int m = 0;
    if (cudaDeviceGetAttribute(&m, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
      cudaGetLastError();
      m = 0;
    }
    major[dev] = m > 0 ? m : -1;
  }
  return major[dev] >= 9;
}

int sm_count() {
  int dev = 0, n = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
    cudaGetLastError();
    return 1;
  }
  return n > 0 ? n : 1;
}

bool pdl_enabled() {
  const char* e = std::getenv("DM_CUDA_PDL");
  if (e && std::strcmp(e, "0") == 0) return false;
  return device_sm90_or_later();
}

namespace {

constexpr int kBlock = 256;
constexpr int kWarps = kBlock / 32;
static_assert(kBlock >= kXProjMaxJ, "one thread per x_proj output");
// The most partials one dt_scan block of the three-kernel form reduces (G / cs · J floats, 16 KB):
// 130m's 48 · 80 = 3840 (H100: cs 8). Wider layers keep the x_proj GEMV.
constexpr uint32_t kXProjMaxSliceFloats = 4096;

// residual: 1×D; x: 1×D (absent when !p.norm.has_residual); normed: 1×D, written by block 0;
// w: N×K (K = D); y: 1×N. RB rows per block group, KS = 8 / RB warps per row; the grid strides
// over the groups. kEpi: 0 the GEMV alone, 1 with the conv step, 2 with the conv step and the
// x_proj partials (a template value of its own, so that 0 and 1 compile as without it).
template <typename WT, bool kVec, int RB, int kEpi, bool kL2, bool kNorm>
__global__ void __launch_bounds__(kBlock) norm_gemv_kernel(
    RmsNormGemmParams p, const float* __restrict__ x, float* residual, const void* norm_w,
    float* __restrict__ normed, const WT* __restrict__ w, const void* bias, float* __restrict__ y,
    const void* conv_w, const void* conv_b, float* conv_state, float* __restrict__ conv_y,
    unsigned* counter, XProjPartials xp) {
  constexpr int KS = kWarps / RB;
  constexpr bool kConv = kEpi >= 1, with_xp = kEpi == 2;
  extern __shared__ __align__(16) float xs[];  // the normed row
  __shared__ double red[32];
  __shared__ float part[kWarps];
  __shared__ unsigned last;
  // x_proj partials: the group's RB x_proj columns [RB][J] and new xc values.
  __shared__ float xpw[with_xp ? RB * kXProjMaxJ : 1];
  __shared__ float xcs[with_xp ? RB : 1];
  const uint32_t N = p.gemm.N, K = p.gemm.K, D = p.norm.D;
  const int wid = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int r = wid / KS, ks = wid % KS;
  const uint32_t n_groups = (N + RB - 1) / RB;
  constexpr uint32_t step = KS * 32 * 8;
  const uint32_t k0 = (ks * 32 + lane) * 8;
  const uint32_t C = p.conv.channels;
  // Group g's x_proj columns g·RB … into xpw (zeros past the conv channels), thread j row j.
  auto stage_xp = [&](uint32_t g) {
    if (threadIdx.x < xp.J && g * RB < C)
#pragma unroll
      for (int i = 0; i < RB; ++i)
        xpw[i * xp.J + threadIdx.x] =
            g * RB + i < C
                ? load_f(xp.w, xp.w_dtype, size_t(threadIdx.x) * xp.w_stride + g * RB + i)
                : 0.f;
  };
  if constexpr (with_xp) stage_xp(blockIdx.x);

  // Weights do not depend on earlier kernels: the first group's first chunks go out now.
  // kL2 (the default): the whole first group's weights are asked into L2 instead
  // (prefetch.global.L2: no registers held across the norm, 32 instead of ~62 registers, twice
  // the resident blocks). DM_CUDA_NORM_GEMV_PREFETCH=reg: the first chunks in registers.
  WChunk<WT> pre[kL2 ? 1 : kPrefetchChunks];
  if (kVec) {
    const uint32_t n = blockIdx.x * RB + r;
    const WT* wr = w + size_t(n < N ? n : 0) * p.gemm.w_stride;
    if (kL2) {
      if (n < N)
        for (uint32_t k = k0; k < K; k += step)
          asm volatile("prefetch.global.L2 [%0];" ::"l"(wr + k));
    } else {
#pragma unroll
      for (int j = 0; j < kPrefetchChunks; ++j)
        if (n < N && k0 + j * step < K) pre[j] = load_chunk<WT>(wr + k0 + j * step);
    }
  }
  pdl_wait();
  pdl_trigger();

  // residual (+ x), its mean square in double, then the normed row: rms_norm.cu's arithmetic.
  // !kNorm (prenormed): rms_norm ran before this kernel; the normed row is read as it is.
  const bool has_x = kNorm && p.norm.has_residual != 0;
  if constexpr (kNorm) {
    double ss = 0;
    for (uint32_t i = threadIdx.x; i < D; i += kBlock) {
      float v = has_x ? x[i] : residual[i];
      if (has_x) v = residual[i] + v;
      xs[i] = v;
      ss += double(v) * double(v);
    }
    const float scale = rms_scale(ss, red, D, p.norm.eps);
    for (uint32_t i = threadIdx.x; i < D; i += kBlock) {
      const float v = (xs[i] * scale) * load_f(norm_w, p.norm.weight_dtype, i);
      xs[i] = v;
      if (blockIdx.x == 0) normed[i] = v;
    }
  } else {
    for (uint32_t i = threadIdx.x; i < D; i += kBlock) xs[i] = normed[i];
  }
  __syncthreads();

  bool first = true;
  for (uint32_t g = blockIdx.x; g < n_groups; g += gridDim.x, first = false) {
    const uint32_t n = g * RB + r;
    if (with_xp && !first) stage_xp(g);  // the previous group's end barrier freed xpw
    float acc = 0.f;
    if (n < N) {
      const WT* wr = w + size_t(n) * p.gemm.w_stride;
      if (kVec) {
        uint32_t kb = k0;
        if (first && !kL2) {
#pragma unroll
          for (int j = 0; j < kPrefetchChunks; ++j) {
            const uint32_t k = k0 + j * step;
            if (k < K) {
              float wv[8];
              unpack_chunk<WT>(pre[kL2 ? 0 : j], wv);
              acc = dot8(wv, xs + k, acc);
            }
          }
          kb = k0 + kPrefetchChunks * step;
        }
#pragma unroll 4
        for (uint32_t k = kb; k < K; k += step) {
          float wv[8];
          unpack_chunk<WT>(load_chunk<WT>(wr + k), wv);
          acc = dot8(wv, xs + k, acc);
        }
      } else {
        for (uint32_t k = ks * 32 + lane; k < K; k += KS * 32)
          acc = fmaf(load_f(wr, p.gemm.w_dtype, k), xs[k], acc);
      }
    }
    acc = warp_sum(acc);
    if (lane == 0) part[wid] = acc;
    __syncthreads();
    if (int(threadIdx.x) < RB) {
      const uint32_t nn = g * RB + threadIdx.x;
      float xc = 0.f;
      if (nn < N) {
        float s = 0.f;
#pragma unroll
        for (int j = 0; j < KS; ++j) s += part[threadIdx.x * KS + j];
        s = s + (p.gemm.has_bias ? load_f(bias, p.gemm.bias_dtype, nn) : 0.f);
        y[nn] = s;
        if (kConv && nn < C) {  // causal_conv1d_step_kernel, batch 1
          xc = silu(conv_step_window(conv_state + size_t(nn) * p.conv.d_conv, conv_w,
                                     p.conv.weight_dtype, conv_b, p.conv.bias_dtype,
                                     p.conv.has_bias, nn, p.conv.d_conv, s));
          conv_y[nn] = xc;
        }
      }
      if constexpr (with_xp) xcs[threadIdx.x] = xc;
    }
    if (with_xp && g * RB < C) {  // part[g][j] = Σ_i x_proj[j, g·RB + i] · xc[g·RB + i], i ascending
      __syncthreads();
      if (threadIdx.x < xp.J) {
        float s = 0.f;
#pragma unroll
        for (int i = 0; i < RB; ++i) s = fmaf(xpw[i * xp.J + threadIdx.x], xcs[i], s);
        xp.part[size_t(g) * xp.J + threadIdx.x] = s;
      }
    }
    __syncthreads();  // part, xpw and xcs are reused by the next group
  }

  // residual += x, by the last block to finish reading the old residual.
  if (has_x) {
    __threadfence();
    if (threadIdx.x == 0) last = atomicAdd(counter, 1u) == gridDim.x - 1 ? 1u : 0u;
    __syncthreads();
    if (last) {
      for (uint32_t i = threadIdx.x; i < D; i += kBlock) residual[i] = residual[i] + x[i];
      if (threadIdx.x == 0) *counter = 0;
    }
  }
}

// x_dbl = dt_low | B | C from norm_gemv's x_proj partials (kernels.h XProjReduce), into `xd`
// (J floats of this block's shared memory), in the fixed order of this file's head comment.
// Every thread of every block of the cluster takes part; block 0 also writes x_dbl. On sm_90
// the caller must end with cluster_done(): the other blocks read this block's slice sums.
__device__ __forceinline__ void reduce_x_dbl(const XProjReduce& xr, float* xd, float* sub,
                                             float* tot) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const cooperative_groups::cluster_group cl = cooperative_groups::this_cluster();
  const uint32_t cs = cl.num_blocks(), rank = cl.block_rank();
#else
  const uint32_t cs = 1, rank = 0;
#endif
  const uint32_t J = xr.J, G = xr.G, S = kBlock / J, t = threadIdx.x;
  const uint32_t g_lo = uint32_t(uint64_t(G) * rank / cs);
  const uint32_t g_hi = uint32_t(uint64_t(G) * (rank + 1) / cs);
  if (t < S * J) {  // sub[s][j]: groups g_lo + s, g_lo + s + S, … of output j
    const uint32_t j = t % J;
    float a = 0.f;
#pragma unroll 4
    for (uint32_t g = g_lo + t / J; g < g_hi; g += S) a += xr.part[size_t(g) * J + j];
    sub[t] = a;
  }
  __syncthreads();
  if (t < J) {
    float a = 0.f;
    for (uint32_t s = 0; s < S; ++s) a += sub[s * J + t];
    tot[t] = a;
  }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  cl.sync();  // every slice sum of the cluster written
  if (t < J) {
    float a = 0.f;
    for (uint32_t q = 0; q < cs; ++q) a += *cl.map_shared_rank(tot + t, q);
    xd[t] = a;
  }
  cl.barrier_arrive();  // this block's remote reads are done (cluster_done waits for all)
#else
  if (t < J) xd[t] = 0.f + tot[t];
#endif
  if (blockIdx.x == 0 && t < J) xr.x_dbl[t] = xd[t];
  __syncthreads();
}

// The end of a block that ran reduce_x_dbl: no block leaves while another may still read its
// shared memory.
__device__ __forceinline__ void cluster_done() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  cooperative_groups::this_cluster().barrier_wait();
#endif
}

// dt_proj + selective_scan_step for d_state 16, batch 1: 16 lanes per channel. Lane n takes
// dt_proj[c, n + 16j]; the 16 partial dots meet in an xor butterfly (every lane gets the same
// sum), then selective_scan_step_n16_kernel's arithmetic. kXp: dt_low, B and C are not read
// from memory but reduced from x_proj partials first (reduce_x_dbl; the pointers are unused).
constexpr int kDtPre = 8;  // dt_proj weights per lane loaded before pdl_wait (R ≤ 128 entirely)
template <bool kXp>
__global__ void __launch_bounds__(kBlock) dt_scan_n16_kernel(
    DtProjScanStepParams p, const float* __restrict__ dt_low, const void* __restrict__ dt_proj,
    float* __restrict__ delta, const float* __restrict__ u, const void* __restrict__ A_log,
    const float* __restrict__ B, const float* __restrict__ C, const void* __restrict__ Dp,
    const float* __restrict__ z, const void* __restrict__ dt_bias, float* __restrict__ state,
    float* __restrict__ y, XProjReduce xr, ResidualNormTail tail) {
  __shared__ float xd[kXp ? kXProjMaxJ : 1], sub[kXp ? kBlock : 1], tot[kXp ? kXProjMaxJ : 1];
  const uint64_t i = uint64_t(blockIdx.x) * kBlock + threadIdx.x;
  const uint32_t c = uint32_t(i >> 4), n = uint32_t(i & 15);
  const bool valid = c < p.scan.channels;  // whole 16-lane groups
  const uint32_t R = p.dt.K, wd = p.dt.w_dtype;
  const size_t wrow = size_t(c) * p.dt.w_stride;
  float wpre[kDtPre];
  float A = 0.f, bias_c = 0.f, Dc = 0.f;
#pragma unroll
  for (int j = 0; j < kDtPre; ++j) {
    const uint32_t rr = n + 16 * j;
    wpre[j] = valid && rr < R ? load_f(dt_proj, wd, wrow + rr) : 0.f;
  }
  if (valid) {
    A = -expf(load_f(A_log, p.scan.A_log_dtype, size_t(c) * 16 + n));
    bias_c = load_f(dt_bias, p.scan.dt_bias_dtype, c);
    Dc = load_f(Dp, p.scan.D_dtype, c);
  }
  pdl_wait();
  pdl_trigger();
  if constexpr (kXp) {
    reduce_x_dbl(xr, xd, sub, tot);
    dt_low = xd, B = xd + R, C = xd + R + 16;
  }
  float dot = 0.f;
  if (valid) {
#pragma unroll
    for (int j = 0; j < kDtPre; ++j)
      if (n + 16 * j < R) dot = fmaf(wpre[j], dt_low[n + 16 * j], dot);
    for (uint32_t rr = n + 16 * kDtPre; rr < R; rr += 16)
      dot = fmaf(load_f(dt_proj, wd, wrow + rr), dt_low[rr], dot);
  }
#pragma unroll
  for (int o = 8; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
  float acc = 0.f, uv = 0.f;
  if (valid) {
    if (n == 0) delta[c] = dot;
    const float dt = softplus(dot + bias_c);
    uv = u[c];
    const float du = dt * uv;
    const float hn = expf(dt * A) * state[i] + B[n] * du;
    state[i] = hn;
    acc = hn * C[n];
  }
#pragma unroll
  for (int o = 8; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  if (valid && n == 0) {
    acc += Dc * uv;
    if (p.scan.has_z) acc *= silu(z[c]);
    y[c] = acc;
  }
  // The norm fold's side effects (gemv_rows.cu): its kernel has completed (pdl_wait above
  // waited for the x_proj GEMV, which waited for it), so the old residual is no longer read.
  if (i < tail.D) {
    const float h = tail.x ? tail.residual[i] + tail.x[i] : tail.residual[i];
    if (tail.x) tail.residual[i] = h;
    tail.normed[i] = (h * *tail.scale) * load_f(tail.norm_w, tail.norm_dtype, i);
  }
  if constexpr (kXp) cluster_done();
}

template <typename WT, bool kVec, int RB, int kEpi, bool kL2, bool kNorm>
cudaError_t launch_norm_gemv_rb(const RmsNormGemmParams& p, const float* x, float* residual,
                                const void* norm_w, float* normed, const void* w,
                                const void* bias, float* y, const void* conv_w,
                                const void* conv_b, float* conv_state, float* conv_y,
                                unsigned* counter, const XProjPartials& xp, cudaStream_t s) {
  auto kernel = norm_gemv_kernel<WT, kVec, RB, kEpi, kL2, kNorm>;
  const size_t smem = size_t(p.norm.D) * sizeof(float);
  // Resident blocks per SM, asked once per instantiation (the row width is the model's d_model).
  static const int per_sm = [&] {
    int b = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, kernel, kBlock, smem) != cudaSuccess) {
      cudaGetLastError();
      b = 1;
    }
    return b > 0 ? b : 1;
  }();
  static const int sms = sm_count();
  const uint32_t groups = (p.gemm.N + RB - 1) / RB;
  const uint32_t grid = groups < uint32_t(sms * per_sm) ? groups : uint32_t(sms * per_sm);
  return launch_pdl(kernel, dim3(grid), dim3(kBlock), smem, s, p, x, residual, norm_w, normed,
                    static_cast<const WT*>(w), bias, y, conv_w, conv_b, conv_state, conv_y,
                    counter, xp);
}

template <typename WT, bool kVec, int kEpi>
cudaError_t launch_norm_gemv_v(const RmsNormGemmParams& p, const float* x, float* residual,
                               const void* norm_w, float* normed, const void* w, const void* bias,
                               float* y, const void* conv_w, const void* conv_b, float* conv_state,
                               float* conv_y, unsigned* counter, bool prenormed,
                               const XProjPartials& xp, cudaStream_t s) {
  const char* pf = std::getenv("DM_CUDA_NORM_GEMV_PREFETCH");
  const bool l2 = !(pf && std::strcmp(pf, "reg") == 0);
  switch (norm_gemv_rows_per_group(p)) {
#define DM_NG(RB)                                                                           \
  case RB:                                                                                  \
    return prenormed ? launch_norm_gemv_rb<WT, kVec, RB, kEpi, true, false>(                \
                           p, x, residual, norm_w, normed, w, bias, y, conv_w, conv_b,        \
                           conv_state, conv_y, counter, xp, s)                                \
           : l2      ? launch_norm_gemv_rb<WT, kVec, RB, kEpi, true, true>(                 \
                      p, x, residual, norm_w, normed, w, bias, y, conv_w, conv_b, conv_state, \
                      conv_y, counter, xp, s)                                                 \
                     : launch_norm_gemv_rb<WT, kVec, RB, kEpi, false, true>(                \
                           p, x, residual, norm_w, normed, w, bias, y, conv_w, conv_b,        \
                           conv_state, conv_y, counter, xp, s);
    DM_NG(1)
    DM_NG(2)
    DM_NG(4)
    DM_NG(8)
#undef DM_NG
    default: return cudaErrorInvalidValue;
  }
}

template <typename WT>
cudaError_t launch_norm_gemv_t(const RmsNormGemmParams& p, const float* x, float* residual,
                               const void* norm_w, float* normed, const void* w, const void* bias,
                               float* y, const void* conv_w, const void* conv_b, float* conv_state,
                               float* conv_y, unsigned* counter, bool prenormed,
                               const XProjPartials& xp, cudaStream_t s) {
  const bool vec = p.gemm.K % 8 == 0 && aligned16(w) &&
                   (size_t(p.gemm.w_stride) * sizeof(WT)) % 16 == 0;
#define DM_NGV(VEC, EPI)                                                                      \
  return launch_norm_gemv_v<WT, VEC, EPI>(p, x, residual, norm_w, normed, w, bias, y, conv_w,   \
                                          conv_b, conv_state, conv_y, counter, prenormed, xp, s)
  if (p.has_conv && xp.J > 0) {
    if (vec) DM_NGV(true, 2);
    DM_NGV(false, 2);
  }
  if (p.has_conv) {
    if (vec) DM_NGV(true, 1);
    DM_NGV(false, 1);
  }
  if (vec) DM_NGV(true, 0);
  DM_NGV(false, 0);
#undef DM_NGV
}

}  // namespace

int norm_gemv_rows_per_group(const RmsNormGemmParams& p) {
  return 8 / gemv_k_split(p.gemm.N, p.gemm.K);  // gemv_small_m's K split (fused_step.cuh)
}

bool norm_gemv_supported(const RmsNormGemmParams& p) {
  return p.norm.L == 1 && p.gemm.M == 1 && p.norm.D >= 1 && p.norm.D <= kNormGemvMaxD &&
         (!p.has_conv || p.conv.batch == 1) && p.gemm.w_dtype <= 2;
}

cudaError_t launch_norm_gemv(const RmsNormGemmParams& p, const float* x, float* residual,
                             const void* norm_w, float* normed, const void* w, const void* bias,
                             float* y, const void* conv_w, const void* conv_b, float* conv_state,
                             float* conv_y, unsigned* counter, bool prenormed,
                             const XProjPartials& xp, cudaStream_t s) {
  if (!norm_gemv_supported(p) || (xp.J > 0 && (!p.has_conv || xp.J > kXProjMaxJ)))
    return cudaErrorInvalidValue;
  if (p.gemm.N == 0) return cudaSuccess;
  switch (p.gemm.w_dtype) {
    case 0: return launch_norm_gemv_t<float>(p, x, residual, norm_w, normed, w, bias, y, conv_w, conv_b, conv_state, conv_y, counter, prenormed, xp, s);
    case 1: return launch_norm_gemv_t<__half>(p, x, residual, norm_w, normed, w, bias, y, conv_w, conv_b, conv_state, conv_y, counter, prenormed, xp, s);
    case 2: return launch_norm_gemv_t<__nv_bfloat16>(p, x, residual, norm_w, normed, w, bias, y, conv_w, conv_b, conv_state, conv_y, counter, prenormed, xp, s);
    default: return cudaErrorInvalidValue;
  }
}

bool dt_scan_supported(const DtProjScanStepParams& p) {
  return p.scan.batch == 1 && p.scan.d_state == 16 && p.dt.M == 1;
}

cudaError_t launch_dt_scan(const DtProjScanStepParams& p, const float* dt_low, const void* dt_proj,
                           float* delta, const float* u, const void* A_log, const float* B,
                           const float* C, const void* D, const float* z, const void* dt_bias,
                           float* ssm_state, float* y, cudaStream_t s,
                           const ResidualNormTail& tail) {
  if (!dt_scan_supported(p)) return cudaErrorInvalidValue;
  const uint64_t n = uint64_t(p.scan.channels) * 16;
  if (n == 0) return cudaSuccess;
  if (tail.D > n) return cudaErrorInvalidValue;  // one thread per element of the tail
  return launch_pdl(dt_scan_n16_kernel<false>, dim3(ceil_div(n, kBlock)), dim3(kBlock), 0, s, p,
                    dt_low, dt_proj, delta, u, A_log, B, C, D, z, dt_bias, ssm_state, y,
                    XProjReduce{}, tail);
}

namespace {
// dt_scan_n16's grid for E channels, and the cluster size of the three-kernel form's
// reduction: the largest of 8, 4, 2 that divides the grid on sm_90 (8 is the portable maximum),
// else 1.
uint32_t dt_scan_blocks(uint32_t E) { return ceil_div(uint64_t(E) * 16, kBlock); }
uint32_t xproj_cluster(uint32_t blocks) {
  if (!device_sm90_or_later()) return 1;
  uint32_t cs = 8;
  while (cs > 1 && blocks % cs != 0) cs /= 2;
  return cs;
}
}  // namespace

XProjPlan xproj_fold_plan(const MambaBlockStepParams& p, size_t partial_bytes) {
  const RmsNormGemmParams& f = p.front;
  const GemmParams& xg = p.x_proj;
  XProjPlan plan;
  if (!norm_gemv_supported(f) || !f.has_conv || !dt_scan_supported(p.scan) || xg.M != 1 ||
      xg.has_bias || xg.w_dtype > 2 || xg.K != f.conv.channels || xg.N != p.scan.dt.K + 32 ||
      xg.N > kXProjMaxJ || p.scan.scan.channels == 0)
    return plan;
  const uint32_t G = ceil_div(f.conv.channels, norm_gemv_rows_per_group(f));
  const uint32_t cs = xproj_cluster(dt_scan_blocks(p.scan.scan.channels));
  if (size_t(G) * xg.N * sizeof(float) > partial_bytes ||
      size_t(ceil_div(G, cs)) * xg.N > kXProjMaxSliceFloats)
    return plan;
  plan.G = G, plan.J = xg.N, plan.cluster = cs;
  return plan;
}

cudaError_t launch_dt_scan_xp(const DtProjScanStepParams& p, const XProjPlan& plan,
                              const XProjReduce& xr, const void* dt_proj, float* delta,
                              const float* u, const void* A_log, const void* D, const float* z,
                              const void* dt_bias, float* ssm_state, float* y, cudaStream_t s) {
  if (!dt_scan_supported(p) || plan.G == 0 || xr.G != plan.G || xr.J != plan.J)
    return cudaErrorInvalidValue;
  const uint32_t blocks = dt_scan_blocks(p.scan.channels);
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(blocks);
  cfg.blockDim = dim3(kBlock);
  cfg.stream = s;
  cudaLaunchAttribute attr[2];
  unsigned na = 0;
  if (pdl_enabled()) {
    attr[na].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[na++].val.programmaticStreamSerializationAllowed = 1;
  }
  if (plan.cluster > 1) {
    attr[na].id = cudaLaunchAttributeClusterDimension;
    attr[na].val.clusterDim.x = plan.cluster;
    attr[na].val.clusterDim.y = 1;
    attr[na++].val.clusterDim.z = 1;
  }
  cfg.attrs = attr;
  cfg.numAttrs = na;
  const float* none = nullptr;  // dt_low, B, C: reduced from the partials
  return cudaLaunchKernelEx(&cfg, dt_scan_n16_kernel<true>, p, none, dt_proj, delta, u, A_log,
                            none, none, D, z, dt_bias, ssm_state, y, xr, ResidualNormTail{});
}

}  // namespace dm::cuda
