// The decode conv step of one channel, shared by causal_conv1d_step.cu and the fused
// in_proj + conv step of fused_step.cu.
#pragma once

#include "common.cuh"

namespace dm::cuda {

// Shifts channel c's window `win` (d floats of conv state, oldest first) left by one, appends
// xn, and returns bias + Σ taps · window (before SiLU). With d = 4 and a 16-byte aligned window,
// all loads come first, then one 16-byte store of the new window.
__device__ __forceinline__ float conv_step_window(float* win, const void* weight,
                                                  uint32_t weight_dtype, const void* bias,
                                                  uint32_t bias_dtype, bool has_bias, uint32_t c,
                                                  uint32_t d, float xn) {
  float acc = has_bias ? load_f(bias, bias_dtype, c) : 0.f;
  if (d == 4 && (reinterpret_cast<uintptr_t>(win) & 15) == 0) {
    const float4 wv = *reinterpret_cast<const float4*>(win);
    const float w0 = load_f(weight, weight_dtype, size_t(c) * 4),
                w1 = load_f(weight, weight_dtype, size_t(c) * 4 + 1),
                w2 = load_f(weight, weight_dtype, size_t(c) * 4 + 2),
                w3 = load_f(weight, weight_dtype, size_t(c) * 4 + 3);
    acc += w0 * wv.y;
    acc += w1 * wv.z;
    acc += w2 * wv.w;
    acc += w3 * xn;
    *reinterpret_cast<float4*>(win) = make_float4(wv.y, wv.z, wv.w, xn);
  } else {
    for (uint32_t k = 0; k + 1 < d; ++k) {
      const float v = win[k + 1];
      win[k] = v;
      acc += load_f(weight, weight_dtype, size_t(c) * d + k) * v;
    }
    win[d - 1] = xn;
    acc += load_f(weight, weight_dtype, size_t(c) * d + d - 1) * xn;
  }
  return acc;
}

}  // namespace dm::cuda
