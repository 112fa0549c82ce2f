// The Mamba-1 selective scan, sequential over time, fp32 throughout (as mamba_ssm's kernel):
//   Δ = softplus(delta + dt_bias); h = exp(Δ·A)·h + B·(Δ·u); y = C·h + D·u; y *= SiLU(z).
// Two paths, picked by the backend's instruction set: plain per-channel loops (generic), and 8
// channels per AVX2 instruction (cpu_selective_scan_avx2.cpp). Within a path, prefill and step
// run the same per-token code, so L steps equal one prefill bit for bit.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/cpu_math.h"
#include "backend/cpu/cpu_scan_lanes.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/thread_pool.h"

namespace dm::cpu {
namespace {

// Per-channel constants in fp32: A = -exp(A_log) (channels × N), D, dt_bias.
struct ScanConsts {
  std::vector<float> A, D, dt_bias;
};

ScanConsts load_consts(int64_t c0, int64_t c1, int64_t N, const void* A_log, uint32_t A_dtype,
                       const void* D, uint32_t D_dtype, const void* dt_bias, uint32_t dtb_dtype) {
  ScanConsts k;
  k.A.resize(size_t((c1 - c0) * N));
  k.D.resize(size_t(c1 - c0));
  k.dt_bias.resize(size_t(c1 - c0));
  for (int64_t c = c0; c < c1; ++c) {
    for (int64_t n = 0; n < N; ++n)
      k.A[size_t((c - c0) * N + n)] = -std::exp(load_as_f32(A_log, DType(A_dtype), size_t(c * N + n)));
    k.D[size_t(c - c0)] = load_as_f32(D, DType(D_dtype), size_t(c));
    k.dt_bias[size_t(c - c0)] = load_as_f32(dt_bias, DType(dtb_dtype), size_t(c));
  }
  return k;
}

// One token of one channel: advances h[0..N) and returns the gated output.
inline float scan_token(int64_t N, const float* A, float* h, float delta, float dt_bias, float u,
                        const float* B, const float* C, float D, const float* z) {
  const float dt = softplus(delta + dt_bias);
  const float du = dt * u;
  float y = 0.f;
  for (int64_t n = 0; n < N; ++n) {
    h[n] = std::exp(dt * A[n]) * h[n] + B[n] * du;
    y += h[n] * C[n];
  }
  y += D * u;
  if (z) y *= silu(*z);
  return y;
}

// The constants of every group of 8 channels, lane-minor and zero-padded: A[g][n][l], D[g][l],
// dt_bias[g][l]. A padded lane has u = 0, so its state stays 0 and its output is never stored.
struct LaneConsts {
  int64_t groups = 0;
  std::vector<float> A, D, dt_bias;
};

LaneConsts lane_consts(int64_t Ch, int64_t N, const void* A_log, uint32_t A_dtype, const void* D,
                       uint32_t D_dtype, const void* dt_bias, uint32_t dtb_dtype) {
  using scan_detail::kLanes;
  LaneConsts k;
  k.groups = (Ch + kLanes - 1) / kLanes;
  k.A.assign(size_t(k.groups * N * kLanes), 0.f);
  k.D.assign(size_t(k.groups * kLanes), 0.f);
  k.dt_bias.assign(size_t(k.groups * kLanes), 0.f);
  for (int64_t c = 0; c < Ch; ++c) {
    const int64_t g = c / kLanes, l = c % kLanes;
    for (int64_t n = 0; n < N; ++n)
      k.A[size_t((g * N + n) * kLanes + l)] =
          -std::exp(load_as_f32(A_log, DType(A_dtype), size_t(c * N + n)));
    k.D[size_t(g * kLanes + l)] = load_as_f32(D, DType(D_dtype), size_t(c));
    k.dt_bias[size_t(g * kLanes + l)] = load_as_f32(dt_bias, DType(dtb_dtype), size_t(c));
  }
  return k;
}

// Runs group g of one sequence: `a` has the token pointers already offset to channel g·8;
// `state` points at that sequence's state row of channel 0 (rows of N floats).
void run_group(scan_detail::ScanLanesFn fn, const LaneConsts& k, int64_t g, int64_t Ch, int64_t N,
               float* state, scan_detail::ScanLanes a, std::vector<float>& h) {
  using scan_detail::kLanes;
  const int64_t c0 = g * kLanes;
  a.lanes = int(std::min<int64_t>(kLanes, Ch - c0));
  h.assign(size_t(N * kLanes), 0.f);
  for (int l = 0; l < a.lanes; ++l)
    for (int64_t n = 0; n < N; ++n) h[size_t(n * kLanes + l)] = state[(c0 + l) * N + n];
  a.N = N;
  a.A = &k.A[size_t(g * N * kLanes)];
  a.D = &k.D[size_t(g * kLanes)];
  a.dt_bias = &k.dt_bias[size_t(g * kLanes)];
  a.h = h.data();
  fn(a);
  for (int l = 0; l < a.lanes; ++l)
    for (int64_t n = 0; n < N; ++n) state[(c0 + l) * N + n] = h[size_t(n * kLanes + l)];
}

scan_detail::ScanLanesFn lanes_fn(CpuIsa isa) {
  if (isa != CpuIsa::avx2) return nullptr;
  scan_detail::ScanLanesFn fn = scan_detail::scan_lanes_avx2();
  DM_ASSERT(fn, "the avx2 scan is not compiled into this build");
  return fn;
}

}  // namespace

void selective_scan(const SelectiveScanParams& p, const float* u, const float* delta,
                    const void* A_log, const float* B, const float* C, const void* D,
                    const float* z, const void* dt_bias, float* ssm_state, float* y, CpuIsa isa) {
  const int64_t N = p.d_state;
  if (scan_detail::ScanLanesFn fn = lanes_fn(isa)) {
    const LaneConsts k = lane_consts(p.channels, N, A_log, p.A_log_dtype, D, p.D_dtype, dt_bias,
                                     p.dt_bias_dtype);
    parallel_for(k.groups, 1, [&](int64_t g0, int64_t g1) {
      std::vector<float> h;
      for (int64_t g = g0; g < g1; ++g) {
        const int64_t c0 = g * scan_detail::kLanes;
        scan_detail::ScanLanes a;
        a.T = p.L;
        a.u = u + c0, a.u_stride = p.u_stride;
        a.delta = delta + c0, a.delta_stride = p.delta_stride;
        a.z = z ? z + c0 : nullptr, a.z_stride = p.z_stride;
        a.B = B, a.B_stride = p.B_stride;
        a.C = C, a.C_stride = p.C_stride;
        a.y = y + c0, a.y_stride = p.y_stride;
        run_group(fn, k, g, p.channels, N, ssm_state, a, h);
      }
    });
    return;
  }
  // Blocks of 16 channels: a token's u, delta, z and y of a block share one cache line, and the
  // block's state (16 × N floats) stays in L1 for the whole sequence.
  constexpr int64_t kBlock = 16;
  const int64_t blocks = (int64_t(p.channels) + kBlock - 1) / kBlock;
  parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t c0 = blk * kBlock, c1 = std::min<int64_t>(c0 + kBlock, p.channels);
      const ScanConsts k = load_consts(c0, c1, N, A_log, p.A_log_dtype, D, p.D_dtype, dt_bias,
                                       p.dt_bias_dtype);
      float* h = ssm_state + c0 * N;  // rows c0..c1 of the state, advanced in place
      for (int64_t t = 0; t < p.L; ++t) {
        const float* ur = u + t * p.u_stride;
        const float* dr = delta + t * p.delta_stride;
        const float* Br = B + t * p.B_stride;
        const float* Cr = C + t * p.C_stride;
        const float* zr = z ? z + t * p.z_stride : nullptr;
        float* yr = y + t * p.y_stride;
        for (int64_t c = c0; c < c1; ++c) {
          const size_t j = size_t(c - c0);
          yr[c] = scan_token(N, &k.A[j * size_t(N)], h + (c - c0) * N, dr[c], k.dt_bias[j], ur[c],
                             Br, Cr, k.D[j], zr ? zr + c : nullptr);
        }
      }
    }
  });
}

void selective_scan_step(const SelectiveScanStepParams& p, const float* u, const float* delta,
                         const void* A_log, const float* B, const float* C, const void* D,
                         const float* z, const void* dt_bias, float* ssm_state, float* y,
                         CpuIsa isa) {
  const int64_t N = p.d_state, Ch = p.channels;
  if (scan_detail::ScanLanesFn fn = lanes_fn(isa)) {
    const LaneConsts k = lane_consts(Ch, N, A_log, p.A_log_dtype, D, p.D_dtype, dt_bias,
                                     p.dt_bias_dtype);
    parallel_for(int64_t(p.batch) * k.groups, 16, [&](int64_t i0, int64_t i1) {
      std::vector<float> h;
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t b = i / k.groups, g = i % k.groups, c0 = g * scan_detail::kLanes;
        scan_detail::ScanLanes a;
        a.T = 1;
        a.u = u + b * p.u_stride + c0;
        a.delta = delta + b * p.delta_stride + c0;
        a.z = z ? z + b * p.z_stride + c0 : nullptr;
        a.B = B + b * p.B_stride;
        a.C = C + b * p.C_stride;
        a.y = y + b * p.y_stride + c0;
        run_group(fn, k, g, Ch, N, ssm_state + b * Ch * N, a, h);
      }
    });
    return;
  }
  const ScanConsts k =
      load_consts(0, Ch, N, A_log, p.A_log_dtype, D, p.D_dtype, dt_bias, p.dt_bias_dtype);
  parallel_for(int64_t(p.batch) * Ch, 64, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t b = i / Ch, c = i % Ch;
      y[b * p.y_stride + c] = scan_token(
          N, &k.A[size_t(c * N)], ssm_state + i * N, delta[b * p.delta_stride + c],
          k.dt_bias[size_t(c)], u[b * p.u_stride + c], B + b * p.B_stride, C + b * p.C_stride,
          k.D[size_t(c)], z ? z + b * p.z_stride + c : nullptr);
    }
  });
}

}  // namespace dm::cpu
