// The third noun: a compute pipeline of one embedded shader with its specialization constants,
// a descriptor set layout of n storage buffers (binding i = the shader's i-th tensor) and a
// push-constant block (the kernel's params struct of params.h, then the element offsets).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "backend/vulkan/context.h"

namespace dm::vk {

class Pipeline {
 public:
  Pipeline(Context& ctx, const std::string& shader, uint32_t n_bindings, uint32_t push_bytes,
           const std::vector<uint32_t>& spec, std::string label);
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  Context& ctx;
  std::string label;  // the kernel name timing tables show ("selective_scan.chunk_state")
  uint32_t n_bindings, push_bytes;
  VkDescriptorSetLayout set_layout = VK_NULL_HANDLE;
  VkPipelineLayout layout = VK_NULL_HANDLE;
  VkPipeline pipeline = VK_NULL_HANDLE;

 private:
  void print_stats(const std::vector<uint32_t>& spec) const;
};

class PipelineCache {
 public:
  explicit PipelineCache(Context& ctx) : ctx_(ctx) {}
  // Built on first use; spec[i] is constant_id i. `invocations` (the work-group size the
  // specialization gives) is checked against the device limit.
  Pipeline& get(const std::string& shader, uint32_t n_bindings, uint32_t push_bytes,
                const std::vector<uint32_t>& spec, uint32_t invocations, const std::string& label);

 private:
  Context& ctx_;
  std::map<std::pair<std::string, std::vector<uint32_t>>, std::unique_ptr<Pipeline>> cache_;
};

}  // namespace dm::vk
