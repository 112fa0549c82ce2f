// Eight-lane exp / log / softplus / SiLU for the AVX2 kernels. Include only from *_avx2.cpp
// files: every function carries the avx2 target attribute and has internal linkage, so no AVX2
// code can be merged into a baseline caller.
//
// exp and log are the Cephes single-precision algorithms (as in Julien Pommier's
// avx_mathfun): Cody-Waite range reduction and a minimax polynomial, within ~2 ulp of the true
// value over the range the kernels use; the CPU kernel tests compare them with a double oracle.
#pragma once

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#define DM_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace dm::cpu::avx2 {
namespace {

// e^x. Below -87.34 (where e^x leaves the normal range) the result is 0; above 88.37, +inf is
// not produced: x is clamped (the callers never go there: Δ·A <= 0 and SiLU divides by it).
DM_AVX2 inline __m256 exp8(__m256 x) {
  const __m256 underflow = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3365478515625f), _CMP_LT_OQ);
  x = _mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f));
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.3365478515625f));
  // x = n·ln2 + r, |r| <= ln2/2, with ln2 split in two so n·ln2 is exact.
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  x = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.f)));
  // Scale by 2^n through the exponent bits.
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
  return _mm256_andnot_ps(underflow, y);
}

// ln x for positive, finite, normal x (the callers pass 1 + e^x >= 1).
DM_AVX2 inline __m256 log8(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.f);
  // x = m · 2^e with m in [0.5, 1).
  const __m256i bits = _mm256_castps_si256(x);
  __m256 e = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(126)));
  __m256 m = _mm256_or_ps(_mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(0x807fffff))),
                          _mm256_set1_ps(0.5f));
  // Keep m in [sqrt(1/2), sqrt(2)) so the polynomial sees |m - 1| < 0.42.
  const __m256 small = _mm256_cmp_ps(m, _mm256_set1_ps(0.707106781186547524f), _CMP_LT_OQ);
  e = _mm256_sub_ps(e, _mm256_and_ps(one, small));
  m = _mm256_add_ps(_mm256_sub_ps(m, one), _mm256_and_ps(m, small));
  const __m256 z = _mm256_mul_ps(m, m);
  __m256 y = _mm256_set1_ps(7.0376836292e-2f);
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-1.1514610310e-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(1.1676998740e-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-1.2420140846e-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(1.4249322787e-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-1.6668057665e-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(2.0000714765e-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-2.4999993993e-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(3.3333331174e-1f));
  y = _mm256_mul_ps(_mm256_mul_ps(y, m), z);
  y = _mm256_fmadd_ps(e, _mm256_set1_ps(-2.12194440e-4f), y);
  y = _mm256_fnmadd_ps(z, _mm256_set1_ps(0.5f), y);
  return _mm256_fmadd_ps(e, _mm256_set1_ps(0.693359375f), _mm256_add_ps(m, y));
}

// PyTorch's softplus: x above 20, else log1p(e^x). log1p(v) = log(u) - ((u - 1) - v) / u with
// u = 1 + v corrects the rounding of u, so tiny v (very negative x) still gives ≈ v.
DM_AVX2 inline __m256 softplus8(__m256 x) {
  const __m256 v = exp8(x);
  const __m256 u = _mm256_add_ps(_mm256_set1_ps(1.f), v);
  const __m256 lp = _mm256_sub_ps(
      log8(u), _mm256_div_ps(_mm256_sub_ps(_mm256_sub_ps(u, _mm256_set1_ps(1.f)), v), u));
  return _mm256_blendv_ps(lp, x, _mm256_cmp_ps(x, _mm256_set1_ps(20.f), _CMP_GT_OQ));
}

// x · sigmoid(x) = x / (1 + e^-x).
DM_AVX2 inline __m256 silu8(__m256 x) {
  return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.f), exp8(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

}  // namespace
}  // namespace dm::cpu::avx2

#endif
