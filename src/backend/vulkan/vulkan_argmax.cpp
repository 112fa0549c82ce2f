// Backend::argmax on Vulkan: shaders/argmax.comp, one work group (greedy decoding's pick at the
// end of a decode step; the logits of one token are ~50K values).
#include "backend/vulkan/vulkan_backend_impl.h"

namespace dm::vk {

void VulkanBackend::argmax(const Tensor& x, int64_t n, const Tensor& idx) {
  const ArgmaxParams p = make_argmax_params(x, n, idx);
  const char* k = "argmax";
  BufferUse ux = bind(x, false, k, "x"), ui = bind(idx, true, k, "idx");
  Push push(p, {off(x, ux), off(idx, ui)});
  const uint32_t wg = 256;
  auto& pipe = pipelines_.get("argmax", 2, push.size, {wg}, wg, "argmax");
  rec_->dispatch(pipe, {ux, ui}, push.bytes, push.size, 1, 1, 1);
}

}  // namespace dm::vk
