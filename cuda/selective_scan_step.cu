// One decode token of the selective scan for each sequence of a batch: thread per (sequence,
// channel), the channel's d_state entries advanced in place, exactly the CPU's scan_token();
// d_state 16 runs a lane per state (below).
#include "common.cuh"

namespace dm::cuda {
namespace {

constexpr int kBlock = 128;

__global__ void __launch_bounds__(kBlock) selective_scan_step_kernel(
    SelectiveScanStepParams p, const float* u, const float* delta, const void* A_log,
    const float* B, const float* C, const void* Dp, const float* z, const void* dt_bias,
    float* state, float* y) {
  const uint64_t i = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= uint64_t(p.batch) * p.channels) return;
  const uint32_t b = uint32_t(i / p.channels), c = uint32_t(i % p.channels), N = p.d_state;
  const float dt = softplus(delta[size_t(b) * p.delta_stride + c] + load_f(dt_bias, p.dt_bias_dtype, c));
  const float uv = u[size_t(b) * p.u_stride + c];
  const float du = dt * uv;
  const float* Br = B + size_t(b) * p.B_stride;
  const float* Cr = C + size_t(b) * p.C_stride;
  float* h = state + i * N;
  float acc = 0.f;
  for (uint32_t n = 0; n < N; ++n) {
    const float A = -expf(load_f(A_log, p.A_log_dtype, size_t(c) * N + n));
    const float hn = expf(dt * A) * h[n] + Br[n] * du;
    h[n] = hn;
    acc += hn * Cr[n];
  }
  acc += load_f(Dp, p.D_dtype, c) * uv;
  if (p.has_z) acc *= silu(z[size_t(b) * p.z_stride + c]);
  y[size_t(b) * p.y_stride + c] = acc;
}

// d_state 16: 16 lanes per (sequence, channel), one state each: every load independent (one
// memory latency instead of 16 dependent ones), y summed by shuffles. Same per-state formulas
// as above; only the order of the 16-term sum differs.
constexpr int kBlock16 = 256;
__global__ void __launch_bounds__(kBlock16) selective_scan_step_n16_kernel(
    SelectiveScanStepParams p, const float* __restrict__ u, const float* __restrict__ delta,
    const void* __restrict__ A_log, const float* __restrict__ B, const float* __restrict__ C,
    const void* __restrict__ Dp, const float* __restrict__ z, const void* __restrict__ dt_bias,
    float* __restrict__ state, float* __restrict__ y) {
  const uint64_t i = uint64_t(blockIdx.x) * kBlock16 + threadIdx.x;
  const uint64_t total = uint64_t(p.batch) * p.channels;
  const uint64_t bc = i >> 4;
  const uint32_t n = uint32_t(i & 15);
  const bool valid = bc < total;  // whole 16-lane groups are valid or not
  float acc = 0.f, uv = 0.f;
  uint32_t b = 0, c = 0;
  if (valid) {
    b = uint32_t(bc / p.channels), c = uint32_t(bc % p.channels);
    const float dt =
        softplus(delta[size_t(b) * p.delta_stride + c] + load_f(dt_bias, p.dt_bias_dtype, c));
    uv = u[size_t(b) * p.u_stride + c];
    const float du = dt * uv;
    const float A = -expf(load_f(A_log, p.A_log_dtype, size_t(c) * 16 + n));
    const float hn = expf(dt * A) * state[i] + B[size_t(b) * p.B_stride + n] * du;
    state[i] = hn;
    acc = hn * C[size_t(b) * p.C_stride + n];
  }
#pragma unroll
  for (int o = 8; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  if (valid && n == 0) {
    acc += load_f(Dp, p.D_dtype, c) * uv;
    if (p.has_z) acc *= silu(z[size_t(b) * p.z_stride + c]);
    y[size_t(b) * p.y_stride + c] = acc;
  }
}

}  // namespace

cudaError_t launch_selective_scan_step(const SelectiveScanStepParams& p, const float* u,
                                       const float* delta, const void* A_log, const float* B,
                                       const float* C, const void* D, const float* z,
                                       const void* dt_bias, float* ssm_state, float* y,
                                       cudaStream_t s) {
  const uint64_t n = uint64_t(p.batch) * p.channels;
  if (n == 0) return cudaSuccess;
  if (p.d_state == 16) {
    selective_scan_step_n16_kernel<<<ceil_div(n * 16, kBlock16), kBlock16, 0, s>>>(
        p, u, delta, A_log, B, C, D, z, dt_bias, ssm_state, y);
    return cudaGetLastError();
  }
  selective_scan_step_kernel<<<ceil_div(n, kBlock), kBlock, 0, s>>>(
      p, u, delta, A_log, B, C, D, z, dt_bias, ssm_state, y);
  return cudaGetLastError();
}

}  // namespace dm::cuda
