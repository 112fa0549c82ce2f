#include "backend/vulkan/context.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "core/env.h"
#include "core/error.h"

namespace dm::vk {
namespace {

bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v && *v && std::strcmp(v, "0") != 0;
}

const char* kValidationLayer = "VK_LAYER_KHRONOS_validation";

bool has_layer(const char* name) {
  uint32_t n = 0;
  if (vkEnumerateInstanceLayerProperties(&n, nullptr) != VK_SUCCESS) return false;
  std::vector<VkLayerProperties> layers(n);
  if (vkEnumerateInstanceLayerProperties(&n, layers.data()) != VK_SUCCESS) return false;
  for (const auto& l : layers)
    if (std::strcmp(l.layerName, name) == 0) return true;
  return false;
}

VKAPI_ATTR VkBool32 VKAPI_CALL debug_callback(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                                              VkDebugUtilsMessageTypeFlagsEXT,
                                              const VkDebugUtilsMessengerCallbackDataEXT* data,
                                              void* user) {
  if (severity >= VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT && data && data->pMessage)
    static_cast<Context*>(user)->add_message(data->pMessage);
  return VK_FALSE;
}

uint32_t instance_api_version() {
  uint32_t v = VK_API_VERSION_1_0;
  auto enumerate = reinterpret_cast<PFN_vkEnumerateInstanceVersion>(
      vkGetInstanceProcAddr(nullptr, "vkEnumerateInstanceVersion"));
  if (enumerate) enumerate(&v);
  return v;
}

// Returns VK_NULL_HANDLE and sets *why when no instance can be made (no loader/driver).
VkInstance make_instance(bool validation, Context* for_messages, VkDebugUtilsMessengerEXT* messenger,
                         std::string* why) {
  const uint32_t loader = instance_api_version();
  if (loader < VK_API_VERSION_1_1) {
    if (why) *why = "the Vulkan loader is older than 1.1";
    return VK_NULL_HANDLE;
  }
  VkApplicationInfo app{VK_STRUCTURE_TYPE_APPLICATION_INFO};
  app.pApplicationName = "decimamba";
  app.pEngineName = "decimamba";
  app.apiVersion = std::min<uint32_t>(loader, VK_API_VERSION_1_3);

  std::vector<const char*> layers, exts;
  VkValidationFeaturesEXT features{VK_STRUCTURE_TYPE_VALIDATION_FEATURES_EXT};
  const VkValidationFeatureEnableEXT enables[] = {
      VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT};
  VkDebugUtilsMessengerCreateInfoEXT dbg{VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT};
  dbg.messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                        VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
  dbg.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                    VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT;
  dbg.pfnUserCallback = debug_callback;
  dbg.pUserData = for_messages;

  VkInstanceCreateInfo ci{VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
  ci.pApplicationInfo = &app;
  if (validation) {
    if (!has_layer(kValidationLayer))
      fail("[vulkan] DM_VULKAN_VALIDATION is set but ", kValidationLayer,
           " is not installed (Debian: apt-get install vulkan-validationlayers)");
    layers.push_back(kValidationLayer);
    exts.push_back(VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
    exts.push_back(VK_EXT_VALIDATION_FEATURES_EXTENSION_NAME);
    features.enabledValidationFeatureCount = 1;
    features.pEnabledValidationFeatures = enables;
    features.pNext = &dbg;
    ci.pNext = &features;
  }
  ci.enabledLayerCount = uint32_t(layers.size());
  ci.ppEnabledLayerNames = layers.data();
  ci.enabledExtensionCount = uint32_t(exts.size());
  ci.ppEnabledExtensionNames = exts.data();

  VkInstance inst = VK_NULL_HANDLE;
  const VkResult r = vkCreateInstance(&ci, nullptr, &inst);
  if (r != VK_SUCCESS) {
    if (validation) VK_CHECK(r);  // asked for explicitly: say why it failed
    if (why) *why = std::string("vkCreateInstance: ") + result_name(r);
    return VK_NULL_HANDLE;
  }
  if (validation && messenger) {
    auto create = reinterpret_cast<PFN_vkCreateDebugUtilsMessengerEXT>(
        vkGetInstanceProcAddr(inst, "vkCreateDebugUtilsMessengerEXT"));
    if (create) VK_CHECK(create(inst, &dbg, nullptr, messenger));
  }
  return inst;
}

int type_rank(VkPhysicalDeviceType t) {
  switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return 0;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return 1;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return 2;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return 3;
    default: return 4;
  }
}

const char* type_name(VkPhysicalDeviceType t) {
  switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual";
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "cpu";
    default: return "other";
  }
}

bool has_device_ext(VkPhysicalDevice pd, const char* name) {
  uint32_t n = 0;
  VK_CHECK(vkEnumerateDeviceExtensionProperties(pd, nullptr, &n, nullptr));
  std::vector<VkExtensionProperties> exts(n);
  VK_CHECK(vkEnumerateDeviceExtensionProperties(pd, nullptr, &n, exts.data()));
  for (const auto& e : exts)
    if (std::strcmp(e.extensionName, name) == 0) return true;
  return false;
}

// The first queue family with compute (on discrete GPUs the graphics + compute family; a
// compute-only family is the asynchronous compute engine). DM_VULKAN_QUEUE=compute picks the
// first compute-only family where there is one (for comparisons; a dependent dispatch's cost
// may differ between the engines).
int compute_family(VkPhysicalDevice pd, uint32_t* timestamp_bits) {
  uint32_t n = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, nullptr);
  std::vector<VkQueueFamilyProperties> fams(n);
  vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, fams.data());
  const char* want = std::getenv("DM_VULKAN_QUEUE");
  if (want && *want && std::strcmp(want, "compute") != 0)
    fail("[vulkan] DM_VULKAN_QUEUE=", want, ": want compute (a compute-only queue family)");
  const bool compute_only = want && *want;
  int any = -1;
  for (uint32_t i = 0; i < n; ++i) {
    if (!(fams[i].queueFlags & VK_QUEUE_COMPUTE_BIT)) continue;
    if (any < 0) any = int(i);
    if (compute_only && !(fams[i].queueFlags & VK_QUEUE_GRAPHICS_BIT)) {
      any = int(i);
      break;
    }
  }
  if (any >= 0 && timestamp_bits) *timestamp_bits = fams[any].timestampValidBits;
  return any;
}

bool coopmat_usable(VkInstance inst, VkPhysicalDevice pd, const Caps& c);

Caps query_caps(VkInstance inst, VkPhysicalDevice pd) {
  Caps c;
  VkPhysicalDeviceProperties props;
  vkGetPhysicalDeviceProperties(pd, &props);
  c.name = props.deviceName;
  c.type = type_name(props.deviceType);
  c.api_version = props.apiVersion;
  c.driver_version = props.driverVersion;
  c.vendor_id = props.vendorID;
  c.device_id = props.deviceID;
  c.max_shared_bytes = props.limits.maxComputeSharedMemorySize;
  c.max_push_bytes = props.limits.maxPushConstantsSize;
  c.max_wg_invocations = props.limits.maxComputeWorkGroupInvocations;
  for (int i = 0; i < 3; ++i) c.max_wg_count[i] = props.limits.maxComputeWorkGroupCount[i];
  c.min_storage_offset_align = props.limits.minStorageBufferOffsetAlignment;
  c.max_storage_range = props.limits.maxStorageBufferRange;
  c.max_storage_buffers = props.limits.maxPerStageDescriptorStorageBuffers;
  c.timestamp_period_ns = props.limits.timestampPeriod;

  VkPhysicalDeviceSubgroupProperties sg{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
  VkPhysicalDeviceMaintenance3Properties m3{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES};
  sg.pNext = &m3;
  // Compute units, where a vendor extension tells them (core Vulkan does not): NVIDIA's SMs,
  // AMD's CUs (engines × arrays × CUs per array). Intel and lavapipe: unknown (0).
  VkPhysicalDeviceShaderSMBuiltinsPropertiesNV smp{
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_SM_BUILTINS_PROPERTIES_NV};
  VkPhysicalDeviceShaderCorePropertiesAMD amd{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_CORE_PROPERTIES_AMD};
  const bool has_sm = has_device_ext(pd, VK_NV_SHADER_SM_BUILTINS_EXTENSION_NAME);
  const bool has_amd = has_device_ext(pd, VK_AMD_SHADER_CORE_PROPERTIES_EXTENSION_NAME);
  if (has_sm) {
    smp.pNext = m3.pNext;
    m3.pNext = &smp;
  }
  if (has_amd) {
    amd.pNext = m3.pNext;
    m3.pNext = &amd;
  }
  VkPhysicalDeviceProperties2 p2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
  p2.pNext = &sg;
  vkGetPhysicalDeviceProperties2(pd, &p2);
  if (has_sm) c.compute_units = smp.shaderSMCount;
  else if (has_amd)
    c.compute_units = amd.shaderEngineCount * amd.shaderArraysPerEngineCount *
                      amd.computeUnitsPerShaderArray;
  c.subgroup_size = sg.subgroupSize;
  c.subgroup_ops = sg.supportedOperations;
  c.subgroup_in_compute = (sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) != 0;
  c.max_alloc = m3.maxMemoryAllocationSize;

  const bool f16i8 = props.apiVersion >= VK_API_VERSION_1_2 ||
                     has_device_ext(pd, VK_KHR_SHADER_FLOAT16_INT8_EXTENSION_NAME);
  VkPhysicalDevice16BitStorageFeatures s16{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES};
  VkPhysicalDeviceShaderFloat16Int8Features fi{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES};
  if (f16i8) s16.pNext = &fi;
  VkPhysicalDeviceFeatures2 f2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
  f2.pNext = &s16;
  vkGetPhysicalDeviceFeatures2(pd, &f2);
  c.storage_16bit = s16.storageBuffer16BitAccess;
  c.float16 = f16i8 && fi.shaderFloat16;
  c.int8 = f16i8 && fi.shaderInt8;
  c.cooperative_matrix = has_device_ext(pd, "VK_KHR_cooperative_matrix") ||
                         has_device_ext(pd, "VK_NV_cooperative_matrix");
  c.gemm_coopmat = coopmat_usable(inst, pd, c);

  uint32_t ts_bits = 0;
  compute_family(pd, &ts_bits);
  c.timestamps = ts_bits > 0 && props.limits.timestampPeriod > 0.f;

  VkPhysicalDeviceMemoryProperties mp;
  vkGetPhysicalDeviceMemoryProperties(pd, &mp);
  for (uint32_t i = 0; i < mp.memoryHeapCount; ++i)
    if (mp.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)
      c.device_local_bytes = std::max(c.device_local_bytes, mp.memoryHeaps[i].size);
  return c;
}

// See Caps::gemm_coopmat. Only structures of extensions / versions the device has are chained.
bool coopmat_usable(VkInstance inst, VkPhysicalDevice pd, const Caps& c) {
  // Read first: a malformed value fails on every device, not only where the extension is.
  if (env_choice("vulkan", "DM_VULKAN_COOPMAT", {"1", "0"}) == 1) return false;
  if (!c.float16 || c.subgroup_size != 32 || c.api_version < VK_API_VERSION_1_2) return false;
  if (!has_device_ext(pd, VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME)) return false;
  VkPhysicalDeviceCooperativeMatrixFeaturesNV cm{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV};
  VkPhysicalDeviceVulkanMemoryModelFeatures mm{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_MEMORY_MODEL_FEATURES};
  cm.pNext = &mm;
  VkPhysicalDeviceFeatures2 f2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
  f2.pNext = &cm;
  vkGetPhysicalDeviceFeatures2(pd, &f2);
  if (!cm.cooperativeMatrix || !mm.vulkanMemoryModel) return false;
  auto props_fn = reinterpret_cast<PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesNV>(
      vkGetInstanceProcAddr(inst, "vkGetPhysicalDeviceCooperativeMatrixPropertiesNV"));
  if (!props_fn) return false;
  uint32_t n = 0;
  if (props_fn(pd, &n, nullptr) != VK_SUCCESS || n == 0) return false;
  std::vector<VkCooperativeMatrixPropertiesNV> props(n, {VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_NV});
  if (props_fn(pd, &n, props.data()) != VK_SUCCESS) return false;
  for (const auto& q : props)
    if (q.MSize == 16 && q.NSize == 16 && q.KSize == 16 && q.AType == VK_COMPONENT_TYPE_FLOAT16_NV &&
        q.BType == VK_COMPONENT_TYPE_FLOAT16_NV && q.CType == VK_COMPONENT_TYPE_FLOAT32_NV &&
        q.DType == VK_COMPONENT_TYPE_FLOAT32_NV && q.scope == VK_SCOPE_SUBGROUP_NV)
      return true;
  return false;
}

// Physical devices with a compute queue, in index order (see enumerate_devices).
std::vector<VkPhysicalDevice> sorted_devices(VkInstance inst) {
  uint32_t n = 0;
  VK_CHECK(vkEnumeratePhysicalDevices(inst, &n, nullptr));
  std::vector<VkPhysicalDevice> pds(n);
  if (n) VK_CHECK(vkEnumeratePhysicalDevices(inst, &n, pds.data()));
  std::vector<VkPhysicalDevice> out;
  for (VkPhysicalDevice pd : pds) {
    VkPhysicalDeviceProperties props;
    vkGetPhysicalDeviceProperties(pd, &props);
    if (props.apiVersion >= VK_API_VERSION_1_1 && compute_family(pd, nullptr) >= 0) out.push_back(pd);
  }
  std::stable_sort(out.begin(), out.end(), [](VkPhysicalDevice a, VkPhysicalDevice b) {
    VkPhysicalDeviceProperties pa, pb;
    vkGetPhysicalDeviceProperties(a, &pa);
    vkGetPhysicalDeviceProperties(b, &pb);
    return type_rank(pa.deviceType) < type_rank(pb.deviceType);
  });
  return out;
}

std::string version_string(uint32_t v) {
  return std::to_string(VK_API_VERSION_MAJOR(v)) + "." + std::to_string(VK_API_VERSION_MINOR(v)) +
         "." + std::to_string(VK_API_VERSION_PATCH(v));
}

}  // namespace

std::string Caps::describe() const {
  std::ostringstream os;
  os << name << " (" << type << ", Vulkan " << version_string(api_version) << "): subgroup "
     << subgroup_size << (subgroup_in_compute ? "" : " (not in compute)") << " ops 0x" << std::hex
     << subgroup_ops << std::dec << ", shared " << max_shared_bytes / 1024 << " KiB, push "
     << max_push_bytes << " B, max buffer range " << (max_storage_range >> 20) << " MiB, max alloc "
     << (max_alloc >> 20) << " MiB, device-local " << (device_local_bytes >> 20) << " MiB, 16-bit storage "
     << (storage_16bit ? "yes" : "no") << ", fp16 " << (float16 ? "yes" : "no") << ", int8 "
     << (int8 ? "yes" : "no") << ", cooperative matrix " << (cooperative_matrix ? "yes" : "no")
     << " (tensor-core gemm " << (gemm_coopmat ? "yes" : "no") << ")"
     << ", timestamps " << (timestamps ? "yes" : "no") << ", compute units "
     << (compute_units ? std::to_string(compute_units) : std::string("unknown"));
  return os.str();
}

std::vector<DeviceEntry> enumerate_devices(std::string* why) {
  std::vector<DeviceEntry> out;
  VkInstance inst = VK_NULL_HANDLE;
  try {
    inst = make_instance(false, nullptr, nullptr, why);
    if (!inst) return out;
    const auto pds = sorted_devices(inst);
    for (size_t i = 0; i < pds.size(); ++i) out.push_back({int(i), query_caps(inst, pds[i])});
    if (out.empty() && why) *why = "no Vulkan 1.1 device with a compute queue";
  } catch (const Error& e) {
    if (why) *why = e.what();
    out.clear();
  }
  if (inst) vkDestroyInstance(inst, nullptr);
  return out;
}

Context::Context(int device_index) {
  validation = env_flag("DM_VULKAN_VALIDATION");
  std::string why;
  instance = make_instance(validation, this, &messenger_, &why);
  if (!instance) fail("[vulkan] no Vulkan instance: ", why);
  try {
    const auto pds = sorted_devices(instance);
    if (pds.empty()) fail("[vulkan] no Vulkan 1.1 device with a compute queue");
    if (device_index < 0 || size_t(device_index) >= pds.size())
      fail("[vulkan] device ", device_index, " does not exist: this machine has ", pds.size(),
           " Vulkan device(s), 0..", pds.size() - 1, " (see `decimamba info`)");
    phys = pds[size_t(device_index)];
    caps = query_caps(instance, phys);
    // Testing hook: pretend bindings address at most this many bytes, so the paths that split
    // oversized tensors run on small data.
    if (const char* v = std::getenv("DM_VULKAN_MAX_BINDING_BYTES"); v && *v)
      caps.max_storage_range = std::min<VkDeviceSize>(caps.max_storage_range, std::strtoull(v, nullptr, 10));
    vkGetPhysicalDeviceMemoryProperties(phys, &mem_props);
    queue_family = uint32_t(compute_family(phys, nullptr));

    const float prio = 1.f;
    VkDeviceQueueCreateInfo qci{VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO};
    qci.queueFamilyIndex = queue_family;
    qci.queueCount = 1;
    qci.pQueuePriorities = &prio;
    // No optional feature is needed: the shaders read 16-bit weights as 32-bit words and use
    // neither subgroup operations nor fp16 arithmetic, so every Vulkan 1.1 device runs them.
    // Where the tensor-core GEMM can run (Caps::gemm_coopmat) its extension and features are
    // enabled.
    VkDeviceCreateInfo dci{VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO};
    dci.queueCreateInfoCount = 1;
    dci.pQueueCreateInfos = &qci;
    VkPhysicalDeviceCooperativeMatrixFeaturesNV cm{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV};
    VkPhysicalDeviceVulkanMemoryModelFeatures mm{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_MEMORY_MODEL_FEATURES};
    VkPhysicalDeviceShaderFloat16Int8Features fi{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES};
    VkPhysicalDeviceFeatures2 f2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
    VkPhysicalDevicePipelineExecutablePropertiesFeaturesKHR pe{
        VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PIPELINE_EXECUTABLE_PROPERTIES_FEATURES_KHR};
    std::vector<const char*> dev_exts;
    void** tail = &f2.pNext;  // the end of the feature chain
    if (caps.gemm_coopmat) {
      cm.cooperativeMatrix = VK_TRUE;
      mm.vulkanMemoryModel = VK_TRUE;
      fi.shaderFloat16 = VK_TRUE;
      *tail = &cm;
      cm.pNext = &mm;
      mm.pNext = &fi;
      tail = &fi.pNext;
      dev_exts.push_back(VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME);
    }
    if (env_flag("DM_VULKAN_PIPELINE_STATS")) {
      if (has_device_ext(phys, VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME)) {
        pe.pipelineExecutableInfo = VK_TRUE;
        *tail = &pe;
        tail = &pe.pNext;
        dev_exts.push_back(VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME);
        pipeline_stats = true;
      } else {
        std::fprintf(stderr, "decimamba: DM_VULKAN_PIPELINE_STATS: %s lacks %s\n",
                     caps.name.c_str(), VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME);
      }
    }
    if (f2.pNext) dci.pNext = &f2;
    dci.enabledExtensionCount = uint32_t(dev_exts.size());
    dci.ppEnabledExtensionNames = dev_exts.data();
    VK_CHECK(vkCreateDevice(phys, &dci, nullptr, &device));
    vkGetDeviceQueue(device, queue_family, 0, &queue);
  } catch (...) {
    destroy();
    throw;
  }
}

Context::~Context() { destroy(); }

void Context::destroy() {
  if (device) {
    vkDeviceWaitIdle(device);
    vkDestroyDevice(device, nullptr);
    device = VK_NULL_HANDLE;
  }
  if (messenger_) {
    auto destroy = reinterpret_cast<PFN_vkDestroyDebugUtilsMessengerEXT>(
        vkGetInstanceProcAddr(instance, "vkDestroyDebugUtilsMessengerEXT"));
    if (destroy) destroy(instance, messenger_, nullptr);
    messenger_ = VK_NULL_HANDLE;
  }
  if (instance) {
    vkDestroyInstance(instance, nullptr);
    instance = VK_NULL_HANDLE;
  }
}

uint32_t Context::memory_type(uint32_t type_bits, VkMemoryPropertyFlags need,
                              VkMemoryPropertyFlags prefer) const {
  int best = -1;
  for (uint32_t i = 0; i < mem_props.memoryTypeCount; ++i) {
    if (!(type_bits & (1u << i))) continue;
    const VkMemoryPropertyFlags f = mem_props.memoryTypes[i].propertyFlags;
    if ((f & need) != need) continue;
    if ((f & prefer) == prefer) return i;
    if (best < 0) best = int(i);
  }
  if (best < 0) fail("[vulkan] no memory type with property flags 0x", std::hex, need);
  return uint32_t(best);
}

std::vector<std::string> Context::take_messages() {
  std::lock_guard<std::mutex> lock(msg_mutex_);
  std::vector<std::string> out;
  out.swap(messages_);
  return out;
}

void Context::add_message(std::string m) {
  std::lock_guard<std::mutex> lock(msg_mutex_);
  messages_.push_back(std::move(m));
}

VulkanBuffer::VulkanBuffer(Context& c, size_t bytes, BufferKind k)
    : Buffer(bytes), ctx(c), kind(k) {
  vk_size = std::max<VkDeviceSize>(16, (VkDeviceSize(bytes) + 15) / 16 * 16);
  VkBufferCreateInfo bci{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
  bci.size = vk_size;
  bci.usage = VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
  if (kind == BufferKind::Device) bci.usage |= VK_BUFFER_USAGE_STORAGE_BUFFER_BIT;
  bci.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  VK_CHECK(vkCreateBuffer(ctx.device, &bci, nullptr, &buffer));
  try {
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(ctx.device, buffer, &req);
    VkMemoryAllocateInfo mai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
    mai.allocationSize = req.size;
    switch (kind) {
      case BufferKind::Device:
        mai.memoryTypeIndex = ctx.memory_type(req.memoryTypeBits, 0, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
        break;
      case BufferKind::Upload:
        mai.memoryTypeIndex = ctx.memory_type(
            req.memoryTypeBits, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT, 0);
        break;
      case BufferKind::Readback:
        mai.memoryTypeIndex = ctx.memory_type(
            req.memoryTypeBits, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT,
            VK_MEMORY_PROPERTY_HOST_CACHED_BIT);
        break;
    }
    // Past maxMemoryAllocationSize an allocation may fail (NVIDIA reports 4 GiB and allocates
    // more): try, and name the limit when it does fail.
    const VkResult r = vkAllocateMemory(ctx.device, &mai, nullptr, &memory);
    if (r != VK_SUCCESS && ctx.caps.max_alloc && req.size > ctx.caps.max_alloc)
      fail("[vulkan] a buffer of ", bytes, " bytes exceeds ", ctx.caps.name,
           "'s maxMemoryAllocationSize of ", ctx.caps.max_alloc, " bytes (", result_name(r), ")");
    VK_CHECK(r);
    VK_CHECK(vkBindBufferMemory(ctx.device, buffer, memory, 0));
    if (kind != BufferKind::Device) VK_CHECK(vkMapMemory(ctx.device, memory, 0, VK_WHOLE_SIZE, 0, &mapped));
  } catch (...) {
    if (memory) vkFreeMemory(ctx.device, memory, nullptr);
    vkDestroyBuffer(ctx.device, buffer, nullptr);
    throw;
  }
}

VulkanBuffer::~VulkanBuffer() {
  if (mapped) vkUnmapMemory(ctx.device, memory);
  if (kind == BufferKind::Device && ctx.deferred_free) {
    ctx.deferred_free(buffer, memory);
    return;
  }
  vkDestroyBuffer(ctx.device, buffer, nullptr);
  vkFreeMemory(ctx.device, memory, nullptr);
}

}  // namespace dm::vk
