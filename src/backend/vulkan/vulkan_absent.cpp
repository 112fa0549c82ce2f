// Built instead of the Vulkan backend when DM_VULKAN is OFF: the entry points of
// vulkan_backend.h exist and say why there is no Vulkan, so tools and benchmarks that call
// them build everywhere and fail (or skip) at run time with one line.
#include "backend/vulkan/vulkan_backend.h"

#include "core/error.h"

namespace dm {

namespace {
const char* kNotBuilt = "not built into this binary (configure with DM_VULKAN=ON)";
}

std::vector<VulkanDeviceInfo> list_vulkan_devices(std::string* why) {
  if (why) *why = kNotBuilt;
  return {};
}
BackendInfo probe_vulkan_backend() { return {"vulkan", false, kNotBuilt}; }
std::unique_ptr<Backend> create_vulkan_backend(int) { fail("[vulkan] ", kNotBuilt); }
bool vulkan_set_profiling(Backend&, bool) { return false; }
std::vector<VulkanKernelTime> vulkan_profile(Backend&) { return {}; }
std::string vulkan_profile_table(Backend&) { return ""; }
bool vulkan_stats(const Backend&, VulkanStats*) { return false; }
bool vulkan_strided_overlap(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t,
                            uint64_t) {
  fail("[vulkan] ", kNotBuilt);
}
uint32_t vulkan_simt_gemm_splits(uint32_t, uint32_t, uint32_t, uint32_t, uint64_t, uint32_t) {
  fail("[vulkan] ", kNotBuilt);
}

}  // namespace dm
