// The warp-independent prompt scan (selective_scan_v7.cu), called by launch_selective_scan
// (selective_scan.cu).
#pragma once

#include <cuda_runtime.h>

#include "backend/cuda/kernels.h"
#include "backend/params.h"

namespace dm::cuda {

// Whether v7 runs these params: d_state 16, channels a multiple of 4, every row 16-byte
// aligned, L < 2^31 (TMA coordinates are 32-bit signed).
bool scan_v7_applies(const SelectiveScanParams& p, const float* u, const float* delta,
                     const float* B, const float* C, const float* z, const float* y);
// The configuration letter for a width (selective_scan_v7.cu, with its measurements).
char scan_v7_default(uint32_t channels);
// cfg: a letter of the configuration table in selective_scan_v7.cu, or 0 for scan_v7_default.
// Returns cudaErrorInvalidValue for an unknown letter and cudaErrorNotSupported when the
// driver gives no tensor-map encoder or a map cannot be encoded (nothing launched: the caller
// then runs v6). With split.hi set, y is not written: the gated output goes to split as the
// GEMM operand instead (kernels.h GemmSplitOut; split.cols = p.channels) — configurations with
// an unswizzled producer warp only (u), cudaErrorNotSupported for the others.
cudaError_t launch_scan_v7(char cfg, const SelectiveScanParams& p, const float* u,
                           const float* delta, const void* A_log, const float* B, const float* C,
                           const void* D, const float* z, const void* dt_bias, float* ssm_state,
                           float* y, cudaStream_t s, const GemmSplitOut& split = {});

}  // namespace dm::cuda
