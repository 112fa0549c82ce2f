// VulkanBackend::mamba_block_step: one decode layer (batch 1) in three dependent dispatches
// (shaders/mamba_step.comp) instead of Backend's five: A = residual add + rms_norm + in_proj +
// conv step + each work group's slice of x_proj (mamba_step.front_xpart), B = the x_proj slices
// summed + dt_proj + scan step + gate (mamba_step.scan_xpart), C = out_proj (gemm.gemv). Each
// dependent dispatch costs a command buffer ~4 µs of barrier on an H100 (bench_dispatch), more
// than most of a 130m layer's kernels take. The four-dispatch form keeps x_proj a GEMV of its
// own (mamba_step.front, gemm.gemv, mamba_step.scan). Shapes, devices or switches it does not
// take run Backend's composition.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "backend/vulkan/vulkan_backend_impl.h"
#include "core/env.h"

namespace dm::vk {

namespace {

// The push-constant blocks of shaders/mamba_step.comp.
struct FrontPush {
  uint32_t D, N, w_stride, w_dtype, bias_dtype, has_bias, has_x, norm_w_dtype;
  float eps;
  uint32_t channels, d_conv, conv_w_dtype, conv_b_dtype, conv_has_bias;
};
struct ScanPush {
  uint32_t channels, dt_rank, d_model, groups, dt_proj_stride, dt_proj_dtype, A_log_dtype,
      D_dtype, dt_bias_dtype, has_x;
};

bool vec_aligned(const Tensor& w, uint32_t K, uint32_t stride) {  // 16-byte pieces of whole rows
  const uint32_t per = w.dtype == DType::F32 ? 4 : 8;
  return w.offset % 16 == 0 && K % per == 0 && stride % per == 0;
}

// A's conv step inputs (mamba_step.comp CONV_LATE): loaded with the first weight batch, in
// flight during the norm (default), or after the in_proj reduction (gemv_sg.comp's CONV_LATE,
// which paid at 2.8b in gemm.gemv_conv, session 10). Late measured slower at 130m, session 11
// (bench_vulkan decode, µs/token, mean of 3 / 4 rounds): H200 706.3 against 676.1 early, H100
// 732.9 against 722.5. DM_VULKAN_BLOCK_CONV_LATE=1 forces late loads.
bool block_conv_late() {
  return env_choice("vulkan", "DM_VULKAN_BLOCK_CONV_LATE", {"0", "1"}) == 1;
}

}  // namespace

// DM_VULKAN_BLOCK_STEP=0: Backend's composition; 3: three dispatches (x_proj's slices summed in
// every scan work group); 4: four (x_proj a GEMV of its own). Unset: three where the fused
// decode shaders are on (fused_step_on: DM_VULKAN_FUSED_STEP, else up to 1536 channels), else
// off. Measured on an H100 (bench/results/h100_session9_vkdecode_2026-11-27.md, bench_vulkan
// --sections decode, µs per token, four runs each over two calls): 130m 753 composition, 698
// four, 688 three; 2.8b 4297 composition (fused shaders off), 4661 four, 5323 three: there A's
// norm, repeated by 1280 work groups over 2560 floats, costs more than the dispatch it saves.
VulkanBackend::BlockStepMode VulkanBackend::block_step_mode(uint32_t channels) {
  if (const char* e = std::getenv("DM_VULKAN_BLOCK_STEP"); e && *e) {
    if (std::strcmp(e, "0") == 0) return BlockStepMode::kOff;
    if (std::strcmp(e, "3") == 0) return BlockStepMode::kThree;
    if (std::strcmp(e, "4") == 0) return BlockStepMode::kFour;
    fail("[vulkan] DM_VULKAN_BLOCK_STEP=", e, ": want 0 (off), 3 or 4 (dispatches per layer)");
  }
  return fused_step_on(channels) ? kBlockStepDefault : BlockStepMode::kOff;
}

void VulkanBackend::mamba_block_step(const MambaBlockStepArgs& a) {
  const MambaBlockStepParams p = make_mamba_block_step_params(a);
  // The norm moved across the layer boundary: the composed form (its gemm.gemv_norm_tail).
  if (a.normed_ready || a.next_norm) return block_step_composed(a, p);
  const GemmParams& g = p.front.gemm;
  const SelectiveScanStepParams& s = p.scan.scan;
  const uint32_t E = s.channels, D = g.K, R = p.scan.dt.K, N = s.d_state, NR = R + 2 * N;
  const BlockStepMode mode = block_step_mode(E);
  const Caps& caps = ctx_->caps;
  const uint32_t lanes = 8;  // invocations per channel in B (selective_scan_step.dt_proj_sg's)
  const uint32_t dv = ceil_div(D, 4);  // A's shared vec4s for the normed row
  // A's rows per work group: gemm.gemv's choice (T invocations per row); DM_VULKAN_BLOCK_FRONT=T
  // forces T (a power of two ≤ 256).
  uint32_t T = 256 / gemv_config(g).rows;
  if (const char* e = std::getenv("DM_VULKAN_BLOCK_FRONT"); e && *e) {
    unsigned t = 0;
    if (std::sscanf(e, "%u", &t) != 1 || t < 1 || t > 256 || (t & (t - 1)) != 0)
      fail("[vulkan] DM_VULKAN_BLOCK_FRONT=", e, ": want T, a power of two ≤ 256");
    T = t;
  }
  const uint32_t rows = 256 / T;
  // Three dispatches need one x_proj row per invocation of A and B (NR ≤ 256) and a work
  // group's xc slice in registers (rows ≤ 32); else four.
  const bool three = mode == BlockStepMode::kThree && NR <= 256 && rows <= 32;
  const bool ok =
      mode != BlockStepMode::kOff && g.M == 1 && p.front.has_conv && shuffles_ok() &&
      !old_decode_kernels() && caps.subgroup_size >= lanes && caps.max_storage_buffers >= 13 &&
      p.front.conv.d_conv <= 8 && N <= 256 && E > 0 &&
      16ull * dv + 4 * (256 + 64 + 32) <= caps.max_shared_bytes &&
      4ull * (NR + 256) <= caps.max_shared_bytes && vec_aligned(a.in_proj, D, g.w_stride) &&
      rows_fit(a.in_proj) >= a.in_proj.rows &&
      rows_fit(a.x_proj) >= a.x_proj.rows && rows_fit(a.dt_proj) >= a.dt_proj.rows;
  if (!ok) return block_step_composed(a, p);
  // The partial x_dbl vectors of the three-dispatch form: one per work group of A that owns xc
  // channels.
  const uint32_t groups = ceil_div(E, rows);
  const uint64_t part_bytes = 4ull * groups * NR;
  if (three) ensure_scratch(block_part_, part_bytes);

  // A: mamba_step.front(_xpart).
  {
    const char* k = three ? "mamba_step.front_xpart" : "mamba_step.front";
    const uint32_t pieces = D / (a.in_proj.dtype == DType::F32 ? 4 : 8);
    const uint32_t pipe = std::clamp<uint32_t>(ceil_div(pieces, T), 1, 16);
    const CausalConv1dStepParams& c = p.front.conv;
    const Tensor& res = a.residual;
    BufferUse ux = a.x ? bind(*a.x, false, k, "x") : dummy(), ur = bind(res, false, k, "residual"),
              unw = bind(a.norm_weight, false, k, "norm_weight"),
              un = bind(a.normed, true, k, "normed"), uw = bind(a.in_proj, false, k, "in_proj"),
              ub = a.in_proj_bias ? bind(*a.in_proj_bias, false, k, "in_proj_bias") : dummy(),
              uxz = bind(a.xz, true, k, "xz"), ucw = bind(a.conv_weight, false, k, "conv_weight"),
              ucb = a.conv_bias ? bind(*a.conv_bias, false, k, "conv_bias") : dummy(),
              ucs = bind(a.conv_state, true, k, "conv_state"), uxc = bind(a.xc, true, k, "xc");
    const FrontPush fp{D,          g.N,          g.w_stride,       g.w_dtype,
                       g.bias_dtype, g.has_bias, a.x ? 1u : 0u,    p.front.norm.weight_dtype,
                       a.eps,      c.channels,   c.d_conv,         c.weight_dtype,
                       c.bias_dtype, c.has_bias};
    Push push(fp, {a.x ? off(*a.x, ux) : 0u, off(res, ur), off(a.norm_weight, unw),
                   off(a.normed, un), off(a.in_proj, uw),
                   a.in_proj_bias ? off(*a.in_proj_bias, ub) : 0u, off(a.xz, uxz),
                   off(a.conv_weight, ucw), a.conv_bias ? off(*a.conv_bias, ucb) : 0u,
                   off(a.conv_state, ucs), off(a.xc, uxc)});
    std::vector<BufferUse> uses = {ux, ur, unw, un, uw, ub, uxz, ucw, ucb, ucs, uxc};
    if (three) {
      const BufferUse uxp = bind(a.x_proj, false, k, "x_proj");
      uses.push_back(uxp);
      uses.push_back(scratch(*block_part_, part_bytes));
      push.append({NR, p.x_proj.w_stride, p.x_proj.w_dtype, off(a.x_proj, uxp), 0u});
    }
    auto& pipe_a = pipelines_.get(k, uint32_t(uses.size()), push.size,
                                  {rows, pipe, caps.subgroup_size, dv, block_conv_late() ? 1u : 0u},
                                  256, k);
    const Grid gr = linear_grid(ceil_div(g.N, rows));
    rec_->dispatch(pipe_a, uses, push.bytes, push.size, gr.x, gr.y, gr.z);
  }

  if (!three) gemm(a.xc, a.x_proj, nullptr, a.x_dbl);

  // B: mamba_step.scan_xpart (x_dbl summed from A's slices) or mamba_step.scan (read).
  {
    const char* k = three ? "mamba_step.scan_xpart" : "mamba_step.scan";
    const Tensor z = block_step_views(a).z;
    BufferUse uu = bind(a.xc, false, k, "xc"), ud = bind(a.dt, true, k, "dt"),
              ua = bind(a.A_log, false, k, "A_log"), uD = bind(a.D, false, k, "D"),
              uz = bind(z, false, k, "z"), udb = bind(a.dt_bias, false, k, "dt_bias"),
              us = bind(a.ssm_state, true, k, "ssm_state"), uy = bind(a.y, true, k, "y"),
              uxd = bind(a.x_dbl, three, k, "x_dbl"),
              upart = three ? read_only(scratch(*block_part_, part_bytes)) : dummy(),
              udp = bind(a.dt_proj, false, k, "dt_proj"),
              ur = a.x ? bind(a.residual, true, k, "residual") : dummy(),
              ux = a.x ? bind(*a.x, false, k, "x") : dummy();
    const ScanPush sp{E,           R,           D,           groups,      p.scan.dt.w_stride,
                      p.scan.dt.w_dtype, s.A_log_dtype, s.D_dtype, s.dt_bias_dtype,
                      a.x ? 1u : 0u};
    Push push(sp, {off(a.xc, uu), off(a.dt, ud), off(a.A_log, ua), off(a.D, uD), off(z, uz),
                   off(a.dt_bias, udb), off(a.ssm_state, us), off(a.y, uy), off(a.x_dbl, uxd), 0u,
                   off(a.dt_proj, udp), a.x ? off(a.residual, ur) : 0u, a.x ? off(*a.x, ux) : 0u});
    auto& pipe_b = pipelines_.get(k, 13, push.size, {N, lanes, NR}, 256, k);
    rec_->dispatch(pipe_b, {uu, ud, ua, uD, uz, udb, us, uy, uxd, upart, udp, ur, ux}, push.bytes,
                   push.size, ceil_div(E, 256 / lanes), 1, 1);
  }

  // C: out_proj.
  gemm(a.y, a.out_proj, a.out_proj_bias, a.hidden);
}

}  // namespace dm::vk
