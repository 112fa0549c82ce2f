// The AVX2 + FMA + F16C pieces of the CPU GEMM. The build targets baseline x86-64, so every
// function here carries a target attribute and is only called after cpu_supports(avx2).
// Nothing from a shared header is instantiated in here, so no AVX2 code leaks into inline
// functions other files also use.
#include "backend/cpu/cpu_gemm_kernels.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#define DM_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace dm::cpu::gemm_detail {
namespace {

// Eight consecutive weights as fp32.
template <DType DT>
DM_AVX2 inline __m256 load8(const void* w, int64_t i) {
  if constexpr (DT == DType::F32) {
    return _mm256_loadu_ps(static_cast<const float*>(w) + i);
  } else if constexpr (DT == DType::F16) {
    return _mm256_cvtph_ps(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + i)));
  } else {  // BF16: the high half of an fp32
    const __m128i h =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

// One weight as fp32 (the tails that are not a multiple of 8).
template <DType DT>
DM_AVX2 inline float load1(const void* w, int64_t i) {
  if constexpr (DT == DType::F32) {
    return static_cast<const float*>(w)[i];
  } else if constexpr (DT == DType::F16) {
    return _cvtsh_ss(static_cast<const uint16_t*>(w)[i]);
  } else {
    const uint32_t bits = uint32_t(static_cast<const uint16_t*>(w)[i]) << 16;
    float f;
    __builtin_memcpy(&f, &bits, 4);
    return f;
  }
}

DM_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <DType DT>
DM_AVX2 void pack_panel_dt(const void* w, int64_t w_stride, int64_t n0, int nr, int64_t k0,
                           int64_t kc, float* panel) {
  alignas(32) float tmp[8];
  for (int j = 0; j < kNR; ++j) {
    if (j >= nr) {
      for (int64_t k = 0; k < kc; ++k) panel[k * kNR + j] = 0.f;
      continue;
    }
    const int64_t row = (n0 + j) * w_stride + k0;
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8) {
      _mm256_store_ps(tmp, load8<DT>(w, row + k));
      for (int i = 0; i < 8; ++i) panel[(k + i) * kNR + j] = tmp[i];
    }
    for (; k < kc; ++k) panel[k * kNR + j] = load1<DT>(w, row + k);
  }
}

DM_AVX2 void pack_panel_avx2(const void* w, DType dt, int64_t w_stride, int64_t n0, int nr,
                             int64_t k0, int64_t kc, float* panel) {
  switch (dt) {
    case DType::F16: return pack_panel_dt<DType::F16>(w, w_stride, n0, nr, k0, kc, panel);
    case DType::BF16: return pack_panel_dt<DType::BF16>(w, w_stride, n0, nr, k0, kc, panel);
    default: return pack_panel_dt<DType::F32>(w, w_stride, n0, nr, k0, kc, panel);
  }
}

// The accumulators are named variables, not an array: GCC otherwise spills an array of
// __m256 back to the stack on every k, which halves the speed.
template <int MR>
DM_AVX2 void tile_mr(int64_t kc, const float* x, int64_t x_stride, const float* panel, float* y,
                     int64_t y_stride, int nr, bool accumulate, const float* bias16) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  const float* x0 = x;
  const float* x1 = x + (MR > 1 ? 1 : 0) * x_stride;
  const float* x2 = x + (MR > 2 ? 2 : 0) * x_stride;
  const float* x3 = x + (MR > 3 ? 3 : 0) * x_stride;
  const float* x4 = x + (MR > 4 ? 4 : 0) * x_stride;
  const float* x5 = x + (MR > 5 ? 5 : 0) * x_stride;
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(panel + k * kNR);
    const __m256 b1 = _mm256_loadu_ps(panel + k * kNR + 8);
    __m256 a = _mm256_broadcast_ss(x0 + k);
    c00 = _mm256_fmadd_ps(a, b0, c00);
    c01 = _mm256_fmadd_ps(a, b1, c01);
    if constexpr (MR > 1) {
      a = _mm256_broadcast_ss(x1 + k);
      c10 = _mm256_fmadd_ps(a, b0, c10);
      c11 = _mm256_fmadd_ps(a, b1, c11);
    }
    if constexpr (MR > 2) {
      a = _mm256_broadcast_ss(x2 + k);
      c20 = _mm256_fmadd_ps(a, b0, c20);
      c21 = _mm256_fmadd_ps(a, b1, c21);
    }
    if constexpr (MR > 3) {
      a = _mm256_broadcast_ss(x3 + k);
      c30 = _mm256_fmadd_ps(a, b0, c30);
      c31 = _mm256_fmadd_ps(a, b1, c31);
    }
    if constexpr (MR > 4) {
      a = _mm256_broadcast_ss(x4 + k);
      c40 = _mm256_fmadd_ps(a, b0, c40);
      c41 = _mm256_fmadd_ps(a, b1, c41);
    }
    if constexpr (MR > 5) {
      a = _mm256_broadcast_ss(x5 + k);
      c50 = _mm256_fmadd_ps(a, b0, c50);
      c51 = _mm256_fmadd_ps(a, b1, c51);
    }
  }
  const __m256 c0[6] = {c00, c10, c20, c30, c40, c50};
  const __m256 c1[6] = {c01, c11, c21, c31, c41, c51};
  if (nr == kNR) {
    for (int i = 0; i < MR; ++i) {
      float* yr = y + i * y_stride;
      __m256 base0, base1;
      if (accumulate) {
        base0 = _mm256_loadu_ps(yr);
        base1 = _mm256_loadu_ps(yr + 8);
      } else if (bias16) {
        base0 = _mm256_loadu_ps(bias16);
        base1 = _mm256_loadu_ps(bias16 + 8);
      } else {
        base0 = base1 = _mm256_setzero_ps();
      }
      _mm256_storeu_ps(yr, _mm256_add_ps(base0, c0[i]));
      _mm256_storeu_ps(yr + 8, _mm256_add_ps(base1, c1[i]));
    }
    return;
  }
  // A partial tile: never touch y past column nr (it may be someone else's memory).
  alignas(32) float tmp[kNR];
  for (int i = 0; i < MR; ++i) {
    _mm256_store_ps(tmp, c0[i]);
    _mm256_store_ps(tmp + 8, c1[i]);
    float* yr = y + i * y_stride;
    for (int j = 0; j < nr; ++j) {
      const float base = accumulate ? yr[j] : (bias16 ? bias16[j] : 0.f);
      yr[j] = base + tmp[j];
    }
  }
}

DM_AVX2 void tile_avx2(int mr, int64_t kc, const float* x, int64_t x_stride, const float* panel,
                       float* y, int64_t y_stride, int nr, bool accumulate, const float* bias16) {
  switch (mr) {
    case 1: return tile_mr<1>(kc, x, x_stride, panel, y, y_stride, nr, accumulate, bias16);
    case 2: return tile_mr<2>(kc, x, x_stride, panel, y, y_stride, nr, accumulate, bias16);
    case 3: return tile_mr<3>(kc, x, x_stride, panel, y, y_stride, nr, accumulate, bias16);
    case 4: return tile_mr<4>(kc, x, x_stride, panel, y, y_stride, nr, accumulate, bias16);
    case 5: return tile_mr<5>(kc, x, x_stride, panel, y, y_stride, nr, accumulate, bias16);
    default: return tile_mr<6>(kc, x, x_stride, panel, y, y_stride, nr, accumulate, bias16);
  }
}

// M rows of x against each weight row, 16 weights per step in two accumulator chains so the
// FMA latency hides behind the loads (decode is bound by reading W).
template <DType DT, int M>
DM_AVX2 void gemv_m(int64_t K, const float* x, int64_t x_stride, const void* w, int64_t w_stride,
                    int64_t n0, int64_t n1, const float* bias, float* y, int64_t y_stride) {
  const float* x0 = x;
  const float* x1 = x + (M > 1 ? 1 : 0) * x_stride;
  const float* x2 = x + (M > 2 ? 2 : 0) * x_stride;
  const float* x3 = x + (M > 3 ? 3 : 0) * x_stride;
  for (int64_t n = n0; n < n1; ++n) {
    const int64_t row = n * w_stride;
    // Named accumulators (see tile_mr): two chains per row of x.
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00;
    __m256 a30 = a00, a31 = a00;
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
      const __m256 w0 = load8<DT>(w, row + k);
      const __m256 w1 = load8<DT>(w, row + k + 8);
      a00 = _mm256_fmadd_ps(_mm256_loadu_ps(x0 + k), w0, a00);
      a01 = _mm256_fmadd_ps(_mm256_loadu_ps(x0 + k + 8), w1, a01);
      if constexpr (M > 1) {
        a10 = _mm256_fmadd_ps(_mm256_loadu_ps(x1 + k), w0, a10);
        a11 = _mm256_fmadd_ps(_mm256_loadu_ps(x1 + k + 8), w1, a11);
      }
      if constexpr (M > 2) {
        a20 = _mm256_fmadd_ps(_mm256_loadu_ps(x2 + k), w0, a20);
        a21 = _mm256_fmadd_ps(_mm256_loadu_ps(x2 + k + 8), w1, a21);
      }
      if constexpr (M > 3) {
        a30 = _mm256_fmadd_ps(_mm256_loadu_ps(x3 + k), w0, a30);
        a31 = _mm256_fmadd_ps(_mm256_loadu_ps(x3 + k + 8), w1, a31);
      }
    }
    for (; k + 8 <= K; k += 8) {
      const __m256 w0 = load8<DT>(w, row + k);
      a00 = _mm256_fmadd_ps(_mm256_loadu_ps(x0 + k), w0, a00);
      if constexpr (M > 1) a10 = _mm256_fmadd_ps(_mm256_loadu_ps(x1 + k), w0, a10);
      if constexpr (M > 2) a20 = _mm256_fmadd_ps(_mm256_loadu_ps(x2 + k), w0, a20);
      if constexpr (M > 3) a30 = _mm256_fmadd_ps(_mm256_loadu_ps(x3 + k), w0, a30);
    }
    const __m256 sums[4] = {_mm256_add_ps(a00, a01), _mm256_add_ps(a10, a11),
                            _mm256_add_ps(a20, a21), _mm256_add_ps(a30, a31)};
    const float* xs[4] = {x0, x1, x2, x3};
    for (int m = 0; m < M; ++m) {
      float acc = hsum(sums[m]);
      for (int64_t kk = k; kk < K; ++kk) acc += xs[m][kk] * load1<DT>(w, row + kk);
      y[m * y_stride + n] = (bias ? bias[n] : 0.f) + acc;
    }
  }
}

template <DType DT>
DM_AVX2 void gemv_dt(int M, int64_t K, const float* x, int64_t x_stride, const void* w,
                     int64_t w_stride, int64_t n0, int64_t n1, const float* bias, float* y,
                     int64_t y_stride) {
  switch (M) {
    case 1: return gemv_m<DT, 1>(K, x, x_stride, w, w_stride, n0, n1, bias, y, y_stride);
    case 2: return gemv_m<DT, 2>(K, x, x_stride, w, w_stride, n0, n1, bias, y, y_stride);
    case 3: return gemv_m<DT, 3>(K, x, x_stride, w, w_stride, n0, n1, bias, y, y_stride);
    default: return gemv_m<DT, 4>(K, x, x_stride, w, w_stride, n0, n1, bias, y, y_stride);
  }
}

DM_AVX2 void gemv_avx2(int M, int64_t K, const float* x, int64_t x_stride, const void* w, DType dt,
                       int64_t w_stride, int64_t n0, int64_t n1, const float* bias, float* y,
                       int64_t y_stride) {
  switch (dt) {
    case DType::F16: return gemv_dt<DType::F16>(M, K, x, x_stride, w, w_stride, n0, n1, bias, y, y_stride);
    case DType::BF16: return gemv_dt<DType::BF16>(M, K, x, x_stride, w, w_stride, n0, n1, bias, y, y_stride);
    default: return gemv_dt<DType::F32>(M, K, x, x_stride, w, w_stride, n0, n1, bias, y, y_stride);
  }
}

}  // namespace

const MicroKernels* avx2_kernels() {
  static const MicroKernels k{pack_panel_avx2, tile_avx2, gemv_avx2};
  return &k;
}

}  // namespace dm::cpu::gemm_detail

#else

namespace dm::cpu::gemm_detail {
const MicroKernels* avx2_kernels() { return nullptr; }
}  // namespace dm::cpu::gemm_detail

#endif
