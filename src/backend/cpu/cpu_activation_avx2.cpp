#include "backend/cpu/cpu_activation.h"

#if defined(__x86_64__) || defined(__i386__)

#include "backend/cpu/cpu_avx2_math.h"

namespace dm::cpu::activation_detail {
namespace {

DM_AVX2 void silu_avx2(float* v, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(v + i, avx2::silu8(_mm256_loadu_ps(v + i)));
  if (i < n) {  // the tail through a padded copy, so every element sees the same arithmetic
    alignas(32) float tmp[8] = {};
    for (int64_t j = i; j < n; ++j) tmp[j - i] = v[j];
    _mm256_store_ps(tmp, avx2::silu8(_mm256_load_ps(tmp)));
    for (int64_t j = i; j < n; ++j) v[j] = tmp[j - i];
  }
}

}  // namespace

SiluFn silu_inplace_avx2() { return silu_avx2; }

}  // namespace dm::cpu::activation_detail

#else

namespace dm::cpu::activation_detail {
SiluFn silu_inplace_avx2() { return nullptr; }
}  // namespace dm::cpu::activation_detail

#endif
