// The time-parallel-in-a-warp prompt scan (selective_scan_v6.cu), called by
// launch_selective_scan (selective_scan.cu).
#pragma once

#include <cuda_runtime.h>

#include "backend/params.h"

namespace dm::cuda {

// Whether v6 runs these params: d_state 16, channels a multiple of 4, every row 16-byte aligned.
bool scan_v6_applies(const SelectiveScanParams& p, const float* u, const float* delta,
                     const float* B, const float* C, const float* z, const float* y);
// cfg: a letter of the configuration table in selective_scan_v6.cu, or 0 for the per-width
// default. Returns cudaErrorInvalidValue for an unknown letter (the caller then runs v2).
cudaError_t launch_scan_v6(char cfg, const SelectiveScanParams& p, const float* u,
                           const float* delta, const void* A_log, const float* B, const float* C,
                           const void* D, const float* z, const void* dt_bias, float* ssm_state,
                           float* y, cudaStream_t s);

}  // namespace dm::cuda
