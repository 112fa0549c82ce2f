// rms_norm, optionally fused with the residual add: one block per row. The residual row is
// updated and its sum of squares taken in one pass (in double, as the CPU reference sums), the
// normalised row written in a second pass.
//
// Decode (one row per layer, where the row's latency is the whole kernel): rows of up to
// kBlock·kPer elements (every published d_model) are held in registers, a thread issuing all its
// loads (x, residual, the norm weight) before it uses any, so a row costs one memory latency, not
// one per element (the loads of a loop that stores into the residual between them cannot be
// hoisted by the compiler); launched with PDL (fused_step.cuh), the norm weight loaded before
// pdl_wait(). Prompts (many rows) and longer rows take the loop.
#include "fused_step.cuh"

namespace dm::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int kPer = 16;  // elements per thread held in registers: rows up to 4096

template <bool kRegs>
__global__ void __launch_bounds__(kBlock) rms_norm_kernel(RmsNormParams p,
                                                          const float* x, float* residual,
                                                          const void* __restrict__ weight,
                                                          float* y, GemmSplitOut split) {
  __shared__ double scratch[32];
  const size_t t = blockIdx.x;
  const uint32_t D = p.D, tid = threadIdx.x;
  const float* xr = x + t * p.x_stride;
  float* rr = p.has_residual ? residual + t * p.residual_stride : nullptr;
  float* yr = y ? y + t * p.y_stride : nullptr;  // null: only the GEMM's operand is written
  if constexpr (kRegs) {
    // Element j of this thread is i = tid + j·kBlock, the same split as the loop below, so the
    // double sum adds the same values in the same order.
    float wv[kPer], v[kPer];
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const uint32_t i = tid + j * kBlock;
      wv[j] = i < D ? load_f(weight, p.weight_dtype, i) : 0.f;
    }
    pdl_wait();
    pdl_trigger();
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const uint32_t i = tid + j * kBlock;
      v[j] = i < D ? xr[i] : 0.f;
      if (rr && i < D) v[j] = rr[i] + v[j];
    }
    double ss = 0;
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const uint32_t i = tid + j * kBlock;
      if (i < D) {
        if (rr) rr[i] = v[j];
        ss += double(v[j]) * double(v[j]);
      }
    }
    const float scale = rms_scale(ss, scratch, D, p.eps);
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const uint32_t i = tid + j * kBlock;
      if (i < D) {
        const float o = (v[j] * scale) * wv[j];
        if (yr) yr[i] = o;
        if (split.hi) split_store(split, t, i, o);
      }
    }
  } else {
    pdl_wait();
    pdl_trigger();
    double ss = 0;
    for (uint32_t i = tid; i < D; i += kBlock) {
      float v = xr[i];
      if (rr) {
        v = rr[i] + v;
        rr[i] = v;
      }
      ss += double(v) * double(v);
    }
    const float scale = rms_scale(ss, scratch, D, p.eps);
    // Same thread, same elements as the first pass: the updated residual is its own write.
    const float* src = rr ? rr : xr;
    for (uint32_t i = tid; i < D; i += kBlock) {
      const float o = (src[i] * scale) * load_f(weight, p.weight_dtype, i);
      if (yr) yr[i] = o;
      if (split.hi) split_store(split, t, i, o);
    }
  }
}

}  // namespace

cudaError_t launch_rms_norm(const RmsNormParams& p, const float* x, float* residual,
                            const void* weight, float* y, cudaStream_t s,
                            const GemmSplitOut& split) {
  if (p.L == 0) return cudaSuccess;
  // Decode (a few rows): the register form, launched with PDL. A prompt (many rows per SM, whose
  // latencies overlap) keeps the loop and a plain launch: measured on an H100, the register form
  // there ran at 47–65% of the copy rate against the loop's 84–91% (L = 16K, d_model 768 / 2560).
  if (p.L <= 8 && p.D <= uint32_t(kBlock * kPer))
    return launch_pdl(rms_norm_kernel<true>, dim3(p.L), dim3(kBlock), 0, s, p, x, residual,
                      weight, y, split);
  rms_norm_kernel<false><<<p.L, kBlock, 0, s>>>(p, x, residual, weight, y, split);
  return cudaGetLastError();
}

}  // namespace dm::cuda
