// The v8 prompt scan (selective_scan_v8.cu), called by launch_selective_scan
// (selective_scan.cu). Runs where v7 runs (scan_v7_applies: sm_90, d_state 16, channels a
// multiple of 4, 16-byte aligned rows).
#pragma once

#include <cuda_runtime.h>

#include "backend/params.h"

namespace dm::cuda {

// The v8 configuration letter that runs by default for this width, 0 where v7 stays the default
// (selective_scan_v8.cu, with its measurements).
char scan_v8_default(uint32_t channels);
// cfg: a letter of the configuration table in selective_scan_v8.cu, or 0 for scan_v8_default
// (cudaErrorInvalidValue if that is 0 too). Returns cudaErrorInvalidValue for an unknown letter
// and cudaErrorNotSupported when a tensor map cannot be encoded (nothing launched: the caller
// then runs its default).
cudaError_t launch_scan_v8(char cfg, const SelectiveScanParams& p, const float* u,
                           const float* delta, const void* A_log, const float* B, const float* C,
                           const void* D, const float* z, const void* dt_bias, float* ssm_state,
                           float* y, cudaStream_t s);

}  // namespace dm::cuda
