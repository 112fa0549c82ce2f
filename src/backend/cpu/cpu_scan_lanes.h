// Internal to the CPU scan: the vectorised path advances 8 channels ("lanes") of one sequence
// at once. cpu_selective_scan.cpp lays out the per-channel constants and the state lane-minor
// (A[n·8 + l], h[n·8 + l]); the AVX2 code in cpu_selective_scan_avx2.cpp runs the tokens.
#pragma once

#include <cstdint>

namespace dm::cpu::scan_detail {

constexpr int kLanes = 8;

struct ScanLanes {
  int64_t T = 0, N = 0;  // tokens, d_state
  int lanes = kLanes;    // live lanes (channels); the rest are padding
  // Token t, lane l of the per-channel inputs lies at ptr[t·stride + l].
  const float* u = nullptr;
  int64_t u_stride = 0;
  const float* delta = nullptr;
  int64_t delta_stride = 0;
  const float* z = nullptr;  // null: no gate
  int64_t z_stride = 0;
  // Token t's B and C (shared by the lanes): ptr[t·stride + n].
  const float* B = nullptr;
  int64_t B_stride = 0;
  const float* C = nullptr;
  int64_t C_stride = 0;
  const float* A = nullptr;        // N × 8, -exp(A_log)
  const float* D = nullptr;        // 8
  const float* dt_bias = nullptr;  // 8
  float* h = nullptr;              // N × 8, read and advanced
  float* y = nullptr;
  int64_t y_stride = 0;
};

// Null when this build has no AVX2 code.
using ScanLanesFn = void (*)(const ScanLanes&);
ScanLanesFn scan_lanes_avx2();

}  // namespace dm::cpu::scan_detail
