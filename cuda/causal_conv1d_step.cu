// One decode token of the causal conv for each sequence of a batch: thread per (sequence,
// channel) shifts the channel's window (oldest first) and applies the taps, bias and SiLU.
#include "causal_conv1d_step.cuh"

namespace dm::cuda {
namespace {

constexpr int kBlock = 128;

__global__ void __launch_bounds__(kBlock) causal_conv1d_step_kernel(CausalConv1dStepParams p,
                                                                    const float* x,
                                                                    const void* weight,
                                                                    const void* bias,
                                                                    float* conv_state, float* y) {
  const uint64_t i = uint64_t(blockIdx.x) * kBlock + threadIdx.x;
  if (i >= uint64_t(p.batch) * p.channels) return;
  const uint32_t b = uint32_t(i / p.channels), c = uint32_t(i % p.channels), d = p.d_conv;
  const float xn = x[size_t(b) * p.x_stride + c];
  const float acc = conv_step_window(conv_state + i * d, weight, p.weight_dtype, bias,
                                     p.bias_dtype, p.has_bias, c, d, xn);
  y[size_t(b) * p.y_stride + c] = silu(acc);
}

}  // namespace

cudaError_t launch_causal_conv1d_step(const CausalConv1dStepParams& p, const float* x,
                                      const void* weight, const void* bias, float* conv_state,
                                      float* y, cudaStream_t s) {
  const uint64_t n = uint64_t(p.batch) * p.channels;
  if (n == 0) return cudaSuccess;
  causal_conv1d_step_kernel<<<ceil_div(n, kBlock), kBlock, 0, s>>>(p, x, weight, bias,
                                                                   conv_state, y);
  return cudaGetLastError();
}

}  // namespace dm::cuda
