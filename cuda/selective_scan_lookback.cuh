// The single-pass look-back prompt scans (selective_scan_lookback.cu: v3, v4 persistent, v5
// tagged), opt-in with DM_CUDA_SCAN=v3<letter>; called by launch_selective_scan
// (selective_scan.cu), which sizes their scratch through these helpers.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "backend/params.h"

namespace dm::cuda {

// Whether `name` is a look-back configuration (a … h, p … v).
bool lookback_known(char name);
// Channels per block of configuration `name`; 0 if unknown.
int lookback_channels(char name);
// Tokens per chunk of configuration `name`.
int lookback_tokens(char name);
// Scratch bytes for `entries` (chunk, channel group) entries of configuration `name`.
size_t lookback_scratch_bytes(char name, size_t entries);
// Runs configuration `name`; cudaErrorInvalidValue for an unknown one.
cudaError_t launch_scan_lookback(char name, const SelectiveScanParams& p, const float* u,
                                 const float* delta, const void* A_log, const float* B,
                                 const float* C, const void* D, const float* z,
                                 const void* dt_bias, float* ssm_state, float* y, void* scratch,
                                 size_t scratch_bytes, cudaStream_t s);

}  // namespace dm::cuda
