// Backend::argmax on Vulkan: shaders/argmax.comp, one work group (greedy decoding's pick at the
// end of a decode step; the logits of one token are ~50K values).
#include "backend/vulkan/vulkan_backend_impl.h"
#include "core/env.h"

namespace dm::vk {

namespace {
// DM_VULKAN_ARGMAX (read per call): unset or vec4: argmax.vec4 where x is 16-byte aligned;
// scalar: argmax everywhere. On the H200 (session 18, call 1) vec4 took 9 µs off a 130m greedy
// token (534.8 -> 526.0 µs) and 14 µs off a 2.8b one (3170 -> 3156 µs).
bool argmax_vec4_wanted() {
  return env_choice("vulkan", "DM_VULKAN_ARGMAX", {"vec4", "scalar"}) == 0;
}
}  // namespace

void VulkanBackend::argmax(const Tensor& x, int64_t n, const Tensor& idx) {
  const ArgmaxParams p = make_argmax_params(x, n, idx);
  const char* k = "argmax";
  BufferUse ux = bind(x, false, k, "x"), ui = bind(idx, true, k, "idx");
  Push push(p, {off(x, ux), off(idx, ui)});
  if (argmax_vec4_wanted() && x.offset % 16 == 0 && off(x, ux) % 4 == 0) {
    const uint32_t wg = ctx_->caps.max_wg_invocations >= 1024 ? 1024 : 256;
    auto& pipe = pipelines_.get("argmax.vec4", 3, push.size, {wg}, wg, "argmax.vec4");
    rec_->dispatch(pipe, {ux, ui, ux}, push.bytes, push.size, 1, 1, 1);
    return;
  }
  const uint32_t wg = 256;
  auto& pipe = pipelines_.get("argmax", 2, push.size, {wg}, wg, "argmax");
  rec_->dispatch(pipe, {ux, ui}, push.bytes, push.size, 1, 1, 1);
}

}  // namespace dm::vk
