// Keeps the k best of the first n_candidates scores under a total order (higher score first,
// then lower index), so ties and reruns are deterministic. NaN ranks below every number,
// -inf included: a broken score never displaces a real one. The kept positions come out
// ascending, then the protected tail n_candidates .. L-1.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "backend/cpu/cpu_kernels.h"

namespace dm::cpu {

void topk_indices(const TopkIndicesParams& p, const float* scores, int32_t* idx) {
  const int64_t n = p.n_candidates, k = p.k;
  std::vector<int32_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  auto better = [scores](int32_t a, int32_t b) {
    const float sa = scores[a], sb = scores[b];
    const bool na = std::isnan(sa), nb = std::isnan(sb);
    if (na != nb) return nb;  // the number beats the NaN
    if (!na && sa != sb) return sa > sb;
    return a < b;
  };
  if (k < n) std::nth_element(order.begin(), order.begin() + k, order.end(), better);
  std::sort(order.begin(), order.begin() + k);
  std::copy(order.begin(), order.begin() + k, idx);
  for (int64_t i = n; i < int64_t(p.L); ++i) idx[k + (i - n)] = int32_t(i);
}

}  // namespace dm::cpu
