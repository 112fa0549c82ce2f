// y = x · Wᵀ (+ bias), fp32 accumulate, W converted from its stored dtype once per tile.
// Blocked like BLIS: an N chunk × K block of W packed to fp32 (L2), one kNR-wide panel of it
// (L1) swept across an MC-row block of x, one kMR × kNR micro-tile at a time. Threads split N
// chunks (and M when N alone gives too few tasks); each packs its own panels, so no sharing.
// Up to kSmallM rows (decode) it is a GEMV that streams each weight row once.
#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/cpu/cpu_gemm_kernels.h"
#include "backend/cpu/cpu_kernels.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/thread_pool.h"

namespace dm::cpu {
namespace gemm_detail {
namespace {

void pack_panel_generic(const void* w, DType dt, int64_t w_stride, int64_t n0, int nr, int64_t k0,
                        int64_t kc, float* panel) {
  for (int j = 0; j < kNR; ++j) {
    if (j >= nr) {
      for (int64_t k = 0; k < kc; ++k) panel[k * kNR + j] = 0.f;
      continue;
    }
    const size_t row = size_t((n0 + j) * w_stride + k0);
    for (int64_t k = 0; k < kc; ++k) panel[k * kNR + j] = load_as_f32(w, dt, row + size_t(k));
  }
}

// Four floats in whatever vector registers the target has (SSE2 on baseline x86-64, NEON on
// ARM). Named accumulators, not arrays, so the compiler keeps all 12 in registers.
typedef float V4 __attribute__((vector_size(16)));

inline V4 load4(const float* p) {
  V4 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// One 8-column half of a micro-tile: y[0..MR) × [j0, j0 + 8).
template <int MR>
void tile_half(int64_t kc, const float* x, int64_t x_stride, const float* panel, int j0,
               float out[kMR][8]) {
  V4 c00 = {}, c01 = {}, c10 = {}, c11 = {}, c20 = {}, c21 = {};
  V4 c30 = {}, c31 = {}, c40 = {}, c41 = {}, c50 = {}, c51 = {};
  const float* xr[kMR];
  for (int i = 0; i < kMR; ++i) xr[i] = x + (i < MR ? i : 0) * x_stride;
  for (int64_t k = 0; k < kc; ++k) {
    const V4 b0 = load4(panel + k * kNR + j0), b1 = load4(panel + k * kNR + j0 + 4);
    float a = xr[0][k];
    c00 += a * b0, c01 += a * b1;
    if constexpr (MR > 1) a = xr[1][k], c10 += a * b0, c11 += a * b1;
    if constexpr (MR > 2) a = xr[2][k], c20 += a * b0, c21 += a * b1;
    if constexpr (MR > 3) a = xr[3][k], c30 += a * b0, c31 += a * b1;
    if constexpr (MR > 4) a = xr[4][k], c40 += a * b0, c41 += a * b1;
    if constexpr (MR > 5) a = xr[5][k], c50 += a * b0, c51 += a * b1;
  }
  const V4 lo[kMR] = {c00, c10, c20, c30, c40, c50}, hi[kMR] = {c01, c11, c21, c31, c41, c51};
  for (int i = 0; i < MR; ++i) {
    std::memcpy(out[i], &lo[i], sizeof(V4));
    std::memcpy(out[i] + 4, &hi[i], sizeof(V4));
  }
}

template <int MR>
void tile_generic_mr(int64_t kc, const float* x, int64_t x_stride, const float* panel, float* y,
                     int64_t y_stride, int nr, bool accumulate, const float* bias16) {
  float acc[kMR][8];
  for (int j0 = 0; j0 < kNR && j0 < nr; j0 += 8) {
    tile_half<MR>(kc, x, x_stride, panel, j0, acc);
    for (int i = 0; i < MR; ++i) {
      float* yr = y + i * y_stride;
      for (int j = j0; j < std::min(j0 + 8, nr); ++j) {
        const float base = accumulate ? yr[j] : (bias16 ? bias16[j] : 0.f);
        yr[j] = base + acc[i][j - j0];
      }
    }
  }
}

void tile_generic(int mr, int64_t kc, const float* x, int64_t x_stride, const float* panel,
                  float* y, int64_t y_stride, int nr, bool accumulate, const float* bias16) {
  switch (mr) {
    case 1: return tile_generic_mr<1>(kc, x, x_stride, panel, y, y_stride, nr, accumulate, bias16);
    case 2: return tile_generic_mr<2>(kc, x, x_stride, panel, y, y_stride, nr, accumulate, bias16);
    case 3: return tile_generic_mr<3>(kc, x, x_stride, panel, y, y_stride, nr, accumulate, bias16);
    case 4: return tile_generic_mr<4>(kc, x, x_stride, panel, y, y_stride, nr, accumulate, bias16);
    case 5: return tile_generic_mr<5>(kc, x, x_stride, panel, y, y_stride, nr, accumulate, bias16);
    case 6: return tile_generic_mr<6>(kc, x, x_stride, panel, y, y_stride, nr, accumulate, bias16);
  }
  DM_ASSERT(false, "micro-tile rows ", mr);
}

void gemv_generic(int M, int64_t K, const float* x, int64_t x_stride, const void* w, DType dt,
                  int64_t w_stride, int64_t n0, int64_t n1, const float* bias, float* y,
                  int64_t y_stride) {
  std::vector<float> row(static_cast<size_t>(K));
  for (int64_t n = n0; n < n1; ++n) {
    for (int64_t k = 0; k < K; ++k) row[size_t(k)] = load_as_f32(w, dt, size_t(n * w_stride + k));
    for (int m = 0; m < M; ++m) {
      const float* xr = x + m * x_stride;
      // Eight partial sums in two vectors: independent chains instead of one serial sum.
      V4 s0 = {}, s1 = {};
      int64_t k = 0;
      for (; k + 8 <= K; k += 8) {
        s0 += load4(xr + k) * load4(&row[size_t(k)]);
        s1 += load4(xr + k + 4) * load4(&row[size_t(k + 4)]);
      }
      const V4 s = s0 + s1;
      float acc = (s[0] + s[1]) + (s[2] + s[3]);
      for (; k < K; ++k) acc += xr[k] * row[size_t(k)];
      y[m * y_stride + n] = (bias ? bias[n] : 0.f) + acc;
    }
  }
}

}  // namespace

const MicroKernels& generic_kernels() {
  static const MicroKernels k{pack_panel_generic, tile_generic, gemv_generic};
  return k;
}

}  // namespace gemm_detail

using namespace gemm_detail;

void gemm(const GemmParams& p, const float* x, const void* w, const void* bias, float* y,
          CpuIsa isa) {
  const int64_t M = p.M, N = p.N, K = p.K;
  const DType wdt = DType(p.w_dtype);
  // Bias in fp32, padded so a partial micro-tile may read kNR values.
  std::vector<float> b;
  if (p.has_bias) {
    b.assign(size_t(N + kNR), 0.f);
    for (int64_t n = 0; n < N; ++n) b[size_t(n)] = load_as_f32(bias, DType(p.bias_dtype), size_t(n));
  }
  const float* bp = p.has_bias ? b.data() : nullptr;
  if (M == 0 || N == 0) return;
  if (K == 0) {  // an empty sum: y is the bias
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) y[m * p.y_stride + n] = bp ? bp[n] : 0.f;
    return;
  }
  const MicroKernels* kp = &generic_kernels();
  if (isa == CpuIsa::avx2) {
    kp = avx2_kernels();
    DM_ASSERT(kp, "the avx2 GEMM is not compiled into this build");
  }
  const MicroKernels& kern = *kp;

  if (M <= kSmallM) {
    parallel_for(N, 64, [&](int64_t n0, int64_t n1) {
      kern.gemv(int(M), K, x, p.x_stride, w, wdt, p.w_stride, n0, n1, bp, y, p.y_stride);
    });
    return;
  }

  constexpr int64_t kNC = 256;  // W rows per chunk: kNC × kKC fp32 = 256 KiB, in L2
  constexpr int64_t kKC = 256;  // K per block: one panel (kKC × kNR fp32 = 16 KiB) in L1
  constexpr int64_t kMC = 96;   // x rows per block: 96 KiB of x in L2 per panel sweep
  const int64_t n_chunks = (N + kNC - 1) / kNC;
  // Too few N chunks for the threads (x_proj has N = 80): split M too, at some repacking cost.
  const int64_t want = 2 * int64_t(thread_count());
  const int64_t m_chunks =
      n_chunks >= want ? 1 : std::min((M + kMC - 1) / kMC, (want + n_chunks - 1) / n_chunks);
  parallel_for(n_chunks * m_chunks, 1, [&](int64_t task0, int64_t task1) {
    std::vector<float> packed(size_t(kNC * kKC));
    for (int64_t task = task0; task < task1; ++task) {
      const int64_t nc0 = (task / m_chunks) * kNC, nc1 = std::min(nc0 + kNC, N);
      const int64_t mi = task % m_chunks;
      const int64_t m0 = M * mi / m_chunks, m1 = M * (mi + 1) / m_chunks;
      for (int64_t k0 = 0; k0 < K; k0 += kKC) {
        const int64_t kc = std::min(kKC, K - k0);
        const bool accumulate = k0 > 0;
        for (int64_t n = nc0; n < nc1; n += kNR) {
          const int nr = int(std::min<int64_t>(kNR, nc1 - n));
          kern.pack_panel(w, wdt, p.w_stride, n, nr, k0, kc, &packed[size_t((n - nc0) * kc)]);
        }
        for (int64_t mb = m0; mb < m1; mb += kMC) {
          const int64_t me = std::min(mb + kMC, m1);
          for (int64_t n = nc0; n < nc1; n += kNR) {
            const int nr = int(std::min<int64_t>(kNR, nc1 - n));
            const float* panel = &packed[size_t((n - nc0) * kc)];
            for (int64_t m = mb; m < me; m += kMR) {
              const int mr = int(std::min<int64_t>(kMR, me - m));
              kern.tile(mr, kc, x + m * p.x_stride + k0, p.x_stride, panel, y + m * p.y_stride + n,
                        p.y_stride, nr, accumulate, bp ? bp + n : nullptr);
            }
          }
        }
      }
    }
  });
}

}  // namespace dm::cpu
