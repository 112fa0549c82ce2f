// What a dependent dispatch costs on Vulkan with and without a pipeline barrier (not part of
// the build). A 130m decode step is ~75 dependent dispatches and bench_dispatch measured ~4 µs
// of barrier each on an H100 (CUDA: 1.4 µs a dependent kernel in a graph, with PDL). This
// probe times a chain of n dispatches of tools/gpu/probe/vk_handoff.comp in one command buffer,
// median wall time of 30 submits, cost per hop = the slope between n = 16 and n = 256:
//   barrier: a compute→compute pipeline barrier between every two dispatches;
//   handoff: no barriers; each dispatch's work groups wait in the shader for the one before
//            (a device-scope counter, acquire / release of the Vulkan memory model). This relies
//            on what Vulkan does not promise: that the device launches a dispatch's work groups
//            only after every group of the dispatches before it has been launched (else a
//            waiting group can hold the slot a group it waits for needs). A wait past the spin
//            limit gives up and is reported (never a hang);
//   grid:    one dispatch that runs every hop itself with the same counters between hops (an
//            in-shader grid barrier: what one persistent dispatch per decode step would pay).
// Both chains end with the data checked (every hop adds one). Build and run:
//   glslc --target-env=vulkan1.2 -O tools/gpu/probe/vk_handoff.comp -o .gpupack-probe/vk_handoff.spv
//   g++ -O2 -std=c++17 tools/gpu/probe/vk_handoff_probe.cpp -o .gpupack-probe/vk_handoff_probe -lvulkan
//   ../shared/gpu-host/bundle.sh .gpupack-probe/.gpu .gpupack-probe/vk_handoff_probe
// and on the GPU host (.gpu's env.sh points the loader at NVIDIA's EGL driver entry):
//   cd .gpupack-probe/.gpu && source ./env.sh && ./vk_handoff_probe ../vk_handoff.spv
#include <vulkan/vulkan.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <vector>

#define VKC(x)                                                            \
  do {                                                                    \
    VkResult r_ = (x);                                                    \
    if (r_ != VK_SUCCESS) {                                               \
      std::fprintf(stderr, "vk_handoff_probe: %s = %d\n", #x, int(r_)); \
      std::exit(1);                                                       \
    }                                                                     \
  } while (0)

namespace {

struct Push {
  uint32_t hop, nwg, mode, spin_limit;
};

struct Buf {
  VkBuffer buf;
  VkDeviceMemory mem;
  void* map;
};

VkDevice dev;
VkPhysicalDevice phys;

Buf make_buffer(size_t bytes) {
  Buf b{};
  VkBufferCreateInfo bi{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
  bi.size = bytes;
  bi.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
  VKC(vkCreateBuffer(dev, &bi, nullptr, &b.buf));
  VkMemoryRequirements req;
  vkGetBufferMemoryRequirements(dev, b.buf, &req);
  VkPhysicalDeviceMemoryProperties mp;
  vkGetPhysicalDeviceMemoryProperties(phys, &mp);
  // Host-visible and device-local where the device has it (a BAR heap), else host-visible.
  int idx = -1;
  for (int want = 0; want < 2 && idx < 0; ++want)
    for (uint32_t i = 0; i < mp.memoryTypeCount; ++i) {
      const VkMemoryPropertyFlags f = mp.memoryTypes[i].propertyFlags;
      const bool host = (f & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT) &&
                        (f & VK_MEMORY_PROPERTY_HOST_COHERENT_BIT);
      const bool local = f & VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
      if ((req.memoryTypeBits & (1u << i)) && host && (want == 1 || local)) {
        idx = int(i);
        break;
      }
    }
  if (idx < 0) {
    std::fprintf(stderr, "vk_handoff_probe: no host-visible memory\n");
    std::exit(1);
  }
  VkMemoryAllocateInfo ai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
  ai.allocationSize = req.size;
  ai.memoryTypeIndex = uint32_t(idx);
  VKC(vkAllocateMemory(dev, &ai, nullptr, &b.mem));
  VKC(vkBindBufferMemory(dev, b.buf, b.mem, 0));
  VKC(vkMapMemory(dev, b.mem, 0, bytes, 0, &b.map));
  std::memset(b.map, 0, bytes);
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  const char* spv_path = argc > 1 ? argv[1] : "vk_handoff.spv";
  std::ifstream f(spv_path, std::ios::binary);
  if (!f) {
    std::fprintf(stderr, "vk_handoff_probe: cannot read %s\n", spv_path);
    return 1;
  }
  std::vector<char> spv((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());

  VkApplicationInfo app{VK_STRUCTURE_TYPE_APPLICATION_INFO};
  app.apiVersion = VK_API_VERSION_1_2;
  VkInstanceCreateInfo ici{VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
  ici.pApplicationInfo = &app;
  VkInstance inst;
  VKC(vkCreateInstance(&ici, nullptr, &inst));
  uint32_t n = 0;
  VKC(vkEnumeratePhysicalDevices(inst, &n, nullptr));
  if (n == 0) {
    std::fprintf(stderr, "vk_handoff_probe: no Vulkan device\n");
    return 1;
  }
  std::vector<VkPhysicalDevice> pds(n);
  VKC(vkEnumeratePhysicalDevices(inst, &n, pds.data()));
  phys = pds[0];
  VkPhysicalDeviceProperties props;
  vkGetPhysicalDeviceProperties(phys, &props);
  uint32_t qn = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(phys, &qn, nullptr);
  std::vector<VkQueueFamilyProperties> qf(qn);
  vkGetPhysicalDeviceQueueFamilyProperties(phys, &qn, qf.data());
  uint32_t qfi = 0;
  while (qfi < qn && !(qf[qfi].queueFlags & VK_QUEUE_COMPUTE_BIT)) ++qfi;
  const float prio = 1.f;
  VkDeviceQueueCreateInfo qci{VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO};
  qci.queueFamilyIndex = qfi;
  qci.queueCount = 1;
  qci.pQueuePriorities = &prio;
  VkPhysicalDeviceVulkan12Features f12{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
  f12.vulkanMemoryModel = VK_TRUE;
  f12.vulkanMemoryModelDeviceScope = VK_TRUE;
  VkDeviceCreateInfo dci{VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO};
  dci.pNext = &f12;
  dci.queueCreateInfoCount = 1;
  dci.pQueueCreateInfos = &qci;
  VKC(vkCreateDevice(phys, &dci, nullptr, &dev));
  VkQueue q;
  vkGetDeviceQueue(dev, qfi, 0, &q);
  std::printf("device: %s\n", props.deviceName);

  constexpr uint32_t kMaxHops = 256, kMaxWg = 1024;
  Buf data = make_buffer(2 * kMaxWg * 4), counters = make_buffer(kMaxHops * 4),
      err = make_buffer(16);

  VkDescriptorSetLayoutBinding lb[3]{};
  for (uint32_t i = 0; i < 3; ++i) {
    lb[i].binding = i;
    lb[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    lb[i].descriptorCount = 1;
    lb[i].stageFlags = VK_SHADER_STAGE_COMPUTE_BIT;
  }
  VkDescriptorSetLayoutCreateInfo dli{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO};
  dli.bindingCount = 3;
  dli.pBindings = lb;
  VkDescriptorSetLayout dsl;
  VKC(vkCreateDescriptorSetLayout(dev, &dli, nullptr, &dsl));
  VkPushConstantRange pcr{VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof(Push)};
  VkPipelineLayoutCreateInfo pli{VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO};
  pli.setLayoutCount = 1;
  pli.pSetLayouts = &dsl;
  pli.pushConstantRangeCount = 1;
  pli.pPushConstantRanges = &pcr;
  VkPipelineLayout pl;
  VKC(vkCreatePipelineLayout(dev, &pli, nullptr, &pl));
  VkShaderModuleCreateInfo smi{VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO};
  smi.codeSize = spv.size();
  smi.pCode = reinterpret_cast<const uint32_t*>(spv.data());
  VkShaderModule sm;
  VKC(vkCreateShaderModule(dev, &smi, nullptr, &sm));
  VkComputePipelineCreateInfo cpi{VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO};
  cpi.stage = {VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO};
  cpi.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
  cpi.stage.module = sm;
  cpi.stage.pName = "main";
  cpi.layout = pl;
  VkPipeline pipe;
  VKC(vkCreateComputePipelines(dev, VK_NULL_HANDLE, 1, &cpi, nullptr, &pipe));
  VkDescriptorPoolSize ps{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 3};
  VkDescriptorPoolCreateInfo dpi{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
  dpi.maxSets = 1;
  dpi.poolSizeCount = 1;
  dpi.pPoolSizes = &ps;
  VkDescriptorPool dp;
  VKC(vkCreateDescriptorPool(dev, &dpi, nullptr, &dp));
  VkDescriptorSetAllocateInfo dsai{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
  dsai.descriptorPool = dp;
  dsai.descriptorSetCount = 1;
  dsai.pSetLayouts = &dsl;
  VkDescriptorSet ds;
  VKC(vkAllocateDescriptorSets(dev, &dsai, &ds));
  VkDescriptorBufferInfo dbi[3] = {{data.buf, 0, VK_WHOLE_SIZE},
                                   {counters.buf, 0, VK_WHOLE_SIZE},
                                   {err.buf, 0, VK_WHOLE_SIZE}};
  VkWriteDescriptorSet w[3]{};
  for (uint32_t i = 0; i < 3; ++i) {
    w[i].sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET;
    w[i].dstSet = ds;
    w[i].dstBinding = i;
    w[i].descriptorCount = 1;
    w[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    w[i].pBufferInfo = &dbi[i];
  }
  vkUpdateDescriptorSets(dev, 3, w, 0, nullptr);

  VkCommandPoolCreateInfo cpci{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
  cpci.queueFamilyIndex = qfi;
  cpci.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
  VkCommandPool pool;
  VKC(vkCreateCommandPool(dev, &cpci, nullptr, &pool));
  VkCommandBufferAllocateInfo cbai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
  cbai.commandPool = pool;
  cbai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  cbai.commandBufferCount = 1;
  VkCommandBuffer cb;
  VKC(vkAllocateCommandBuffers(dev, &cbai, &cb));
  VkFenceCreateInfo fci{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  VkFence fence;
  VKC(vkCreateFence(dev, &fci, nullptr, &fence));

  VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
  mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
  mb.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT;
  const uint32_t spin_limit = 1u << 22;
  // One chain: record, run 5 + 30 times, median µs; false if its data or its waits failed.
  auto chain = [&](uint32_t hops, uint32_t nwg, uint32_t mode, double& us) {
    VKC(vkResetCommandBuffer(cb, 0));
    VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    VKC(vkBeginCommandBuffer(cb, &bi));
    vkCmdFillBuffer(cb, counters.buf, 0, VK_WHOLE_SIZE, 0);
    vkCmdPipelineBarrier(cb, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                         0, 1, &mb, 0, nullptr, 0, nullptr);
    vkCmdBindPipeline(cb, VK_PIPELINE_BIND_POINT_COMPUTE, pipe);
    vkCmdBindDescriptorSets(cb, VK_PIPELINE_BIND_POINT_COMPUTE, pl, 0, 1, &ds, 0, nullptr);
    for (uint32_t h = 0; h < (mode == 2 ? 1u : hops); ++h) {
      if (h > 0 && mode == 0)
        vkCmdPipelineBarrier(cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                             VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1, &mb, 0, nullptr, 0,
                             nullptr);
      const Push pc{mode == 2 ? hops : h, nwg, mode, spin_limit};
      vkCmdPushConstants(cb, pl, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof pc, &pc);
      vkCmdDispatch(cb, nwg, 1, 1);
    }
    VKC(vkEndCommandBuffer(cb));
    VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
    si.commandBufferCount = 1;
    si.pCommandBuffers = &cb;
    std::vector<double> t;
    static_cast<uint32_t*>(err.map)[0] = 0;
    for (int r = 0; r < 35; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      VKC(vkQueueSubmit(q, 1, &si, fence));
      VKC(vkWaitForFences(dev, 1, &fence, VK_TRUE, 10'000'000'000ull));
      VKC(vkResetFences(dev, 1, &fence));
      if (r >= 5)
        t.push_back(
            std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(t.begin(), t.end());
    us = t[t.size() / 2];
    const uint32_t* d = static_cast<const uint32_t*>(data.map) + ((hops - 1) & 1u) * nwg;
    bool ok = static_cast<uint32_t*>(err.map)[0] == 0;
    for (uint32_t g = 0; g < nwg; ++g) ok = ok && d[g] == hops;
    return ok;
  };

  std::printf("| work groups | chain | µs, 16 hops | µs, 256 hops | µs per hop | checked |\n");
  std::printf("|---|---|---:|---:|---:|---|\n");
  for (uint32_t nwg : {32u, 132u, 264u})
    for (uint32_t mode : {0u, 1u, 2u}) {
      double a = 0, b = 0;
      const bool ok = chain(16, nwg, mode, a) & chain(256, nwg, mode, b);
      std::printf("| %u | %s | %.1f | %.1f | %.2f | %s |\n", nwg, mode == 2 ? "grid" : mode ? "handoff" : "barrier", a,
                  b, (b - a) / 240.0, ok ? "ok" : "FAILED (data or a wait gave up)");
      std::fflush(stdout);
    }
  vkDeviceWaitIdle(dev);
  return 0;
}
