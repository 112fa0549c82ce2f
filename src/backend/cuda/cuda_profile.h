// --profile on CUDA: every Backend call the caller makes is timed on the device with a pair of
// CUDA events on the backend's stream (the outermost call only: a fused call is one row, the
// kernels inside it are not split out), a replayed recording (a decode step's CUDA graph) as one
// "replay" row; summed per call, GEMMs per weight shape ("gemm 3072x768"). Calls recorded into a
// graph are not timed (a graph's events would fire at replay). No CUDA header here.
#pragma once

#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/profile_table.h"

namespace dm {

// These return false / empty when `backend` is not the CUDA backend.
bool cuda_set_profiling(Backend& backend, bool on);  // off → on starts an empty table
std::vector<ProfileRow> cuda_profile(Backend& backend);  // synchronizes first
std::string cuda_profile_table(Backend& backend);        // the --profile table

}  // namespace dm
