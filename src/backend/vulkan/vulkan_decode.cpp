// The Vulkan backend's decode kernels: the conv and scan steps and the decode fusions of
// backend.h (rms_norm_gemm, rms_norm_gemm_conv_step, dt_proj_scan_step).
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "backend/vulkan/vulkan_backend_impl.h"
#include "core/env.h"

namespace dm::vk {

void VulkanBackend::causal_conv1d_step(const Tensor& x, const Tensor& weight, const Tensor* bias,
                                       const Tensor& conv_state, const Tensor& y) {
  const CausalConv1dStepParams p = make_causal_conv1d_step_params(x, weight, bias, conv_state, y);
  if (p.batch == 0 || p.channels == 0) return;
  const char* k = "causal_conv1d_step";
  check_small(k, "d_conv", p.d_conv, 64);
  BufferUse ux = bind(x, false, k, "x"), uw = bind(weight, false, k, "weight"),
            ub = bias ? bind(*bias, false, k, "bias") : dummy(),
            us = bind(conv_state, true, k, "conv_state"), uy = bind(y, true, k, "y");
  Push push(p, {off(x, ux), off(weight, uw), bias ? off(*bias, ub) : 0u, off(conv_state, us),
                off(y, uy)});
  auto& pipe =
      pipelines_.get("causal_conv1d_step", 5, push.size, {64, p.d_conv}, 64, "causal_conv1d_step");
  const Grid g = fold_yz(p.batch);
  rec_->dispatch(pipe, {ux, uw, ub, us, uy}, push.bytes, push.size, ceil_div(p.channels, 64), g.y,
                 g.z);
}

void VulkanBackend::selective_scan_step(const Tensor& u, const Tensor& delta, const Tensor& A_log,
                                        const Tensor& B, const Tensor& C, const Tensor& D,
                                        const Tensor* z, const Tensor& dt_bias,
                                        const Tensor& ssm_state, const Tensor& y) {
  const SelectiveScanStepParams p =
      make_selective_scan_step_params(u, delta, A_log, B, C, D, z, dt_bias, ssm_state, y);
  if (p.batch == 0 || p.channels == 0) return;
  const char* k = "selective_scan_step";
  check_small(k, "d_state", p.d_state, 256);
  const ScanBindings sb = bind_scan(k, u, delta, A_log, B, C, D, z, dt_bias, ssm_state, y);
  Push push(p, {});
  push.append(sb.off);
  auto& pipe = pipelines_.get("selective_scan_step", 10, push.size, {64, p.d_state}, 64,
                              "selective_scan_step");
  const Grid g = fold_yz(p.batch);
  rec_->dispatch(pipe, sb.uses(), push.bytes, push.size, ceil_div(p.channels, 64), g.y, g.z);
}

// On by default for layers of at most kFusedStepMaxChannels channels. Measured on an H100
// (bench_vulkan --sections decode, one call, µs per token, bench/results/
// h100_decode_session4_2026-11-27.md): 130m (d_inner 1536) 870.0 off, 753.3 on: two dispatches
// fewer per layer pay; 2.8b (5120) 4457.6 off, 4652.3 on: there the fused in_proj + conv GEMV
// is the slower one. Widths between are not measured and keep them off.
// DM_VULKAN_FUSED_STEP=conv or =scan turns on only that fusion (gemm.gemv_conv, or
// selective_scan_step.dt_proj(_sg)), to tell their costs apart (with DM_VULKAN_BLOCK_STEP=0:
// the block step counts either as on). H100, session 10 (bench/results/
// h100_session10_vkdecode_2026-11-28.md), 2.8b µs/token: both off 4384 / 4333, scan only 4373 /
// 4343, conv only 4854 / 4846: gemm.gemv_conv is what costs at 5120 channels.
bool VulkanBackend::fused_step_on(uint32_t channels) {
  const char* e = std::getenv("DM_VULKAN_FUSED_STEP");
  if (e && *e) return std::strcmp(e, "0") != 0;
  return channels <= kFusedStepMaxChannels;
}

namespace {
bool fused_only(const char* which) {
  const char* e = std::getenv("DM_VULKAN_FUSED_STEP");
  return e && std::strcmp(e, which) == 0;
}
}  // namespace

// Wider layers take the in_proj + conv step fusion alone by default, with the conv step's inputs
// loaded after the weight loop (gemv_sg.comp CONV_LATE): loaded before it, as at 130m, they stay
// live in registers while the weights stream, which is what made gemm.gemv_conv slow at 5120
// channels. H200, session 10 (bench/results/h100_session10_lead_2026-11-28.md, calls 13-14,
// three rounds, block step off), 2.8b µs/token: composition 3877 / 3873 / 3925, conv fusion with
// the loads before the loop 4098 / 4112 / 4155, after it 3861 / 3835 / 3828. End to end, session
// 11 (decimamba bench 2.8b -p 512 -n 16 -r 2, tg16 µs/token, before / after alternating twice):
// H100 4406 / 4189, 4359 / 4153; H200 4179 / 3831, 4257 / 3817. Not measured between 1536 and
// 5120 channels. DM_VULKAN_FUSED_STEP (any value) keeps its meaning above;
// DM_VULKAN_GEMV_CONV_LATE=0|1 forces where the loads go.
bool VulkanBackend::conv_fusion_on(uint32_t channels) {
  const char* e = std::getenv("DM_VULKAN_FUSED_STEP");
  if (e && *e) return fused_step_on(channels) && !fused_only("scan");
  return true;
}
// dt_proj_scan_step's fusion (selective_scan_step.dt_proj_sg / .dt_proj): unset, on at every
// width where its subgroup form runs (sg), else up to kFusedStepMaxChannels. H200, session 15
// (bench/results/h200_session15_2026-11-28.md, call 6, bench_vulkan decode, two rounds), 2.8b
// µs/token: composition 3566 / 3548, with the scan fusion 3418 / 3410 (one dispatch fewer a
// layer; session 10 had measured it neutral on an H100 before the fence polling and the 16-bit
// word loads). DM_VULKAN_FUSED_STEP (any value) keeps its meaning above.
bool VulkanBackend::scan_fusion_on(uint32_t channels, bool sg) {
  const char* e = std::getenv("DM_VULKAN_FUSED_STEP");
  if (e && *e) return fused_step_on(channels) && !fused_only("conv");
  return sg || channels <= kFusedStepMaxChannels;
}
bool VulkanBackend::conv_loads_late(uint32_t channels) {
  switch (env_choice("vulkan", "DM_VULKAN_GEMV_CONV_LATE", {"auto", "0", "1"})) {
    case 1: return false;
    case 2: return true;
    default: return channels > kFusedStepMaxChannels;
  }
}

// Decode fusions (backend.h): rms_norm, then in_proj and the conv step in one dispatch
// (gemm.small_m_vec_conv), where the GEMV takes its 16-byte path; else the composition.
void VulkanBackend::rms_norm_gemm_conv_step(const Tensor* x, const Tensor& residual,
                                            const Tensor& norm_weight, float eps,
                                            const Tensor& normed, const Tensor& w,
                                            const Tensor* bias, const Tensor& y,
                                            const Tensor& conv_weight, const Tensor* conv_bias,
                                            const Tensor& conv_state, const Tensor& conv_y) {
  const RmsNormGemmParams p =
      make_rms_norm_gemm_params(x, residual, norm_weight, eps, normed, w, bias, y, &conv_weight,
                                conv_bias, &conv_state, &conv_y);
  if (!gemv_conv_fits(p, normed, w, y))
    return Backend::rms_norm_gemm_conv_step(x, residual, norm_weight, eps, normed, w, bias, y,
                                            conv_weight, conv_bias, conv_state, conv_y);
  if (x)
    rms_norm(*x, &residual, norm_weight, normed, eps);  // residual += x
  else
    rms_norm(residual, nullptr, norm_weight, normed, eps);
  gemv_conv(p, normed, w, bias, y, conv_weight, conv_bias, conv_state, conv_y);
}

bool VulkanBackend::gemv_conv_fits(const RmsNormGemmParams& p, const Tensor& normed,
                                   const Tensor& w, const Tensor& y) const {
  return conv_fusion_on(p.conv.channels) && p.has_conv && p.gemm.M >= 1 && p.gemm.M <= 4 &&
         small_m_vec_ok(normed, w, p.gemm) && p.conv.d_conv >= 1 && p.conv.d_conv <= 8 &&
         ctx_->caps.max_storage_buffers >= 8 && rows_fit(w) >= w.rows &&
         rows_fit(normed) >= normed.rows && rows_fit(y) >= y.rows;
}

void VulkanBackend::gemv_conv(const RmsNormGemmParams& p, const Tensor& normed, const Tensor& w,
                              const Tensor* bias, const Tensor& y, const Tensor& conv_weight,
                              const Tensor* conv_bias, const Tensor& conv_state,
                              const Tensor& conv_y) {
  const char* k = "gemm.small_m_vec_conv";  // the label of the bindings' errors too
  BufferUse ux = bind(normed, false, k, "x"), uw = bind(w, false, k, "w"),
            ub = bias ? bind(*bias, false, k, "bias") : dummy(), uy = bind(y, true, k, "y"),
            ucw = bind(conv_weight, false, k, "conv_weight"),
            ucb = conv_bias ? bind(*conv_bias, false, k, "conv_bias") : dummy(),
            ucs = bind(conv_state, true, k, "conv_state"), ucy = bind(conv_y, true, k, "conv_y");
  // gemm.gemv_conv where gemm.gemv applies (as gemm() decides), else gemm.small_m_vec_conv.
  const GemvConfig gc = gemv_config(p.gemm);
  const std::string kv = gc.pipeline("gemm.gemv_conv");
  if (gc.ok) k = kv.c_str();
  const uint32_t rows = gc.ok ? gc.rows : small_m_vec_rows(p.gemm);
  const uint32_t group_rows = gc.ok ? gc.rows_per_group() : rows;
  const CausalConv1dStepParams& c = p.conv;
  Push push(p.gemm,
            {off(normed, ux), off(w, uw), bias ? off(*bias, ub) : 0u, off(y, uy), rows, c.channels,
             c.d_conv, c.y_stride, c.weight_dtype, c.bias_dtype, c.has_bias, off(conv_weight, ucw),
             conv_bias ? off(*conv_bias, ucb) : 0u, off(conv_state, ucs), off(conv_y, ucy)});
  std::vector<uint32_t> spec;
  if (gc.ok) {
    spec = gc.spec();
    spec.push_back(conv_loads_late(c.channels) ? 1u : 0u);  // gemv_sg.comp CONV_LATE
  }
  auto& pipe = pipelines_.get(k, 8, push.size, spec, 256, k);
  const Grid g = linear_grid(ceil_div(p.gemm.N, group_rows));
  rec_->dispatch(pipe, {ux, uw, ub, uy, ucw, ucb, ucs, ucy}, push.bytes, push.size, g.x, g.y, g.z);
}

// The norm across the layer boundary (backend.h: next_norm, normed_ready): out_proj's dispatch
// ends with the next layer's rms_norm.residual (gemm.gemv_norm_tail), so a wide layer runs four
// dispatches, not five. DM_VULKAN_NORM_TAIL=0|1 (read per call); unset: where the block step is
// off (block_step_mode: above 1536 channels), whose three dispatches already fold the norm.
// H200, session 17 (bench/results/h200_session17_2026-11-28.md, calls 4-5, bench_vulkan decode,
// three rounds each), µs a token, tail / separate rms_norm: 2.8b 3372 / 3403 (-0.9%) and 3386 /
// 3427, 1.4b 1957-1978 / 2048-2074 (-4.5%). The last work group's norm costs ~2.7 µs a layer
// (timed without it: 3215): what the dispatch it replaces saved, less that.
bool VulkanBackend::decode_norm_tail(const MambaBlockStepArgs& a) {
  const uint32_t E = uint32_t(a.xc.cols);
  if (const char* e = std::getenv("DM_VULKAN_NORM_TAIL"); e && *e) {
    if (std::strcmp(e, "0") == 0) return false;
    if (std::strcmp(e, "1") != 0) fail("[vulkan] DM_VULKAN_NORM_TAIL=", e, ": want 0 or 1");
  } else if (block_step_mode(E) != BlockStepMode::kOff) {
    return false;
  }
  return norm_tail_fits(a, make_gemm_params(a.y, a.out_proj, a.out_proj_bias, a.hidden));
}

bool VulkanBackend::norm_tail_fits(const MambaBlockStepArgs& a, const GemmParams& out) const {
  constexpr uint32_t kMaxD = 16 * 256;  // gemv_sg.comp's TE ≤ 16 residual elements per invocation
  return out.M == 1 && out.N <= kMaxD && small_m_vec_ok(a.y, a.out_proj, out) &&
         gemv_config(out).ok && ctx_->caps.max_storage_buffers >= 8 &&
         rows_fit(a.out_proj) >= a.out_proj.rows && a.residual.rows == 1 && a.normed.rows == 1;
}

void VulkanBackend::gemv_norm_tail(const MambaBlockStepArgs& a, const MambaBlockStepParams& p) {
  const GemmParams& g = p.out;
  const RmsNormParams& nn = p.next_norm;
  const GemvConfig gc = gemv_config(g);
  const std::string k = gc.pipeline("gemm.gemv_norm_tail");
  const char* kc = k.c_str();
  BufferUse ux = bind(a.y, false, kc, "x"), uw = bind(a.out_proj, false, kc, "w"),
            ub = a.out_proj_bias ? bind(*a.out_proj_bias, false, kc, "bias") : dummy(),
            uy = bind(a.hidden, true, kc, "y"), ur = bind(a.residual, true, kc, "residual"),
            unw = bind(*a.next_norm, false, kc, "norm_weight"),
            un = bind(a.normed, true, kc, "normed"), uc = scratch(*tail_counter_, 16);
  const Grid gr = linear_grid(ceil_div(g.N, gc.rows_per_group()));
  const uint32_t groups = gr.x * gr.y * gr.z;  // every one counts, rows or not: the counter's end
  uint32_t eps_bits;
  std::memcpy(&eps_bits, &nn.eps, 4);
  Push push(g, {off(a.y, ux), off(a.out_proj, uw), a.out_proj_bias ? off(*a.out_proj_bias, ub) : 0u,
                off(a.hidden, uy), gc.rows, nn.weight_dtype, eps_bits, groups,
                off(a.residual, ur), off(*a.next_norm, unw), off(a.normed, un), 0u});
  std::vector<uint32_t> spec = gc.spec();
  // gemv_sg.comp: CONV_LATE (unused here), TE (residual elements per invocation).
  spec.insert(spec.end(), {0u, ceil_div(g.N, 256)});
  auto& pipe = pipelines_.get(k, 8, push.size, spec, 256, k);
  rec_->dispatch(pipe, {ux, uw, ub, uy, ur, unw, un, uc}, push.bytes, push.size, gr.x, gr.y, gr.z);
}

void VulkanBackend::block_step_composed(const MambaBlockStepArgs& a,
                                        const MambaBlockStepParams& p) {
  const BlockStepViews v = block_step_views(a);
  if (!a.normed_ready)
    rms_norm_gemm_conv_step(a.x, a.residual, a.norm_weight, a.eps, a.normed, a.in_proj,
                            a.in_proj_bias, a.xz, a.conv_weight, a.conv_bias, a.conv_state, a.xc);
  else if (gemv_conv_fits(p.front, a.normed, a.in_proj, a.xz))
    gemv_conv(p.front, a.normed, a.in_proj, a.in_proj_bias, a.xz, a.conv_weight, a.conv_bias,
              a.conv_state, a.xc);
  else {
    gemm(a.normed, a.in_proj, a.in_proj_bias, a.xz);
    causal_conv1d_step(a.xz.col_slice(0, a.xc.cols), a.conv_weight, a.conv_bias, a.conv_state,
                       a.xc);
  }
  gemm(a.xc, a.x_proj, nullptr, a.x_dbl);
  dt_proj_scan_step(v.dt_low, a.dt_proj, a.dt, a.xc, a.A_log, v.B, v.C, a.D, &v.z, a.dt_bias,
                    a.ssm_state, a.y);
  if (a.next_norm && norm_tail_fits(a, p.out)) return gemv_norm_tail(a, p);
  gemm(a.y, a.out_proj, a.out_proj_bias, a.hidden);
  if (a.next_norm) rms_norm(a.hidden, &a.residual, *a.next_norm, a.normed, a.eps);
}

// dt_proj's dot product inside the scan step (selective_scan_step.dt_proj): one dispatch.
void VulkanBackend::dt_proj_scan_step(const Tensor& dt_low, const Tensor& dt_proj,
                                      const Tensor& delta, const Tensor& u, const Tensor& A_log,
                                      const Tensor& B, const Tensor& C, const Tensor& D,
                                      const Tensor* z, const Tensor& dt_bias,
                                      const Tensor& ssm_state, const Tensor& y) {
  const DtProjScanStepParams p = make_dt_proj_scan_step_params(dt_low, dt_proj, delta, u, A_log, B,
                                                               C, D, z, dt_bias, ssm_state, y);
  if (p.scan.batch == 0 || p.scan.channels == 0) return;
  // LANES = 8 invocations per channel (selective_scan_step.dt_proj_sg) where subgroup shuffles
  // allow, 32 channels per work group of 256; else one invocation per channel.
  const uint32_t lanes = 8;
  const bool sg = shuffles_ok() && ctx_->caps.subgroup_size >= lanes && !old_decode_kernels();
  if (!scan_fusion_on(p.scan.channels, sg) || ctx_->caps.max_storage_buffers < 12 ||
      p.scan.d_state > 256 || rows_fit(dt_proj) < dt_proj.rows)
    return Backend::dt_proj_scan_step(dt_low, dt_proj, delta, u, A_log, B, C, D, z, dt_bias,
                                      ssm_state, y);
  const char* k = "selective_scan_step.dt_proj";
  // delta is an output here: the step writes the Δ it computes (dt_proj + bias, softplus).
  const ScanBindings sb =
      bind_scan(k, u, delta, A_log, B, C, D, z, dt_bias, ssm_state, y, /*delta_out=*/true);
  const BufferUse ul = bind(dt_low, false, k, "dt_low"), uw = bind(dt_proj, false, k, "dt_proj");
  Push push(p.scan, {});
  push.append(sb.off);
  push.append({p.dt.K, p.dt.x_stride, p.dt.w_stride, p.dt.w_dtype, off(dt_low, ul),
               off(dt_proj, uw)});
  const Grid g = fold_yz(p.scan.batch);
  if (sg) {
    const char* v = "selective_scan_step.dt_proj_sg";
    auto& pipe = pipelines_.get(v, 12, push.size, {256, p.scan.d_state, lanes}, 256, v);
    rec_->dispatch(pipe, sb.uses({ul, uw}), push.bytes, push.size,
                   ceil_div(p.scan.channels, 256 / lanes), g.y, g.z);
    return;
  }
  auto& pipe = pipelines_.get(k, 12, push.size, {64, p.scan.d_state}, 64, k);
  rec_->dispatch(pipe, sb.uses({ul, uw}), push.bytes, push.size, ceil_div(p.scan.channels, 64),
                 g.y, g.z);
}

}  // namespace dm::vk
