// The CPU kernels, one per Backend method, on raw host pointers (already offset to the
// tensor's first element) and the params struct every backend builds. Activations are fp32;
// weights are read in their stored dtype and converted to fp32. Strides come from the params.
#pragma once

#include <cstdint>

#include "backend/cpu/cpu_isa.h"
#include "backend/params.h"

namespace dm::cpu {

void gemm(const GemmParams& p, const float* x, const void* w, const void* bias, float* y,
          CpuIsa isa);
void rms_norm(const RmsNormParams& p, const float* x, float* residual, const void* weight,
              float* y);
void causal_conv1d(const CausalConv1dParams& p, const float* x, const void* weight,
                   const void* bias, float* conv_state, float* y, CpuIsa isa);
void causal_conv1d_step(const CausalConv1dStepParams& p, const float* x, const void* weight,
                        const void* bias, float* conv_state, float* y, CpuIsa isa);
void selective_scan(const SelectiveScanParams& p, const float* u, const float* delta,
                    const void* A_log, const float* B, const float* C, const void* D,
                    const float* z, const void* dt_bias, float* ssm_state, float* y, CpuIsa isa);
void selective_scan_step(const SelectiveScanStepParams& p, const float* u, const float* delta,
                         const void* A_log, const float* B, const float* C, const void* D,
                         const float* z, const void* dt_bias, float* ssm_state, float* y, CpuIsa isa);
void dt_importance(const DtImportanceParams& p, const float* delta, const void* dt_bias,
                   float* scores, CpuIsa isa);
void topk_indices(const TopkIndicesParams& p, const float* scores, int32_t* idx);
// Throws dm::Error, before writing anything, when an index is outside [0, src_rows).
void gather_rows(const GatherRowsParams& p, const void* src, const int32_t* idx, float* dst);
int32_t argmax(const ArgmaxParams& p, const float* x);

namespace dt_importance_detail {
// One token's score from its delta row and the fp32 dt_bias; null when this build has no AVX2.
using ScoreRowFn = float (*)(const float* delta, const float* dt_bias, int64_t channels);
ScoreRowFn score_row_avx2();
}  // namespace dt_importance_detail

}  // namespace dm::cpu
