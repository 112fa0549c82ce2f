// Depthwise causal conv1d + bias + SiLU, prefill and one-token step. The conv state holds each
// channel's last d_conv inputs, oldest first; the prefill's input per channel is
// xin = [state[1 .. d_conv-1], x[0 .. L-1]]. Both kernels evaluate a token through conv_row()
// (bias, then the taps in order, then SiLU in the backend's instruction set), so a prefill of L
// tokens and L steps give bit-identical outputs and state.
#include <algorithm>
#include <vector>

#include "backend/cpu/cpu_activation.h"
#include "backend/cpu/cpu_kernels.h"
#include "core/dtype.h"
#include "core/thread_pool.h"

namespace dm::cpu {
namespace {

// Tap-major fp32 weights wt[k·C + c] and the bias (zeros without one).
void load_weights(const void* weight, uint32_t w_dtype, const void* bias, uint32_t b_dtype,
                  bool has_bias, int64_t C, int64_t d, std::vector<float>& wt, std::vector<float>& b) {
  wt.resize(size_t(d * C));
  b.assign(size_t(C), 0.f);
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t k = 0; k < d; ++k)
      wt[size_t(k * C + c)] = load_as_f32(weight, DType(w_dtype), size_t(c * d + k));
    if (has_bias) b[size_t(c)] = load_as_f32(bias, DType(b_dtype), size_t(c));
  }
}

// One token for channels [0, n): y[c] = SiLU(b[c] + Σ_k wt[k·C + c] · tap[k][c]).
void conv_row(int64_t n, int64_t C, int64_t d, const float* wt, const float* const* tap,
              const float* b, float* y, CpuIsa isa) {
  for (int64_t c = 0; c < n; ++c) y[c] = b[c];
  for (int64_t k = 0; k < d; ++k) {
    const float* w = wt + k * C;
    const float* x = tap[k];
    for (int64_t c = 0; c < n; ++c) y[c] += w[c] * x[c];
  }
  silu_inplace(y, n, isa);
}

}  // namespace

void causal_conv1d(const CausalConv1dParams& p, const float* x, const void* weight,
                   const void* bias, float* conv_state, float* y, CpuIsa isa) {
  const int64_t d = p.d_conv, L = p.L, C = p.channels;
  std::vector<float> wt, b;
  load_weights(weight, p.weight_dtype, bias, p.bias_dtype, p.has_bias, C, d, wt, b);
  // xin's first d-1 rows come from the state (tap-major copy); row i >= d-1 is x row i-(d-1).
  std::vector<float> head(size_t(std::max<int64_t>(d - 1, 0) * C));
  for (int64_t c = 0; c < C; ++c)
    for (int64_t k = 0; k + 1 < d; ++k) head[size_t(k * C + c)] = conv_state[c * d + k + 1];
  auto xin = [&](int64_t i) { return i < d - 1 ? &head[size_t(i * C)] : x + (i - (d - 1)) * p.x_stride; };
  // Parallel over tokens: each reads d whole rows of x and writes one row of y, streaming.
  parallel_for(L, 16, [&](int64_t t0, int64_t t1) {
    std::vector<const float*> tap(static_cast<size_t>(d));
    for (int64_t t = t0; t < t1; ++t) {
      for (int64_t k = 0; k < d; ++k) tap[size_t(k)] = xin(t + k);
      conv_row(C, C, d, wt.data(), tap.data(), b.data(), y + t * p.y_stride, isa);
    }
  });
  // The new state: the last d entries of xin. With L >= 1 the oldest is xin[L-1] >= the head.
  if (L == 0) return;
  for (int64_t k = 0; k < d; ++k) {
    const float* row = xin(L - 1 + k);
    for (int64_t c = 0; c < C; ++c) conv_state[c * d + k] = row[c];
  }
}

void causal_conv1d_step(const CausalConv1dStepParams& p, const float* x, const void* weight,
                        const void* bias, float* conv_state, float* y, CpuIsa isa) {
  const int64_t d = p.d_conv, C = p.channels;
  std::vector<float> wt, b;
  load_weights(weight, p.weight_dtype, bias, p.bias_dtype, p.has_bias, C, d, wt, b);
  parallel_for(p.batch, 1, [&](int64_t b0, int64_t b1) {
    std::vector<float> taps(static_cast<size_t>(d * C));
    std::vector<const float*> tap(static_cast<size_t>(d));
    for (int64_t s = b0; s < b1; ++s) {
      float* state = conv_state + s * C * d;
      const float* xs = x + s * p.x_stride;
      // Shift the new input in, then lay the window out tap-major for conv_row.
      for (int64_t c = 0; c < C; ++c) {
        float* win = state + c * d;
        for (int64_t k = 0; k + 1 < d; ++k) win[k] = win[k + 1];
        win[d - 1] = xs[c];
        for (int64_t k = 0; k < d; ++k) taps[size_t(k * C + c)] = win[k];
      }
      for (int64_t k = 0; k < d; ++k) tap[size_t(k)] = &taps[size_t(k * C)];
      conv_row(C, C, d, wt.data(), tap.data(), b.data(), y + s * p.y_stride, isa);
    }
  });
}

}  // namespace dm::cpu
