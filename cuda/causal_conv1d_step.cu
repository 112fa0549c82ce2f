// One decode token of the causal conv for each sequence of a batch: thread per (sequence,
// channel) shifts the channel's window (oldest first) and applies the taps, bias and SiLU.
#include "common.cuh"

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
  float* win = conv_state + i * d;
  float acc = p.has_bias ? load_f(bias, p.bias_dtype, c) : 0.f;
  const float xn = x[size_t(b) * p.x_stride + c];
  if (d == 4 && (reinterpret_cast<uintptr_t>(win) & 15) == 0) {  // all loads first, then the window
    const float4 wv = *reinterpret_cast<const float4*>(win);
    const float w0 = load_f(weight, p.weight_dtype, size_t(c) * 4),
                w1 = load_f(weight, p.weight_dtype, size_t(c) * 4 + 1),
                w2 = load_f(weight, p.weight_dtype, size_t(c) * 4 + 2),
                w3 = load_f(weight, p.weight_dtype, size_t(c) * 4 + 3);
    acc += w0 * wv.y;
    acc += w1 * wv.z;
    acc += w2 * wv.w;
    acc += w3 * xn;
    *reinterpret_cast<float4*>(win) = make_float4(wv.y, wv.z, wv.w, xn);
  } else {
    for (uint32_t k = 0; k + 1 < d; ++k) {
      const float v = win[k + 1];
      win[k] = v;
      acc += load_f(weight, p.weight_dtype, size_t(c) * d + k) * v;
    }
    win[d - 1] = xn;
    acc += load_f(weight, p.weight_dtype, size_t(c) * d + d - 1) * xn;
  }
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
