// rms_norm, optionally fused with the residual add: one block per row. The residual row is
// updated and its sum of squares taken in one pass (in double, as the CPU reference sums), the
// normalised row written in a second pass that re-reads the row from L1/L2.
#include "common.cuh"

namespace dm::cuda {
namespace {

constexpr int kBlock = 256;

__global__ void __launch_bounds__(kBlock) rms_norm_kernel(RmsNormParams p, const float* x,
                                                          float* residual, const void* weight,
                                                          float* y) {
  __shared__ double scratch[32];
  const size_t t = blockIdx.x;
  const float* xr = x + t * p.x_stride;
  float* rr = p.has_residual ? residual + t * p.residual_stride : nullptr;
  double ss = 0;
  for (uint32_t i = threadIdx.x; i < p.D; i += kBlock) {
    float v = xr[i];
    if (rr) {
      v = rr[i] + v;
      rr[i] = v;
    }
    ss += double(v) * double(v);
  }
  ss = block_sum(ss, scratch);
  const float var = p.D > 0 ? float(ss / double(p.D)) : 0.f;
  const float scale = 1.f / sqrtf(var + p.eps);
  // Same thread, same elements as the first pass: the updated residual is its own write.
  const float* src = rr ? rr : xr;
  float* yr = y + t * p.y_stride;
  for (uint32_t i = threadIdx.x; i < p.D; i += kBlock)
    yr[i] = (src[i] * scale) * load_f(weight, p.weight_dtype, i);
}

}  // namespace

cudaError_t launch_rms_norm(const RmsNormParams& p, const float* x, float* residual,
                            const void* weight, float* y, cudaStream_t s) {
  if (p.L == 0) return cudaSuccess;
  rms_norm_kernel<<<p.L, kBlock, 0, s>>>(p, x, residual, weight, y);
  return cudaGetLastError();
}

}  // namespace dm::cuda
