#include "backend/cpu/cpu_activation.h"

#include "backend/cpu/cpu_math.h"
#include "core/error.h"

namespace dm::cpu {

void silu_inplace(float* v, int64_t n, CpuIsa isa) {
  if (isa == CpuIsa::avx2) {
    activation_detail::SiluFn fn = activation_detail::silu_inplace_avx2();
    DM_ASSERT(fn, "the avx2 activations are not compiled into this build");
    fn(v, n);
    return;
  }
  for (int64_t i = 0; i < n; ++i) v[i] = silu(v[i]);
}

}  // namespace dm::cpu
