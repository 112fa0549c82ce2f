#include "backend/vulkan/vk_check.h"

#include <string>

#include "core/error.h"

namespace dm::vk {

const char* result_name(VkResult r) {
  switch (r) {
#define DM_VK_CASE(x) case x: return #x;
    DM_VK_CASE(VK_SUCCESS)
    DM_VK_CASE(VK_NOT_READY)
    DM_VK_CASE(VK_TIMEOUT)
    DM_VK_CASE(VK_EVENT_SET)
    DM_VK_CASE(VK_EVENT_RESET)
    DM_VK_CASE(VK_INCOMPLETE)
    DM_VK_CASE(VK_ERROR_OUT_OF_HOST_MEMORY)
    DM_VK_CASE(VK_ERROR_OUT_OF_DEVICE_MEMORY)
    DM_VK_CASE(VK_ERROR_INITIALIZATION_FAILED)
    DM_VK_CASE(VK_ERROR_DEVICE_LOST)
    DM_VK_CASE(VK_ERROR_MEMORY_MAP_FAILED)
    DM_VK_CASE(VK_ERROR_LAYER_NOT_PRESENT)
    DM_VK_CASE(VK_ERROR_EXTENSION_NOT_PRESENT)
    DM_VK_CASE(VK_ERROR_FEATURE_NOT_PRESENT)
    DM_VK_CASE(VK_ERROR_INCOMPATIBLE_DRIVER)
    DM_VK_CASE(VK_ERROR_TOO_MANY_OBJECTS)
    DM_VK_CASE(VK_ERROR_FORMAT_NOT_SUPPORTED)
    DM_VK_CASE(VK_ERROR_FRAGMENTED_POOL)
    DM_VK_CASE(VK_ERROR_UNKNOWN)
    DM_VK_CASE(VK_ERROR_OUT_OF_POOL_MEMORY)
    DM_VK_CASE(VK_ERROR_INVALID_EXTERNAL_HANDLE)
    DM_VK_CASE(VK_ERROR_FRAGMENTATION)
    DM_VK_CASE(VK_ERROR_INVALID_OPAQUE_CAPTURE_ADDRESS)
    DM_VK_CASE(VK_PIPELINE_COMPILE_REQUIRED)
#undef DM_VK_CASE
    default: return "VkResult(unknown)";
  }
}

void check_failed(VkResult r, const char* call, const char* file, int line) {
  std::string fn(call);
  if (const size_t paren = fn.find('('); paren != std::string::npos) fn.resize(paren);
  const char* hint = "";
  switch (r) {
    case VK_ERROR_OUT_OF_DEVICE_MEMORY: hint = " (out of device memory: try a smaller model or context)"; break;
    case VK_ERROR_OUT_OF_HOST_MEMORY: hint = " (out of host memory)"; break;
    case VK_ERROR_DEVICE_LOST: hint = " (device lost: the driver reset the GPU or a kernel faulted)"; break;
    case VK_ERROR_INCOMPATIBLE_DRIVER: hint = " (no Vulkan driver for this device; see the README's troubleshooting)"; break;
    case VK_ERROR_INITIALIZATION_FAILED: hint = " (driver initialisation failed)"; break;
    default: break;
  }
  std::string f(file);
  if (const size_t slash = f.find_last_of('/'); slash != std::string::npos) f = f.substr(slash + 1);
  fail("[vulkan] ", fn, ": ", result_name(r), hint, " at ", f, ":", line);
}

}  // namespace dm::vk
