// dt_importance with 8 channels per AVX2 instruction: Δ by softplus8 (fp32, as the AVX2 scan
// forms it), squares summed in double lanes.
#include "backend/cpu/cpu_kernels.h"

#if defined(__x86_64__) || defined(__i386__)

#include <cmath>

#include "backend/cpu/cpu_avx2_math.h"

namespace dm::cpu::dt_importance_detail {
namespace {

DM_AVX2 float score_row(const float* delta, const float* bias, int64_t C) {
  __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
  int64_t c = 0;
  for (; c + 8 <= C; c += 8) {
    const __m256 dt = avx2::softplus8(_mm256_add_ps(_mm256_loadu_ps(delta + c), _mm256_loadu_ps(bias + c)));
    const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(dt));
    const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(dt, 1));
    acc0 = _mm256_fmadd_pd(lo, lo, acc0);
    acc1 = _mm256_fmadd_pd(hi, hi, acc1);
  }
  double sum = 0;
  if (c < C) {  // the tail through a zero-padded copy; a padded lane's Δ is dropped
    alignas(32) float d[8] = {}, b[8] = {}, out[8];
    for (int64_t j = c; j < C; ++j) d[j - c] = delta[j], b[j - c] = bias[j];
    _mm256_store_ps(out, avx2::softplus8(_mm256_add_ps(_mm256_load_ps(d), _mm256_load_ps(b))));
    for (int64_t j = c; j < C; ++j) sum += double(out[j - c]) * double(out[j - c]);
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, _mm256_add_pd(acc0, acc1));
  sum += (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  return float(std::sqrt(sum));
}

}  // namespace

ScoreRowFn score_row_avx2() { return score_row; }

}  // namespace dm::cpu::dt_importance_detail

#else

namespace dm::cpu::dt_importance_detail {
ScoreRowFn score_row_avx2() { return nullptr; }
}  // namespace dm::cpu::dt_importance_detail

#endif
