// Internal to the CPU GEMM: the per-instruction-set pieces the driver in cpu_gemm.cpp
// combines. W (N×K, row-major, any float dtype) is converted to fp32 once per tile into
// "panels" of kNR rows laid out k-major (panel[k·kNR + j] = W[n0 + j, k0 + k]), so that the
// micro-kernel broadcasts one x value against kNR consecutive weights per k: an outer-product
// update of a kMR × kNR block of y that the compiler keeps in registers.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace dm::cpu::gemm_detail {

constexpr int kMR = 6;    // rows of y per micro-tile (6 × 2 AVX registers of accumulators)
constexpr int kNR = 16;   // columns of y per micro-tile = rows of W per panel
constexpr int kSmallM = 4;  // up to this many rows, stream W once in a GEMV instead of packing

struct MicroKernels {
  // Packs W rows [n0, n0 + nr) × columns [k0, k0 + kc) into panel (kc × kNR fp32); columns
  // j >= nr of the panel are zero.
  void (*pack_panel)(const void* w, DType dt, int64_t w_stride, int64_t n0, int nr, int64_t k0,
                     int64_t kc, float* panel);
  // y[0..mr) × [0..nr) = (accumulate ? y : bias16 or 0) + x[0..mr) × [0..kc) · panel.
  // bias16 holds kNR values when not null.
  void (*tile)(int mr, int64_t kc, const float* x, int64_t x_stride, const float* panel, float* y,
               int64_t y_stride, int nr, bool accumulate, const float* bias16);
  // M <= kSmallM: y[m, n] = x[m, :] · W[n, :] (+ bias[n]) for n in [n0, n1), all of K at once.
  void (*gemv)(int M, int64_t K, const float* x, int64_t x_stride, const void* w, DType dt,
               int64_t w_stride, int64_t n0, int64_t n1, const float* bias, float* y,
               int64_t y_stride);
};

const MicroKernels& generic_kernels();
// Null when this build has no AVX2 code (a non-x86 target).
const MicroKernels* avx2_kernels();

}  // namespace dm::cpu::gemm_detail
