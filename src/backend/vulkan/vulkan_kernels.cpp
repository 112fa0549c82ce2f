// The Vulkan backend's other prompt kernels, one or two dispatches each: rms_norm,
// causal_conv1d, dt_importance, topk_indices, gather_rows.
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "backend/vulkan/vulkan_backend_impl.h"

namespace dm::vk {

void VulkanBackend::rms_norm(const Tensor& x, const Tensor* residual, const Tensor& weight,
                             const Tensor& y, float eps) {
  const RmsNormParams p = make_rms_norm_params(x, residual, weight, y, eps);
  if (p.L == 0) return;
  if (const int64_t m =
          std::min({rows_fit(x), rows_fit(y), residual ? rows_fit(*residual) : x.rows});
      m < x.rows) {
    for (int64_t t0 = 0; t0 < x.rows; t0 += m) {
      const int64_t n = std::min(m, x.rows - t0);
      const Tensor r = residual ? residual->row_slice(t0, n) : Tensor{};
      rms_norm(x.row_slice(t0, n), residual ? &r : nullptr, weight, y.row_slice(t0, n), eps);
    }
    return;
  }
  const char* k = "rms_norm";
  BufferUse ux = bind(x, false, k, "x"),
            ur = residual ? bind(*residual, true, k, "residual") : dummy(),
            uw = bind(weight, false, k, "weight"), uy = bind(y, true, k, "y");
  Push push(p, {off(x, ux), residual ? off(*residual, ur) : 0u, off(weight, uw), off(y, uy)});
  const char* variant = residual ? "rms_norm.residual" : "rms_norm";
  // The row in registers (rms_norm.comp) where the loop stores the residual and would run more
  // than four times: measured on an H200 (session 9, one decode row): d_model 2560 12.0 → 9.9 µs,
  // but 768 5.8 → 6.5 and the plain norm (no stores to wait for) slower at both widths.
  // DM_VULKAN_NORM_LOOP=1 (read per call): always the loop (comparisons).
  const char* loop = std::getenv("DM_VULKAN_NORM_LOOP");
  const uint32_t regs =
      residual && p.D > 4 * 256 && !(loop && std::strcmp(loop, "1") == 0) ? 1u : 0u;
  auto& pipe = pipelines_.get(variant, 4, push.size, {256, regs}, 256, variant);
  const Grid g = linear_grid(p.L);
  rec_->dispatch(pipe, {ux, ur, uw, uy}, push.bytes, push.size, g.x, g.y, g.z);
}

void VulkanBackend::causal_conv1d(const Tensor& x, const Tensor& weight, const Tensor* bias,
                                  const Tensor& conv_state, const Tensor& y) {
  const CausalConv1dParams p = make_causal_conv1d_params(x, weight, bias, conv_state, y);
  if (p.L == 0 || p.channels == 0) return;
  // Longer than one binding: consecutive pieces of time; the conv state carries between
  // them exactly as it does between two calls of a chunked prefill.
  if (const int64_t m = std::min(rows_fit(x), rows_fit(y)); m < x.rows) {
    for (int64_t t0 = 0; t0 < x.rows; t0 += m) {
      const int64_t n = std::min(m, x.rows - t0);
      causal_conv1d(x.row_slice(t0, n), weight, bias, conv_state, y.row_slice(t0, n));
    }
    return;
  }
  check_small("causal_conv1d", "d_conv", p.d_conv, 64);
  const char* k = "causal_conv1d";
  BufferUse ux = bind(x, false, k, "x"), uw = bind(weight, false, k, "weight"),
            ub = bias ? bind(*bias, false, k, "bias") : dummy(),
            // read, and replaced by the first token block's invocations
            us = bind(conv_state, true, k, "conv_state"), uy = bind(y, true, k, "y");
  const uint32_t tb = std::max<uint32_t>(16, p.d_conv);  // the shader's premise: tb >= d_conv
  Push push(p, {tb, off(x, ux), off(weight, uw), bias ? off(*bias, ub) : 0u, off(conv_state, us),
                off(y, uy)});
  const uint32_t cg = ceil_div(p.channels, 64);
  auto& conv = pipelines_.get("causal_conv1d", 5, push.size, {64, p.d_conv}, 64, "causal_conv1d");
  const Grid g = fold_yz(ceil_div(p.L, tb));
  rec_->dispatch(conv, {ux, uw, ub, us, uy}, push.bytes, push.size, cg, g.y, g.z);
}

void VulkanBackend::dt_importance(const Tensor& delta, const Tensor& dt_bias,
                                  const Tensor& scores) {
  const DtImportanceParams p = make_dt_importance_params(delta, dt_bias, scores);
  if (p.L == 0) return;
  if (const int64_t m = rows_fit(delta); m < delta.rows) {
    for (int64_t t0 = 0; t0 < delta.rows; t0 += m) {
      const int64_t n = std::min(m, delta.rows - t0);
      dt_importance(delta.row_slice(t0, n), dt_bias, vec_slice(scores, t0, n));
    }
    return;
  }
  const char* k = "dt_importance";
  BufferUse ud = bind(delta, false, k, "delta"), ub = bind(dt_bias, false, k, "dt_bias"),
            us = bind(scores, true, k, "scores");
  const uint32_t vec = p.channels % 4 == 0 && p.delta_stride % 4 == 0 && off(delta, ud) % 4 == 0;
  Push push(p, {off(delta, ud), off(dt_bias, ub), off(scores, us), vec});
  // 64 invocations a token (six vec4 each at 1536 channels). H100, session 8, 32K tokens × 1536
  // channels, in the decimated prefill's profile: 84.3 µs against 103.2 with 32, 88.6 with 128
  // and 106-111 with 256; 134.2 before the vec4 loads (256, scalar; bench_vulkan).
  auto& pipe = pipelines_.get("dt_importance", 3, push.size, {64}, 64, "dt_importance");
  const Grid g = linear_grid(p.L);
  rec_->dispatch(pipe, {ud, ub, us}, push.bytes, push.size, g.x, g.y, g.z);
}

void VulkanBackend::topk_indices(const Tensor& scores, int64_t n_candidates, int64_t k,
                                 const Tensor& idx) {
  const TopkIndicesParams p = make_topk_indices_params(scores, n_candidates, k, idx);
  if (p.k + p.L - p.n_candidates == 0) return;
  const char* kn = "topk_indices";
  BufferUse us = bind(scores, false, kn, "scores"), ui = bind(idx, true, kn, "idx");
  Push push(p, {off(scores, us), off(idx, ui)});
  // One work group walks every candidate 5 times. Measured on an H100: 1024 invocations
  // instead of 256 take 58.8 → 38.9 µs at 16K candidates and 252 → 107 µs at 64K, but
  // 21.9 → 27.4 µs at 4K (the block scan's barriers grow with the group): wide above 8K.
  const uint32_t wg = ctx_->caps.max_wg_invocations >= 1024 && p.n_candidates > 8192 ? 1024 : 256;
  auto& pipe = pipelines_.get("topk_indices", 2, push.size, {wg}, wg, "topk_indices");
  rec_->dispatch(pipe, {us, ui}, push.bytes, push.size, 1, 1, 1);
}

void VulkanBackend::gather_rows(const Tensor& src, const Tensor& idx, const Tensor& dst) {
  const GatherRowsParams p = make_gather_rows_params(src, idx, dst);
  if (p.n == 0 || p.cols == 0) return;
  if (const int64_t m = rows_fit(dst); m < dst.rows) {
    for (int64_t i0 = 0; i0 < dst.rows; i0 += m) {
      const int64_t n = std::min(m, dst.rows - i0);
      gather_rows(src, vec_slice(idx, i0, n), dst.row_slice(i0, n));
    }
    return;
  }
  const char* k = "gather_rows";
  BufferUse ui = bind(idx, false, k, "idx"), ud = bind(dst, true, k, "dst");
  auto& pipe = pipelines_.get("gather_rows", 3, sizeof(p) + 6 * 4, {256}, 256, "gather_rows");
  const Grid g = fold_yz(p.n);
  // 16-byte copies where every row of src and dst starts 16-byte aligned (fp32 source).
  const bool vec4_rows = src.dtype == DType::F32 && p.cols % 4 == 0 && p.src_stride % 4 == 0 &&
                         p.dst_stride % 4 == 0 && off(dst, ud) % 4 == 0;
  // Windows of source rows, each within one binding (one window unless src is huge: a
  // tied fp32 embedding of 50280 × 768 is 154 MB, lavapipe binds at most 128 MiB).
  const int64_t win = rows_fit(src);
  for (int64_t r0 = 0; r0 < std::max<int64_t>(src.rows, 1); r0 += win) {
    const int64_t nr = std::min(win, src.rows - r0);
    const Tensor part = src.row_slice(r0, nr);
    BufferUse us = bind(part, false, k, "src");
    const uint32_t vec = vec4_rows && off(part, us) % 4 == 0;
    Push push(p, {uint32_t(r0), uint32_t(r0 + nr), off(part, us), off(idx, ui), off(dst, ud), vec});
    const uint32_t gx = ceil_div(vec ? p.cols / 4 : p.cols, 256);
    rec_->dispatch(pipe, {us, ui, ud}, push.bytes, push.size, gx, g.y, g.z);
  }
}

}  // namespace dm::vk
