// The position of the largest of x[0 .. n) (params.h ArgmaxParams): ties go to the lower index
// and NaN ranks below every number, so this is the same total order as topk_indices keeps and
// the sampler's host argmax (text/sampler.cpp) uses; the GPU kernels reduce by it in any order.
#include <cmath>

#include "backend/cpu/cpu_kernels.h"

namespace dm::cpu {

int32_t argmax(const ArgmaxParams& p, const float* x) {
  int64_t best = 0;
  for (int64_t i = 1; i < int64_t(p.n); ++i) {
    // Strictly greater: the first of equal maxima stays. A NaN best yields to any number.
    if (std::isnan(x[best]) ? !std::isnan(x[i]) : x[i] > x[best]) best = i;
  }
  return int32_t(best);
}

}  // namespace dm::cpu
