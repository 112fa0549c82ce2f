// The Vulkan backend's GEMMs: the tiled and tensor-core prefill GEMMs (shaders/gemm.comp,
// shaders/gemm_coopmat.comp), the decode GEMVs (shaders/gemv_sg.comp, shaders/gemv.comp), and
// which one a call takes.
#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "backend/vulkan/vulkan_backend.h"
#include "backend/vulkan/vulkan_backend_impl.h"

namespace dm::vk {

void VulkanBackend::gemm(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) {
  const GemmParams p = make_gemm_params(x, w, bias, y);
  if (p.M == 0 || p.N == 0) return;
  // Larger than one binding: rows of x and y in pieces, then rows of w (columns of y).
  if (const int64_t m = std::min(rows_fit(x), rows_fit(y)); m < x.rows) {
    for (int64_t m0 = 0; m0 < x.rows; m0 += m) {
      const int64_t n = std::min(m, x.rows - m0);
      gemm(x.row_slice(m0, n), w, bias, y.row_slice(m0, n));
    }
    return;
  }
  if (const int64_t nw = rows_fit(w); nw < w.rows) {
    for (int64_t n0 = 0; n0 < w.rows; n0 += nw) {
      const int64_t n = std::min(nw, w.rows - n0);
      const Tensor b = bias ? vec_slice(*bias, n0, n) : Tensor{};
      gemm(x, w.row_slice(n0, n), bias ? &b : nullptr, y.col_slice(n0, n));
    }
    return;
  }
  const char* k = "gemm";
  BufferUse ux = bind(x, false, k, "x"), uw = bind(w, false, k, "w"),
            ub = bias ? bind(*bias, false, k, "bias") : dummy(), uy = bind(y, true, k, "y");
  Push push(p, {off(x, ux), off(w, uw), bias ? off(*bias, ub) : 0u, off(y, uy)});
  if (p.M <= 4 && small_m_vec_ok(x, w, p)) {            // decode, 16-byte loads: gemv_sg.comp
    if (const GemvConfig gc = gemv_config(p); gc.ok) {  // gemm.gemv
      Push vp(p, {off(x, ux), off(w, uw), bias ? off(*bias, ub) : 0u, off(y, uy), gc.rows});
      const std::string k = gc.pipeline("gemm.gemv");
      auto& pipe = pipelines_.get(k, 4, vp.size, gc.spec(), 256, k);
      const Grid g = linear_grid(ceil_div(p.N, gc.rows_per_group()));
      rec_->dispatch(pipe, {ux, uw, ub, uy}, vp.bytes, vp.size, g.x, g.y, g.z);
      return;
    }
    const uint32_t rows = small_m_vec_rows(p);
    Push vp(p, {off(x, ux), off(w, uw), bias ? off(*bias, ub) : 0u, off(y, uy), rows});
    auto& pipe = pipelines_.get("gemm.small_m_vec", 4, vp.size, {}, 256, "gemm.small_m_vec");
    const Grid g = linear_grid(ceil_div(p.N, rows));
    rec_->dispatch(pipe, {ux, uw, ub, uy}, vp.bytes, vp.size, g.x, g.y, g.z);
    return;
  }
  if (p.M <= 4) {  // decode: one pass over W, 8 rows of it per work group
    auto& pipe = pipelines_.get("gemm.small_m", 4, push.size, {}, 256, "gemm.small_m");
    const Grid g = linear_grid(ceil_div(p.N, 8));
    rec_->dispatch(pipe, {ux, uw, ub, uy}, push.bytes, push.size, g.x, g.y, g.z);
    return;
  }
  // Tensor cores for 16-bit weights where the device has them (shaders/gemm_coopmat.comp:
  // activations split into fp16 hi + lo, fp32 accumulation).
  if (ctx_->caps.gemm_coopmat && p.M >= 16 && (w.dtype == DType::F16 || w.dtype == DType::BF16)) {
    gemm_coopmat(x, w, bias, y, p, ux, uw, ub, uy);
    return;
  }
  // The 128×128 tiles with 16-byte loads (gemm_vec.comp) where x's, w's and y's rows allow
  // them, thin N too (x_proj: split K fills the grid; H200 with cooperative matrices off,
  // session 15: 130m x_proj at M 4096 107.7 µs on the 64×64 tiles, 176.7 as gemm.vec128 unsplit,
  // 56.0 split 8 ways); else 128×128 tiles where both sides fill them (prefill projections),
  // 64×64 otherwise.
  if (p.M >= 128 && gemm_vec_ok(x, w, y, p)) {
    gemm_vec(x, w, bias, y, p, ux, uw, ub, uy);
    return;
  }
  const uint32_t tile = p.M >= 128 && p.N >= 128 ? 128 : 64;
  const char* variant = tile == 64 ? "gemm" : "gemm.tile128";
  auto& pipe = pipelines_.get(variant, 4, push.size, {}, 256, variant);
  rec_->dispatch(pipe, {ux, uw, ub, uy}, push.bytes, push.size, ceil_div(p.N, tile),
                 ceil_div(p.M, tile), 1);
}

namespace {
// DM_VULKAN_GEMM_SPLITK=S: the K splits both prefill GEMMs are forced to (1: none); 0 when unset.
uint32_t forced_gemm_splits() {
  const char* e = std::getenv("DM_VULKAN_GEMM_SPLITK");
  if (!e || !*e) return 0;
  const int v = std::atoi(e);
  if (v < 1) fail("[vulkan] DM_VULKAN_GEMM_SPLITK=", e, ": want a number of splits ≥ 1");
  return uint32_t(v);
}
}  // namespace

// vulkan_simt_gemm_splits for this device, DM_VULKAN_GEMM_SPLITK forcing the count.
uint32_t VulkanBackend::simt_splits(const GemmParams& p) const {
  return vulkan_simt_gemm_splits(p.M, p.N, p.K, ctx_->caps.compute_units,
                                 ctx_->caps.max_storage_range, forced_gemm_splits());
}

// gemm.vec128 (gemm_vec.comp), split over K by simt_splits.
void VulkanBackend::gemm_vec(const Tensor& x, const Tensor& w, const Tensor* bias,
                             const Tensor& y, const GemmParams& p, const BufferUse& ux,
                             const BufferUse& uw, const BufferUse& ub, const BufferUse& uy) {
  const GemmSplitPush cp{p, {off(x, ux), off(w, uw), bias ? off(*bias, ub) : 0u, off(y, uy)}, 0u,
                         p.K};
  auto& pipe = pipelines_.get("gemm.vec128", 4, sizeof(cp), {}, 256, "gemm.vec128");
  gemm_split_dispatch(pipe, cp, 16, simt_splits(p), ceil_div(p.N, 128), ceil_div(p.M, 128), p,
                      {ux, uw, ub, uy}, bias, y);
}

// A GEMM pipeline (push block GemmSplitPush) over gx × gy work groups, K split `splits` ways in
// multiples of `step`: work group z's partial product into slab z of scratch (rows of N rounded
// up to 4 floats, so whole tiles store directly), then gemm.splitk_sum adds them in order (and
// the bias) into y. One split: the GEMM straight into y. uses: x, w, bias, y.
void VulkanBackend::gemm_split_dispatch(Pipeline& pipe, GemmSplitPush cp, uint32_t step,
                                        uint32_t splits, uint32_t gx, uint32_t gy,
                                        const GemmParams& p, const std::array<BufferUse, 4>& uses,
                                        const Tensor* bias, const Tensor& y) {
  const auto& [ux, uw, ub, uy] = uses;
  if (splits <= 1) {
    rec_->dispatch(pipe, {ux, uw, ub, uy}, &cp, sizeof(cp), gx, gy, 1);
    return;
  }
  cp.k_split = ceil_div(ceil_div(p.K, step), splits) * step;
  const uint32_t S = ceil_div(p.K, cp.k_split);  // none empty
  const uint32_t ps = (p.N + 3) / 4 * 4;
  const uint64_t part_bytes = uint64_t(S) * p.M * ps * 4;
  ensure_scratch(gemm_part_, part_bytes);
  const BufferUse upart = scratch(*gemm_part_, part_bytes);
  cp.g.y_stride = ps;
  cp.g.has_bias = 0;
  cp.off[3] = 0;
  cp.flags |= 4u;  // gemm_coopmat.comp: whole tiles stored straight (gemm_vec.comp has no flags)
  rec_->dispatch(pipe, {ux, uw, untracked(ub), upart}, &cp, sizeof(cp), gx, gy, S);
  splitk_sum(p, S, ps, upart, bias, ub, y, uy);
}

// y = Σ_s partials[s] (+ bias), s in order (gemm.splitk_sum): the split-K GEMMs' second pass.
void VulkanBackend::splitk_sum(const GemmParams& p, uint32_t S, uint32_t ps,
                               const BufferUse& upart, const Tensor* bias, const BufferUse& ub,
                               const Tensor& y, const BufferUse& uy) {
  struct {
    uint32_t M, N, S, part_stride, y_stride, bias_dtype, has_bias;
    uint32_t off[2];
  } sp{p.M,          p.N,          S, ps, p.y_stride, p.bias_dtype,
       p.has_bias, {bias ? off(*bias, ub) : 0u, off(y, uy)}};
  auto& sum = pipelines_.get("gemm_splitk", 3, sizeof(sp), {}, 256, "gemm.splitk_sum");
  const Grid g = linear_grid(ceil_div(uint64_t(p.M) * p.N, 256));
  rec_->dispatch(sum, {read_only(upart), ub, uy}, &sp, sizeof(sp), g.x, g.y, g.z);
}

// The tensor-core GEMM's pipelines (shaders/gemm_coopmat.comp): DM_VULKAN_GEMM_COOPMAT name,
// pipeline, output tile (bm × bn), invocations, and the µs one k step of 32 takes a full wave of
// them (one work group per SM) on an H100, from the 130m in_proj at M = 32768 (bench_vulkan
// --gemm-variants, session 8: 1946 / 2221 / 1820 µs in 24 / 47 / 32 waves of 24 steps);
// n128 is never chosen (forced only).
namespace {
struct CoopmatVariant {
  const char* env;
  const char* pipeline;
  uint32_t bm, bn, threads;
  double step_us;
};
constexpr CoopmatVariant kCoopmat[] = {
    {"n256", "gemm.coopmat", 128, 256, 512, 3.38},
    {"t32", "gemm.coopmat_t32", 128, 128, 512, 1.97},
    {"n192", "gemm.coopmat_n192", 128, 192, 512, 2.37},
    {"n128", "gemm.coopmat_n128", 128, 128, 256, 0},
};
constexpr uint32_t kChosen = 3;  // the first kChosen variants are the default's candidates
constexpr uint32_t kSms = 132;   // SMs where the device does not say (an H100 SXM's): one wave
constexpr uint32_t kMaxSplits = 16;
}  // namespace

// The tensor-core GEMM's variant and K splits (gemm_coopmat.comp): the pair with the least
// estimated time = waves of kSms work groups × k steps per split × the variant's step time, plus
// for a split ~4 µs and the partials written, read back and y written at 3 TB/s.
// Splits keep at least 4 k steps each. Measured on an H100 (session 8, bench_vulkan, 130m
// GEMMs at M = 2001 and 32768), the estimate ranks the variants as measured on 7 of the 8
// shapes (dt_proj at 32768: n192 220.0 µs against n256's 216.6) and picks: 128 × 192 (n192) for
// in_proj, dt_proj and out_proj (out_proj at 2001 with 2 splits: 85.3 µs against t32's 90.7;
// in_proj 1820 against 1946 at 32768), t32 for x_proj, split 8 ways at 2001 rows (16 work
// groups of 48 k steps otherwise: 81.3 → 22.8 µs). Other GPUs get a plausible, uncalibrated
// choice. DM_VULKAN_GEMM_COOPMAT=<name> forces a variant, DM_VULKAN_GEMM_SPLITK=S the splits
// (1: none; at most one per k step); what is not forced is still chosen.
VulkanBackend::CoopmatPlan VulkanBackend::coopmat_plan(const GemmParams& p) const {
  const uint32_t ksteps = ceil_div(p.K, 32);
  uint32_t first = 0, last = kChosen;
  uint32_t s_lo = 1, s_hi = std::max<uint32_t>(1, std::min(kMaxSplits, ksteps / 4));
  if (const char* e = std::getenv("DM_VULKAN_GEMM_COOPMAT"); e && *e) {
    first = uint32_t(std::size(kCoopmat));
    for (uint32_t i = 0; i < std::size(kCoopmat); ++i)
      if (std::strcmp(e, kCoopmat[i].env) == 0) first = i;
    if (first == std::size(kCoopmat))
      fail("[vulkan] DM_VULKAN_GEMM_COOPMAT=", e, ": want n256, t32, n192 or n128");
    last = first + 1;
  }
  if (const uint32_t forced = forced_gemm_splits(); forced > 0)
    s_lo = s_hi = std::min(forced, ksteps);
  CoopmatPlan best{first, 1};
  double best_us = 1e300;
  const uint64_t slab = uint64_t(p.M) * ((p.N + 3) / 4 * 4) * 4;  // one split's partials, bytes
  const uint32_t sms = ctx_->caps.compute_units ? ctx_->caps.compute_units : kSms;
  for (uint32_t i = first; i < last; ++i) {
    const CoopmatVariant& v = kCoopmat[i];
    const uint64_t groups = uint64_t(ceil_div(p.N, v.bn)) * ceil_div(p.M, v.bm);
    for (uint32_t s = s_lo; s <= s_hi; ++s) {
      const uint32_t steps = ceil_div(ksteps, s), splits = ceil_div(ksteps, steps);  // none empty
      if (splits > 1 && splits * slab > ctx_->caps.max_storage_range / 4 * 4) break;  // one binding
      double us = double(ceil_div(groups * splits, sms)) * steps * v.step_us;
      if (splits > 1) us += 4.0 + double(2 * splits + 1) * double(p.M) * p.N * 4 / 3e6;
      if (us < best_us) best_us = us, best = {i, splits};
    }
  }
  return best;
}

// The tensor-core GEMM (shaders/gemm_coopmat.comp), its variant and splits by coopmat_plan. The
// flags tell the shader which 16-byte paths the alignments allow: rows 16-byte aligned (the
// tensor's byte offset and row stride; the descriptor start is then aligned too, see
// small_m_vec_ok), direct stores without bias.
void VulkanBackend::gemm_coopmat(const Tensor& x, const Tensor& w, const Tensor* bias,
                                 const Tensor& y, const GemmParams& p, const BufferUse& ux,
                                 const BufferUse& uw, const BufferUse& ub, const BufferUse& uy) {
  GemmSplitPush cp{p, {off(x, ux), off(w, uw), bias ? off(*bias, ub) : 0u, off(y, uy)}, 0u, p.K};
  if (x.offset % 16 == 0 && p.x_stride % 4 == 0) cp.flags |= 1u;
  if (w.offset % 16 == 0 && p.w_stride % 8 == 0) cp.flags |= 2u;
  if (!bias && y.offset % 16 == 0 && p.y_stride % 4 == 0) cp.flags |= 4u;
  const CoopmatPlan plan = coopmat_plan(p);
  const CoopmatVariant* v = &kCoopmat[plan.variant];
  auto& pipe = pipelines_.get(v->pipeline, 4, sizeof(cp), {}, v->threads, v->pipeline);
  gemm_split_dispatch(pipe, cp, 32, plan.splits, ceil_div(p.N, v->bn), ceil_div(p.M, v->bm), p,
                      {ux, uw, ub, uy}, bias, y);
}

// Invocations per row T (256 / rows): about six 16-byte pieces each, at least 8 (so the
// reduction stays short), and more (fewer rows per group) while the grid would leave a
// large GPU idle and each invocation still gets two pieces.
uint32_t VulkanBackend::small_m_vec_rows(const GemmParams& p) {
  const uint32_t pieces = p.K / (p.w_dtype == uint32_t(DType::F32) ? 4 : 8);
  uint32_t T = 8;
  while (T < 256 && T * 6 < pieces) T *= 2;
  while (T < 256 && ceil_div(p.N, 256 / T) < 264 && pieces >= 2 * T) T *= 2;
  return 256 / T;
}

// Subgroup shuffles in compute, subgroups of 4 … 128 (a power of two) and work groups of 256.
bool VulkanBackend::shuffles_ok() const {
  const auto& c = ctx_->caps;
  const VkSubgroupFeatureFlags need =
      VK_SUBGROUP_FEATURE_BASIC_BIT | VK_SUBGROUP_FEATURE_SHUFFLE_BIT;
  const uint32_t sg = c.subgroup_size;
  return c.subgroup_in_compute && (c.subgroup_ops & need) == need && sg >= 4 && sg <= 128 &&
         (sg & (sg - 1)) == 0 && c.max_wg_invocations >= 256;
}

// DM_VULKAN_GEMV=old: the decode kernels as they were before the subgroup ones (gemm.small_m_vec,
// gemm.small_m_vec_conv, selective_scan_step.dt_proj), for comparisons in one run.
bool VulkanBackend::old_decode_kernels() {
  const char* env = std::getenv("DM_VULKAN_GEMV");
  return env && std::strcmp(env, "old") == 0;
}

// gemm.gemv (shaders/gemv_sg.comp): where the device has subgroup shuffles in compute and a
// subgroup size of 4 … 128 (a power of two; rows are reduced inside subgroups of consecutive
// invocations, as NVIDIA, AMD, Intel and lavapipe lay out a one-dimensional work group).
// Sizes, all specialization constants: T invocations per row (ROWS = 256 / T rows per work
// group) and PIPE pieces per invocation in flight. By default T is the smallest power of two
// that leaves each invocation at most 3 pieces (its whole share of the row is one batch of
// loads), doubled while the grid has fewer than 264 work groups (two per SM of an H100: thin
// layers) and some invocation keeps 2 pieces; PIPE covers the share. Measured on an H100
// (bench_vulkan --sections gemv, every power of two T per 130m / 2.8b decode shape, L2 flushed):
// 2–3 pieces per invocation was the fastest or within 3% of it on every shape; 5, 6 or 10
// pieces (fewer, longer-lived invocations) 3–40% slower. DM_VULKAN_GEMV=old selects
// gemm.small_m_vec; DM_VULKAN_GEMV=T,PIPE forces a shape, T,PIPE,RW one with RW rows of W per
// slot (1, 2 or 4; batch 1), and DM_VULKAN_GEMV_RW=RW the default shape with RW rows per slot
// (PIPE cut to keep PIPE · RW ≤ 16 loads in flight).
// RW by default: 2 at batch 1 for matrices of at least kGemvRw2MinRows rows (in_proj, out_proj
// from 1.4b up, every LM head), else 1. H200, session 17 (bench/results/
// h200_session17_2026-11-28.md, call 7, bench_vulkan decode, two rounds), µs a token with RW 1 /
// 2 / 4 for every one-row GEMV: 2.8b 3377 / 3153 / 3871 and 3370 / 3183 / 3720, 1.4b 1971 / 1887
// / 1969 and 1952 / 1871 / 1950. RW 4 holds 80 registers and NVIDIA's compiler moved its
// 12-piece weight array to shared memory (12 KB a work group: pipeline statistics) — perhaps
// what made session 16's spec-constant form slower too (its statistics were not taken). Alone,
// with L2 flushed, RW 2 was not faster but for the LM heads (2.8b 75.8 → 69.6 µs); thin GEMVs
// (x_proj, dt_proj) were slower with it.
VulkanBackend::GemvConfig VulkanBackend::gemv_config(const GemmParams& p) const {
  GemvConfig g;
  const uint32_t sg = ctx_->caps.subgroup_size;
  if (!shuffles_ok() || old_decode_kernels()) return g;
  const char* env = std::getenv("DM_VULKAN_GEMV");
  const uint32_t pieces = p.K / (p.w_dtype == uint32_t(DType::F32) ? 4 : 8);
  uint32_t T = 1, pipe = 0, rw = 1;
  if (env && *env) {
    unsigned t = 0, q = 0, r = 1;
    const int got = std::sscanf(env, "%u,%u,%u", &t, &q, &r);
    if (got < 2 || t < 1 || t > 256 || (t & (t - 1)) != 0 || q < 1 || q > 16 ||
        (r != 1 && r != 2 && r != 4))
      fail("[vulkan] DM_VULKAN_GEMV=", env,
           ": want old, or T,PIPE[,RW] with T a power of two ≤ 256, PIPE 1 … 16, RW 1, 2 or 4");
    T = t, pipe = q, rw = r;
  } else {
    while (T < 256 && ceil_div(pieces, T) > 3) T *= 2;
    while (T < 256 && ceil_div(p.N, 256 / T) < 264 && pieces > 2 * T) T *= 2;
    pipe = std::clamp<uint32_t>(ceil_div(pieces, T), 1, 16);
    rw = p.N >= kGemvRw2MinRows ? 2 : 1;
    if (const char* e = std::getenv("DM_VULKAN_GEMV_RW"); e && *e) {
      if (std::strcmp(e, "1") != 0 && std::strcmp(e, "2") != 0 && std::strcmp(e, "4") != 0)
        fail("[vulkan] DM_VULKAN_GEMV_RW=", e, ": want 1, 2 or 4 rows of W per slot");
      rw = uint32_t(std::atoi(e));
    }
    pipe = std::max<uint32_t>(1, std::min(pipe, 16 / rw));
  }
  if (p.M != 1) rw = 1;  // rows per slot at batch 1 only
  g.ok = true;
  g.rw = rw;
  g.rows = 256 / T;
  g.pipe = pipe;
  g.mm = p.M == 1 ? 1 : 4;
  g.sg = sg;
  return g;
}

// gemm.vec128 (gemm_vec.comp) where its 16-byte loads and stores line up: x's, w's and y's rows
// 16-byte aligned, K whole pieces. DM_VULKAN_GEMM_VEC=0 keeps gemm.tile128 there.
bool VulkanBackend::gemm_vec_ok(const Tensor& x, const Tensor& w, const Tensor& y,
                                const GemmParams& p) {
  const char* e = std::getenv("DM_VULKAN_GEMM_VEC");
  if (e && std::strcmp(e, "0") == 0) return false;
  return small_m_vec_ok(x, w, p) && y.offset % 16 == 0 && p.y_stride % 4 == 0;
}

}  // namespace dm::vk

namespace dm {

// gemm.vec128's K splits (each split keeping ≥ 8 k steps of 16, at most 16 splits). Where the
// device reports its compute units (Caps::compute_units: NVIDIA, AMD), by waves: the fewest
// splits whose wave-steps (⌈groups · S / slots⌉ waves of ⌈k steps / S⌉ steps, slots = two work
// groups per unit, as the H200 ran them) come within 5% of the least (more splits write and sum
// more partials), taken when that saves ≥ 10% against one split. Elsewhere (Intel, lavapipe)
// doubled while the grid stays within 256 work groups (two per unit of a ~128-unit GPU). H200,
// cooperative matrices off (bench/results/h200_session15_2026-11-28.md, calls 8-10): 130m
// x_proj 107.7 → 56.0 µs at M 4096 (8 splits); 2.8b x_proj 684.8 → 293.1 (4); 2.8b out_proj
// 3198.7 → 2732.6 at M 4096 (2: 640 groups are 2.4 waves of 264; 16, which a rule without the 5%
// took in call 10, 2789.0) and 2142.3 → 1378.8 at 2048 (4); the fastest measured count on every
// shape of call 9 but 1.4b's out_proj at 2048 (2 splits: 239.7 against 236.0). `forced` > 0
// replaces the rule (at most one split per k step); either way the partials must fit a binding.
uint32_t vulkan_simt_gemm_splits(uint32_t M, uint32_t N, uint32_t K, uint32_t compute_units,
                                 uint64_t max_binding, uint32_t forced) {
  constexpr uint32_t kTargetGroups = 256, kMaxSplits = 16, kMinSteps = 8;
  const uint64_t ksteps = (uint64_t(K) + 15) / 16;
  const uint64_t groups = uint64_t((N + 127) / 128) * ((M + 127) / 128);
  uint32_t s = 1;
  if (forced > 0) {
    s = uint32_t(std::min<uint64_t>(forced, std::max<uint64_t>(ksteps, 1)));
  } else if (compute_units > 0) {
    const uint64_t slots = 2ull * compute_units;
    auto wave_steps = [&](uint64_t n) {
      return (groups * n + slots - 1) / slots * ((ksteps + n - 1) / n);
    };
    uint64_t least = wave_steps(1);
    for (uint32_t n = 2; n <= kMaxSplits && ksteps / n >= kMinSteps; n *= 2)
      least = std::min(least, wave_steps(n));
    while (wave_steps(s) * 20 > least * 21) s *= 2;  // the fewest within 5% of the least
    if (wave_steps(s) * 10 > wave_steps(1) * 9) s = 1;
  } else {
    while (s * 2 <= kMaxSplits && groups * s * 2 <= kTargetGroups &&
           ksteps / (s * 2) >= kMinSteps)
      s *= 2;
  }
  // The partials in one binding: S = ⌈k steps / ⌈k steps / s⌉⌉ slabs of M rows.
  const uint64_t slab = uint64_t(M) * ((N + 3) / 4 * 4) * 4;
  auto slabs = [&](uint64_t n) {
    const uint64_t per = (ksteps + n - 1) / n;
    return (ksteps + per - 1) / per;
  };
  while (s > 1 && slabs(s) * slab > max_binding / 4 * 4) s /= 2;
  return s;
}

}  // namespace dm
