// DeciMamba's token score ‖softplus(delta[t,:] + dt_bias)‖₂: one block per token, squares summed
// in double like the CPU reference, so that near-equal scores (whose order picks the surviving
// tokens) do not depend on the summation order.
#include "common.cuh"

namespace dm::cuda {
namespace {

constexpr int kBlock = 256;

__global__ void __launch_bounds__(kBlock) dt_importance_kernel(DtImportanceParams p,
                                                               const float* delta,
                                                               const void* dt_bias,
                                                               float* scores) {
  __shared__ double scratch[32];
  const size_t t = blockIdx.x;
  const float* dr = delta + t * p.delta_stride;
  double ss = 0;
  for (uint32_t c = threadIdx.x; c < p.channels; c += kBlock) {
    const double dt = softplus(dr[c] + load_f(dt_bias, p.dt_bias_dtype, c));
    ss += dt * dt;
  }
  ss = block_sum(ss, scratch);
  if (threadIdx.x == 0) scores[t] = float(sqrt(ss));
}

}  // namespace

cudaError_t launch_dt_importance(const DtImportanceParams& p, const float* delta,
                                 const void* dt_bias, float* scores, cudaStream_t s) {
  if (p.L == 0) return cudaSuccess;
  dt_importance_kernel<<<p.L, kBlock, 0, s>>>(p, delta, dt_bias, scores);
  return cudaGetLastError();
}

}  // namespace dm::cuda
