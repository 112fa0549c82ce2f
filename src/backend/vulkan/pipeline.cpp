#include "backend/vulkan/pipeline.h"

#include <cstdio>
#include <string>

#include "backend/vulkan/shaders.h"
#include "core/error.h"

namespace dm::vk {

Pipeline::Pipeline(Context& c, const std::string& shader, uint32_t nb, uint32_t pb,
                   const std::vector<uint32_t>& spec, std::string lbl)
    : ctx(c), label(std::move(lbl)), n_bindings(nb), push_bytes(pb) {
  const EmbeddedShader* sh = find_shader(shader);
  if (!sh) fail("[vulkan] shader ", shader, " was not compiled into this binary");
  if (push_bytes > ctx.caps.max_push_bytes)
    fail("[vulkan] ", shader, ": push constants of ", push_bytes, " bytes exceed ", ctx.caps.name,
         "'s maxPushConstantsSize of ", ctx.caps.max_push_bytes);

  std::vector<VkDescriptorSetLayoutBinding> binds(n_bindings);
  for (uint32_t i = 0; i < n_bindings; ++i) {
    binds[i].binding = i;
    binds[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    binds[i].descriptorCount = 1;
    binds[i].stageFlags = VK_SHADER_STAGE_COMPUTE_BIT;
  }
  VkDescriptorSetLayoutCreateInfo dl{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO};
  dl.bindingCount = n_bindings;
  dl.pBindings = binds.data();
  VkShaderModule module = VK_NULL_HANDLE;
  try {
    VK_CHECK(vkCreateDescriptorSetLayout(ctx.device, &dl, nullptr, &set_layout));
    VkPushConstantRange pcr{VK_SHADER_STAGE_COMPUTE_BIT, 0, push_bytes};
    VkPipelineLayoutCreateInfo pl{VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO};
    pl.setLayoutCount = 1;
    pl.pSetLayouts = &set_layout;
    pl.pushConstantRangeCount = push_bytes ? 1 : 0;
    pl.pPushConstantRanges = &pcr;
    VK_CHECK(vkCreatePipelineLayout(ctx.device, &pl, nullptr, &layout));

    VkShaderModuleCreateInfo smi{VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO};
    smi.codeSize = sh->n_words * 4;
    smi.pCode = sh->words;
    VK_CHECK(vkCreateShaderModule(ctx.device, &smi, nullptr, &module));

    std::vector<VkSpecializationMapEntry> entries(spec.size());
    for (uint32_t i = 0; i < spec.size(); ++i) entries[i] = {i, i * 4, 4};
    VkSpecializationInfo si{uint32_t(entries.size()), entries.data(), spec.size() * 4, spec.data()};
    VkComputePipelineCreateInfo cpi{VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO};
    cpi.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
    cpi.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
    cpi.stage.module = module;
    cpi.stage.pName = "main";
    cpi.stage.pSpecializationInfo = spec.empty() ? nullptr : &si;
    cpi.layout = layout;
    if (ctx.pipeline_stats) cpi.flags |= VK_PIPELINE_CREATE_CAPTURE_STATISTICS_BIT_KHR;
    VK_CHECK(vkCreateComputePipelines(ctx.device, VK_NULL_HANDLE, 1, &cpi, nullptr, &pipeline));
    vkDestroyShaderModule(ctx.device, module, nullptr);
    if (ctx.pipeline_stats) print_stats(spec);
  } catch (...) {
    if (module) vkDestroyShaderModule(ctx.device, module, nullptr);
    if (layout) vkDestroyPipelineLayout(ctx.device, layout, nullptr);
    if (set_layout) vkDestroyDescriptorSetLayout(ctx.device, set_layout, nullptr);
    throw;
  }
}

// DM_VULKAN_PIPELINE_STATS (context.h): "[vulkan] pipeline LABEL spec 8,3,1,32: NAME VALUE, ..."
// for each executable the driver reports (one for a compute pipeline).
void Pipeline::print_stats(const std::vector<uint32_t>& spec) const {
  auto props = reinterpret_cast<PFN_vkGetPipelineExecutablePropertiesKHR>(
      vkGetDeviceProcAddr(ctx.device, "vkGetPipelineExecutablePropertiesKHR"));
  auto stats = reinterpret_cast<PFN_vkGetPipelineExecutableStatisticsKHR>(
      vkGetDeviceProcAddr(ctx.device, "vkGetPipelineExecutableStatisticsKHR"));
  if (!props || !stats) return;
  VkPipelineInfoKHR pi{VK_STRUCTURE_TYPE_PIPELINE_INFO_KHR};
  pi.pipeline = pipeline;
  uint32_t n = 0;
  if (props(ctx.device, &pi, &n, nullptr) != VK_SUCCESS) return;
  std::string spec_s;
  for (uint32_t v : spec) {
    if (!spec_s.empty()) spec_s += ',';
    spec_s += std::to_string(v);
  }
  for (uint32_t e = 0; e < n; ++e) {
    VkPipelineExecutableInfoKHR ei{VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_INFO_KHR};
    ei.pipeline = pipeline;
    ei.executableIndex = e;
    uint32_t m = 0;
    if (stats(ctx.device, &ei, &m, nullptr) != VK_SUCCESS) continue;
    std::vector<VkPipelineExecutableStatisticKHR> st(
        m, VkPipelineExecutableStatisticKHR{VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_STATISTIC_KHR});
    if (stats(ctx.device, &ei, &m, st.data()) != VK_SUCCESS) continue;
    std::string line = "[vulkan] pipeline " + label + " spec " + spec_s + ":";
    for (const auto& x : st) {
      line += std::string(" ") + x.name + " ";
      switch (x.format) {
        case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_BOOL32_KHR: line += x.value.b32 ? "yes" : "no"; break;
        case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_INT64_KHR: line += std::to_string(x.value.i64); break;
        case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_UINT64_KHR: line += std::to_string(x.value.u64); break;
        default: line += std::to_string(x.value.f64);
      }
      line += ",";
    }
    std::fprintf(stderr, "%s\n", line.c_str());
  }
}

Pipeline::~Pipeline() {
  vkDestroyPipeline(ctx.device, pipeline, nullptr);
  vkDestroyPipelineLayout(ctx.device, layout, nullptr);
  vkDestroyDescriptorSetLayout(ctx.device, set_layout, nullptr);
}

Pipeline& PipelineCache::get(const std::string& shader, uint32_t n_bindings, uint32_t push_bytes,
                             const std::vector<uint32_t>& spec, uint32_t invocations,
                             const std::string& label) {
  auto key = std::make_pair(shader, spec);
  auto it = cache_.find(key);
  if (it != cache_.end()) return *it->second;
  if (invocations > ctx_.caps.max_wg_invocations)
    fail("[vulkan] ", label, ": a work group of ", invocations, " invocations exceeds ",
         ctx_.caps.name, "'s maxComputeWorkGroupInvocations of ", ctx_.caps.max_wg_invocations);
  auto p = std::make_unique<Pipeline>(ctx_, shader, n_bindings, push_bytes, spec, label);
  Pipeline& ref = *p;
  cache_.emplace(std::move(key), std::move(p));
  return ref;
}

}  // namespace dm::vk
