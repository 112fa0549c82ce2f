// The selective scan for 8 channels at a time in AVX2 registers: Δ, exp(Δ·A), the state update,
// C·h, the D skip and the SiLU gate, all eight lanes per instruction. See cpu_scan_lanes.h.
#include "backend/cpu/cpu_scan_lanes.h"

#if defined(__x86_64__) || defined(__i386__)

#include <algorithm>

#include "backend/cpu/cpu_avx2_math.h"

namespace dm::cpu::scan_detail {
namespace {

using namespace dm::cpu::avx2;

// Partial groups (channels % 8) never read or write past their last live lane.
DM_AVX2 inline __m256 load(const float* p, bool full, __m256i mask) {
  return full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask);
}

// Tokens per chunk: the per-token terms of a chunk are formed first (independent of each other,
// so they pipeline), leaving only the recurrence on the dependency chain.
constexpr int64_t kChunk = 64;

DM_AVX2 void scan_lanes(const ScanLanes& a) {
  const bool full = a.lanes == kLanes;
  alignas(32) int32_t mask_bits[kLanes];
  for (int l = 0; l < kLanes; ++l) mask_bits[l] = l < a.lanes ? -1 : 0;
  const __m256i mask = _mm256_load_si256(reinterpret_cast<const __m256i*>(mask_bits));
  const __m256 D = _mm256_loadu_ps(a.D);
  const __m256 dt_bias = _mm256_loadu_ps(a.dt_bias);
  const int64_t N = a.N;
  const float* A = a.A;
  float* h = a.h;
  alignas(32) float dt_buf[kChunk * kLanes], du_buf[kChunk * kLanes], skip_buf[kChunk * kLanes],
      gate_buf[kChunk * kLanes];
  for (int64_t t0 = 0; t0 < a.T; t0 += kChunk) {
    const int64_t nt = std::min(kChunk, a.T - t0);
    // Per token: Δ = softplus(delta + dt_bias), Δ·u, D·u and the gate SiLU(z).
    for (int64_t i = 0; i < nt; ++i) {
      const int64_t t = t0 + i;
      const __m256 u = load(a.u + t * a.u_stride, full, mask);
      const __m256 dt = softplus8(_mm256_add_ps(load(a.delta + t * a.delta_stride, full, mask), dt_bias));
      _mm256_store_ps(dt_buf + i * kLanes, dt);
      _mm256_store_ps(du_buf + i * kLanes, _mm256_mul_ps(dt, u));
      _mm256_store_ps(skip_buf + i * kLanes, _mm256_mul_ps(D, u));
      if (a.z) _mm256_store_ps(gate_buf + i * kLanes, silu8(load(a.z + t * a.z_stride, full, mask)));
    }
    // The recurrence: h = exp(Δ·A)·h + B·(Δ·u); y = C·h + D·u, gated.
    for (int64_t i = 0; i < nt; ++i) {
      const int64_t t = t0 + i;
      const __m256 dt = _mm256_load_ps(dt_buf + i * kLanes);
      const __m256 du = _mm256_load_ps(du_buf + i * kLanes);
      const float* B = a.B + t * a.B_stride;
      const float* C = a.C + t * a.C_stride;
      __m256 y = _mm256_setzero_ps();
      for (int64_t n = 0; n < N; ++n) {
        const __m256 dA = exp8(_mm256_mul_ps(dt, _mm256_loadu_ps(A + n * kLanes)));
        const __m256 hn = _mm256_fmadd_ps(dA, _mm256_loadu_ps(h + n * kLanes),
                                          _mm256_mul_ps(_mm256_broadcast_ss(B + n), du));
        _mm256_storeu_ps(h + n * kLanes, hn);
        y = _mm256_fmadd_ps(hn, _mm256_broadcast_ss(C + n), y);
      }
      y = _mm256_add_ps(y, _mm256_load_ps(skip_buf + i * kLanes));
      if (a.z) y = _mm256_mul_ps(y, _mm256_load_ps(gate_buf + i * kLanes));
      float* yp = a.y + t * a.y_stride;
      if (full) {
        _mm256_storeu_ps(yp, y);
      } else {
        _mm256_maskstore_ps(yp, mask, y);
      }
    }
  }
}

}  // namespace

ScanLanesFn scan_lanes_avx2() { return scan_lanes; }

}  // namespace dm::cpu::scan_detail

#else

namespace dm::cpu::scan_detail {
ScanLanesFn scan_lanes_avx2() { return nullptr; }
}  // namespace dm::cpu::scan_detail

#endif
