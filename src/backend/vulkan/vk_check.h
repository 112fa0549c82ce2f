// VK_CHECK: every Vulkan call that returns a VkResult goes through it. A failure throws
// dm::Error with one line: "[vulkan] vkAllocateMemory: VK_ERROR_OUT_OF_DEVICE_MEMORY (out of
// device memory) at context.cpp:120".
#pragma once

#include <vulkan/vulkan.h>

namespace dm::vk {

const char* result_name(VkResult r);
[[noreturn]] void check_failed(VkResult r, const char* call, const char* file, int line);

}  // namespace dm::vk

#define VK_CHECK(call)                                                             \
  do {                                                                             \
    const VkResult vk_check_result_ = (call);                                      \
    if (vk_check_result_ != VK_SUCCESS)                                            \
      ::dm::vk::check_failed(vk_check_result_, #call, __FILE__, __LINE__);         \
  } while (0)
