// Scalar activation functions of the CPU kernels, written to match PyTorch's fp32 formulas.
#pragma once

#include <cmath>

namespace dm::cpu {

// F.softplus with its default threshold: above 20 the input is returned as is.
inline float softplus(float x) { return x > 20.f ? x : std::log1p(std::exp(x)); }

// x · sigmoid(x). For x → -inf, exp(-x) overflows to inf and the result is -0, as in PyTorch.
inline float silu(float x) { return x / (1.f + std::exp(-x)); }

}  // namespace dm::cpu
