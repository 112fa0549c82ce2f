// The first two of the Vulkan layer's four nouns: the context (instance, the chosen physical
// device, its logical device and compute queue, what it can do) and the buffer (one VkBuffer
// with its own memory). Everything Vulkan stays under src/backend/vulkan/.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "backend/vulkan/vk_check.h"
#include "core/tensor.h"

namespace dm::vk {

// What the shaders and the host code may rely on; printed by `decimamba info`.
struct Caps {
  std::string name;
  std::string type;  // "discrete", "integrated", "virtual", "cpu", "other"
  uint32_t api_version = 0, driver_version = 0, vendor_id = 0, device_id = 0;
  uint32_t subgroup_size = 0;
  VkSubgroupFeatureFlags subgroup_ops = 0;
  bool subgroup_in_compute = false;
  uint32_t max_shared_bytes = 0;
  uint32_t max_push_bytes = 0;
  uint32_t max_wg_invocations = 0;
  uint32_t max_wg_count[3] = {0, 0, 0};
  VkDeviceSize min_storage_offset_align = 0;
  VkDeviceSize max_storage_range = 0;
  uint32_t max_storage_buffers = 0;  // per shader stage (maxPerStageDescriptorStorageBuffers)
  VkDeviceSize max_alloc = 0;
  VkDeviceSize device_local_bytes = 0;
  bool storage_16bit = false;    // storageBuffer16BitAccess
  bool float16 = false;          // shaderFloat16
  bool int8 = false;             // shaderInt8
  bool cooperative_matrix = false;  // VK_KHR_cooperative_matrix or VK_NV_cooperative_matrix
  // The tensor-core GEMM (shaders/gemm_coopmat.comp) can run: VK_NV_cooperative_matrix with a
  // 16×16×16 fp16 × fp16 → fp32 subgroup configuration, shaderFloat16, vulkanMemoryModel
  // (Vulkan 1.2) and subgroups of 32. Enabled at device creation when true; DM_VULKAN_COOPMAT=0
  // turns it off (the SIMT GEMM then runs everywhere).
  bool gemm_coopmat = false;
  bool timestamps = false;       // compute queue has timestamp bits
  // SMs / CUs where VK_NV_shader_sm_builtins or VK_AMD_shader_core_properties reports them, else
  // 0 (unknown): the GEMMs' wave counts (vulkan_gemm.cpp).
  uint32_t compute_units = 0;
  float timestamp_period_ns = 1.f;

  std::string describe() const;  // one line of capabilities
};

// The Vulkan devices of this machine in the order device indices use: discrete, integrated,
// virtual, CPU (lavapipe), so `--device 0` is the fastest kind. Empty with `why` set when there
// is no loader, no driver or no device.
struct DeviceEntry {
  int index;
  Caps caps;
};
std::vector<DeviceEntry> enumerate_devices(std::string* why);

class Context {
 public:
  // Validation: DM_VULKAN_VALIDATION=1 in the environment turns on the Khronos validation layer
  // (with synchronization validation); every message is kept and reported by take_messages().
  explicit Context(int device_index);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  VkInstance instance = VK_NULL_HANDLE;
  VkPhysicalDevice phys = VK_NULL_HANDLE;
  VkDevice device = VK_NULL_HANDLE;
  VkQueue queue = VK_NULL_HANDLE;
  uint32_t queue_family = 0;
  Caps caps;
  VkPhysicalDeviceMemoryProperties mem_props{};
  bool validation = false;
  // DM_VULKAN_PIPELINE_STATS=1 where the device has VK_KHR_pipeline_executable_properties: every
  // pipeline made prints the driver's statistics of its code (NVIDIA: registers, shared memory,
  // spills) to stderr, one line each (pipeline.cpp).
  bool pipeline_stats = false;

  // A memory type with every bit of `need` (fails otherwise), preferring ones with `prefer`.
  uint32_t memory_type(uint32_t type_bits, VkMemoryPropertyFlags need,
                       VkMemoryPropertyFlags prefer) const;

  // Set by the recorder: frees a buffer's handles once the work enqueued so far has run (a
  // Buffer may be dropped while a dispatch that reads it is still in flight).
  std::function<void(VkBuffer, VkDeviceMemory)> deferred_free;

  // Validation messages since the last call.
  std::vector<std::string> take_messages();
  void add_message(std::string m);

 private:
  void destroy();
  VkDebugUtilsMessengerEXT messenger_ = VK_NULL_HANDLE;
  std::mutex msg_mutex_;
  std::vector<std::string> messages_;
};

enum class BufferKind { Device, Upload, Readback };

// A Buffer of this backend: device-local storage buffers, or host-visible staging.
class VulkanBuffer final : public Buffer {
 public:
  VulkanBuffer(Context& ctx, size_t bytes, BufferKind kind);
  ~VulkanBuffer() override;

  Context& ctx;
  VkBuffer buffer = VK_NULL_HANDLE;
  VkDeviceMemory memory = VK_NULL_HANDLE;
  // bytes() rounded up to 16: whole 32-bit words, so shaders reading 16-bit data as words
  // never step past the end.
  VkDeviceSize vk_size = 0;
  void* mapped = nullptr;  // staging only
  BufferKind kind;
};

}  // namespace dm::vk
