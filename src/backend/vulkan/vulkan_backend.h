// The Vulkan backend's entry points for the registry and the Vulkan-only hooks (device list,
// profiling). No Vulkan header here: callers outside src/backend/vulkan/ see only these.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"

namespace dm {

struct VulkanDeviceInfo {
  int index;          // what --device takes
  std::string name;
  std::string caps;   // one line: type, API version, subgroup size, shared memory, features
};

// The devices in --device order (discrete, integrated, virtual, CPU). Empty with *why set when
// there is no Vulkan loader, driver or device.
std::vector<VulkanDeviceInfo> list_vulkan_devices(std::string* why = nullptr);

// available: some device exists; detail: device 0's name, or why not.
BackendInfo probe_vulkan_backend();

// Throws dm::Error ("[vulkan] ...") when the device does not exist or cannot start.
std::unique_ptr<Backend> create_vulkan_backend(int device = 0);

// --profile: per-dispatch timestamps, summed per kernel (selective_scan has one row per pass).
struct VulkanKernelTime {
  std::string kernel;
  uint64_t dispatches = 0;
  double total_us = 0;
};
struct VulkanStats {
  uint64_t dispatches = 0, copies = 0, barriers = 0, submits = 0;
  bool discrete = false;       // the device is a discrete GPU
  uint32_t fence_spin_us = 0;  // how long the recorder polls a fence before blocking
};
// These return false / empty when `backend` is not the Vulkan backend.
bool vulkan_set_profiling(Backend& backend, bool on);  // off → on starts an empty table
std::vector<VulkanKernelTime> vulkan_profile(Backend& backend);  // synchronizes first
std::string vulkan_profile_table(Backend& backend);              // the --profile table
bool vulkan_stats(const Backend& backend, VulkanStats* out);

// The recorder's hazard test on two byte sets of one buffer, each `rows` runs of `row_bytes`
// every `stride` bytes from `begin` (exposed for its test).
bool vulkan_strided_overlap(uint64_t a_begin, uint64_t a_rows, uint64_t a_row_bytes,
                            uint64_t a_stride, uint64_t b_begin, uint64_t b_rows,
                            uint64_t b_row_bytes, uint64_t b_stride);

// How many ways gemm.vec128 splits K for an M × N × K GEMM on a device of `compute_units` SMs /
// CUs (0: it does not say) whose storage bindings reach `max_binding` bytes (vulkan_gemm.cpp
// says how); `forced` > 0 (DM_VULKAN_GEMM_SPLITK) replaces the rule. Exposed for its test.
uint32_t vulkan_simt_gemm_splits(uint32_t M, uint32_t N, uint32_t K, uint32_t compute_units,
                                 uint64_t max_binding, uint32_t forced = 0);

}  // namespace dm
