// The broadcast-layout prompt scan (selective_scan_v9.cu), called by launch_selective_scan
// (selective_scan.cu) for DM_CUDA_SCAN=v9.
#pragma once

#include <cuda_runtime.h>

#include "backend/params.h"

namespace dm::cuda {

// Whether v9 runs these params: d_state 16, channels a multiple of 4, the rows it stages
// 16-byte aligned (y is stored a float at a time).
bool scan_v9_applies(const SelectiveScanParams& p, const float* u, const float* delta,
                     const float* B, const float* C, const float* z);
cudaError_t launch_scan_v9(const SelectiveScanParams& p, const float* u, const float* delta,
                           const void* A_log, const float* B, const float* C, const void* D,
                           const float* z, const void* dt_bias, float* ssm_state, float* y,
                           cudaStream_t s);

}  // namespace dm::cuda
