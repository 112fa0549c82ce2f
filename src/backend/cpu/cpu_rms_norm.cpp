// rms_norm, optionally fused with the residual add, as PyTorch computes it in fp32:
// r = residual + x; y = (r * rsqrt(mean(r²) + eps)) * weight. The mean of squares is summed in
// double so that the reference does not depend on a summation order.
#include <cmath>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "core/dtype.h"
#include "core/thread_pool.h"

namespace dm::cpu {

void rms_norm(const RmsNormParams& p, const float* x, float* residual, const void* weight,
              float* y) {
  const int64_t D = p.D;
  std::vector<float> w(static_cast<size_t>(D));
  for (int64_t i = 0; i < D; ++i) w[size_t(i)] = load_as_f32(weight, DType(p.weight_dtype), size_t(i));
  parallel_for(p.L, 16, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* xr = x + t * p.x_stride;
      float* yr = y + t * p.y_stride;
      const float* r = xr;
      if (p.has_residual) {
        float* rr = residual + t * p.residual_stride;
        for (int64_t i = 0; i < D; ++i) rr[i] += xr[i];
        r = rr;
      }
      double sum_sq = 0;
      for (int64_t i = 0; i < D; ++i) sum_sq += double(r[i]) * double(r[i]);
      const float var = D > 0 ? float(sum_sq / double(D)) : 0.f;
      const float scale = 1.f / std::sqrt(var + p.eps);
      for (int64_t i = 0; i < D; ++i) yr[i] = (r[i] * scale) * w[size_t(i)];
    }
  });
}

}  // namespace dm::cpu
