// Elementwise activations over arrays, in the backend's instruction set. Kernels whose prefill
// and step must agree bit for bit call the same one.
#pragma once

#include <cstdint>

#include "backend/cpu/cpu_isa.h"

namespace dm::cpu {

// v[i] = v[i] · sigmoid(v[i]).
void silu_inplace(float* v, int64_t n, CpuIsa isa);

namespace activation_detail {
// Null when this build has no AVX2 code.
using SiluFn = void (*)(float*, int64_t);
SiluFn silu_inplace_avx2();
}  // namespace activation_detail

}  // namespace dm::cpu
