// The Vulkan backend's prompt scan: the chunked three-pass scan (the default), the warp,
// subgroup and look-back scans (opt-in), their shapes and their scratch buffers.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <tuple>

#include "backend/vulkan/vulkan_backend_impl.h"

namespace dm::vk {

namespace {
// What the warp and segment scans need of the device: d_state 16, subgroup basic and shuffle
// operations in compute shaders, a power-of-two subgroup of 4 to 128 invocations.
bool subgroup_scan_supported(const SelectiveScanParams& p, const Caps& c) {
  const VkSubgroupFeatureFlags need =
      VK_SUBGROUP_FEATURE_BASIC_BIT | VK_SUBGROUP_FEATURE_SHUFFLE_BIT;
  const uint32_t sg = c.subgroup_size;
  return p.d_state == 16 && c.subgroup_in_compute && (c.subgroup_ops & need) == need && sg >= 4 &&
         sg <= 128 && (sg & (sg - 1)) == 0;
}
// Whether their vec4 variants apply: the channel count, every row stride and the element
// offsets of u, delta, B, C, z, y in their bindings (offs) multiples of 4.
bool scan_vec4(const SelectiveScanParams& p, std::initializer_list<uint32_t> offs) {
  bool vec = p.channels % 4 == 0 && p.u_stride % 4 == 0 && p.delta_stride % 4 == 0 &&
             p.B_stride % 4 == 0 && p.C_stride % 4 == 0 && p.y_stride % 4 == 0 &&
             (!p.has_z || p.z_stride % 4 == 0);
  for (uint32_t o : offs) vec = vec && o % 4 == 0;
  return vec;
}
}  // namespace

// The scan over consecutive pieces of at most m time steps, the state carrying between them.
void VulkanBackend::scan_in_pieces(int64_t m, const Tensor& u, const Tensor& delta,
                                   const Tensor& A_log, const Tensor& B, const Tensor& C,
                                   const Tensor& D, const Tensor* z, const Tensor& dt_bias,
                                   const Tensor& ssm_state, const Tensor& y) {
  for (int64_t t0 = 0; t0 < u.rows; t0 += m) {
    const int64_t n = std::min(m, u.rows - t0);
    const Tensor zs = z ? z->row_slice(t0, n) : Tensor{};
    selective_scan(u.row_slice(t0, n), delta.row_slice(t0, n), A_log, B.row_slice(t0, n),
                   C.row_slice(t0, n), D, z ? &zs : nullptr, dt_bias, ssm_state,
                   y.row_slice(t0, n));
  }
}

void VulkanBackend::selective_scan(const Tensor& u, const Tensor& delta, const Tensor& A_log,
                                   const Tensor& B, const Tensor& C, const Tensor& D,
                                   const Tensor* z, const Tensor& dt_bias, const Tensor& ssm_state,
                                   const Tensor& y) {
  const SelectiveScanParams p =
      make_selective_scan_params(u, delta, A_log, B, C, D, z, dt_bias, ssm_state, y);
  if (p.L == 0 || p.channels == 0) return;
  // Longer than one binding: consecutive pieces of time, the state carrying between them.
  if (const int64_t m = std::min({rows_fit(u), rows_fit(delta), rows_fit(B), rows_fit(C),
                                  rows_fit(y), z ? rows_fit(*z) : u.rows});
      m < u.rows) {
    scan_in_pieces(m, u, delta, A_log, B, C, D, z, dt_bias, ssm_state, y);
    return;
  }
  const char* k = "selective_scan";
  check_small(k, "d_state", p.d_state, 256);
  const ScanBindings sb = bind_scan(k, u, delta, A_log, B, C, D, z, dt_bias, ssm_state, y);

  const std::string mode = scan_mode();
  // DM_VULKAN_SCAN=lookback (experimental, opt-in): one pass over the inputs, parallel over
  // channels and time, the chunks' start states by a decoupled look-back with fallback
  // (shaders/selective_scan_lb.comp). Correct on lavapipe and an H100, but measured 2-4x
  // SLOWER than the chunked scan on the H100 (6-11% of the floor; README). Needs d_state 16
  // and its shared memory, no optional feature. Not while a command buffer is captured for
  // replay: the dispatch's ticket base and epoch are push constants, valid once. The host's
  // ticket count assumes every recorded dispatch runs (a batch dropped after recording would
  // leave the device counter behind).
  if (mode == "lookback" && !rec_->capturing()) {
    if (const LbConfig lb = lb_config(p.d_state); lb.ok) {
      const uint32_t chunk = lb.s * lb.tok;
      const uint64_t groups = ceil_div(p.channels, lb.cw);
      const uint64_t slot_bytes = uint64_t(lb.cw) * (2 * 16 + 1) * 4;
      const uint64_t cap =
          std::min<uint64_t>(ctx_->caps.max_storage_range / 4 * 4, uint64_t(256) << 20);
      const uint64_t max_chunks =
          groups > kLbMaxGroups ? 0
                                : std::min<uint64_t>((cap - std::min(cap, groups * lb.cw * 64)) /
                                                         (groups * slot_bytes),
                                                     (lb_sync_words() - 4 - kLbMaxGroups) / groups);
      // max_chunks 0: one chunk's scratch for every channel exceeds a binding; the chunked
      // scan below then.
      if (max_chunks > 0 &&
          uint64_t(p.L) > max_chunks * chunk) {  // pieces of time, the state carried
        scan_in_pieces(int64_t(max_chunks * chunk), u, delta, A_log, B, C, D, z, dt_bias, ssm_state,
                       y);
        return;
      }
      if (max_chunks > 0) {
        const uint32_t n_chunks = ceil_div(p.L, chunk);
        const uint64_t nslot = uint64_t(n_chunks) * groups;
        const uint64_t scr_bytes = nslot * slot_bytes + groups * lb.cw * 16 * 4;  // + final state
        ensure_scratch(scan_h_, scr_bytes);
        ensure_sync();
        BufferUse uscr = scratch(*scan_h_, scr_bytes),
                  usync = scratch(*scan_sync_, scan_sync_->bytes());
        const Grid g = linear_grid(nslot);
        Push push(p, {n_chunks, lb_tickets_, lb_epoch_});
        push.append(sb.off);
        lb_tickets_ += g.x * g.y * g.z;  // mod 2^32, as the device counter
        lb_epoch_ = (lb_epoch_ + 1) & 0x3fffffffu;
        if (lb_epoch_ == 0) lb_epoch_ = 1;  // 0 is the freshly cleared flags' tag
        const char* variant =
            lb.tok == 8 ? "selective_scan.lookback_t8" : "selective_scan.lookback_t4";
        // Polls before the fallback: bounded everywhere; few on a CPU device, whose loops are
        // capped (lavapipe) and whose work groups may run one at a time.
        const uint32_t poll = ctx_->caps.type == "cpu" ? 64 : 4096;
        auto& pipe = pipelines_.get(variant, 12, push.size, {lb.cw * lb.s, lb.cw, lb.s, poll},
                                    lb.cw * lb.s, "selective_scan.lookback");
        rec_->dispatch(pipe, sb.uses({uscr, usync}), push.bytes, push.size, g.x, g.y, g.z);
        if (std::getenv(
                "DM_VULKAN_LB_DEBUG")) {  // fallbacks so far (work groups that gave up polling)
          uint32_t w[4];
          rec_->download(*scan_sync_, 0, w, 16);
          std::fprintf(stderr, "[vulkan] selective_scan.lookback L=%u C=%u: %u fallbacks so far\n",
                       p.L, p.channels, w[3]);
        }
        return;
      }
    }
  }
  using S = ScanBindings;
  const std::initializer_list<uint32_t> row_offs = {sb.off[S::kU], sb.off[S::kDelta], sb.off[S::kB],
                                                    sb.off[S::kC], sb.off[S::kZ], sb.off[S::kY]};
  // One pass, lanes = channels × state groups, subgroups = time segments
  // (shaders/selective_scan_seg.comp: a work group walks its channels' chunks in order).
  if (const SegConfig sc = seg_config(p, mode, row_offs); sc.ok) {
    Push push(p, {0u, 1u});
    push.append(sb.off);
    const char* variant = sc.vec ? "selective_scan.seg" : "selective_scan.seg_scalar";
    const uint32_t wg = 4 * sc.cb * sc.s;
    auto& pipe = pipelines_.get(variant, 10, push.size, {wg, sc.cb, sc.s, sc.r}, wg, variant);
    const Grid g = linear_grid(ceil_div(p.channels, sc.cb));
    rec_->dispatch(pipe, sb.uses(), push.bytes, push.size, g.x, g.y, g.z);
    return;
  }
  // One pass, time-parallel inside a subgroup (shaders/selective_scan_warp2.comp: each subgroup
  // prepares, scans and gates its own channel); where subgroup shuffles and d_state 16 allow;
  // 16-byte row loads where the rows are aligned, scalar loads otherwise.
  if (const WarpConfig wc = warp_config(p, mode, row_offs); wc.ok) {
    const uint32_t sg = ctx_->caps.subgroup_size;
    Push push(p, {0u, 1u});
    push.append(sb.off);
    const char* variant = wc.vec ? "selective_scan.warp2" : "selective_scan.warp2_scalar";
    auto& pipe = pipelines_.get(variant, 10, push.size,
                                {wc.cb * sg, sg, wc.cb, wc.r, wc.prep2, wc.opt}, wc.cb * sg,
                                variant);
    const Grid g = linear_grid(ceil_div(p.channels, wc.cb));
    rec_->dispatch(pipe, sb.uses(), push.bytes, push.size, g.x, g.y, g.z);
    return;
  }
  // One pass, one exp per (token, channel, state), where subgroup shuffles are verified
  // (shaders/selective_scan_sg.comp); the chunked three-pass scan below otherwise.
  if (mode == "subgroup" && scan_subgroup_ok(p.d_state)) {
    const uint32_t sg = ctx_->caps.subgroup_size, chn = 4, items = 4;
    Push push(p, {0u, 1u});
    push.append(sb.off);
    auto& pipe =
        pipelines_.get("selective_scan.subgroup", 10, push.size,
                       {chn * sg, p.d_state, sg, items, chn}, chn * sg, "selective_scan.subgroup");
    const Grid g = linear_grid(ceil_div(p.channels, chn));
    rec_->dispatch(pipe, sb.uses(), push.bytes, push.size, g.x, g.y, g.z);
    return;
  }
  // Chunks: enough (channel, chunk) invocations to fill a large GPU (~128K), chunks of at
  // least 64 tokens so the rerun and the extra pass stay a small share, a multiple of the
  // staging width, and at most 65535 chunks (the grid's y limit).
  const uint32_t s_tok =
      std::max<uint32_t>(1, std::min<uint32_t>(32, ctx_->caps.max_shared_bytes / (8 * p.d_state)));
  uint64_t len = std::max<uint64_t>(64, (uint64_t(p.L) * p.channels + 131071) / 131072);
  len = std::max<uint64_t>(len, (p.L + 65534) / 65535);
  len = (len + s_tok - 1) / s_tok * s_tok;
  const uint32_t n_chunks = ceil_div(p.L, len);
  const uint32_t chunk_len = n_chunks == 1 ? p.L : uint32_t(len);

  Push push(p, {chunk_len, n_chunks});
  push.append(sb.off);
  const uint32_t cg = ceil_div(p.channels, 64);
  auto pipe = [&](const char* variant) -> Pipeline& {
    return pipelines_.get(variant, 12, push.size, {64, p.d_state, s_tok}, 64, variant);
  };
  if (n_chunks == 1) {
    rec_->dispatch(pipe("selective_scan"), sb.uses({dummy(), dummy()}), push.bytes, push.size,
                   cg, 1, 1);
    return;
  }
  const uint64_t h_bytes = uint64_t(n_chunks) * p.channels * p.d_state * 4;
  const uint64_t d_bytes = uint64_t(n_chunks) * p.channels * 4;
  ensure_scratch(scan_h_, h_bytes);
  ensure_scratch(scan_d_, d_bytes);
  BufferUse uh = scratch(*scan_h_, h_bytes), udsum = scratch(*scan_d_, d_bytes);
  // Pass 1 reads the inputs of every chunk but the last, pass 2 (combine) only A_log and the
  // start state, pass 3 everything: the rest is bound but untracked (not read).
  rec_->dispatch(pipe("selective_scan.chunk_state"),
                 {sb.u, sb.delta, sb.A_log, sb.B, untracked(sb.C), untracked(sb.D), untracked(sb.z),
                  sb.dt_bias, untracked(sb.state), untracked(sb.y), uh, udsum},
                 push.bytes, push.size, cg, n_chunks - 1, 1);
  rec_->dispatch(pipe("selective_scan.combine"),
                 {untracked(sb.u), untracked(sb.delta), sb.A_log, untracked(sb.B), untracked(sb.C),
                  untracked(sb.D), untracked(sb.z), untracked(sb.dt_bias), read_only(sb.state),
                  untracked(sb.y), uh, read_only(udsum)},
                 push.bytes, push.size, ceil_div(uint64_t(p.channels) * p.d_state, 64), 1, 1);
  rec_->dispatch(pipe("selective_scan"), sb.uses({read_only(uh), untracked(udsum)}), push.bytes,
                 push.size, cg, n_chunks, 1);
}

BufferUse VulkanBackend::scratch(VulkanBuffer& b, uint64_t bytes) const {
  BufferUse u;
  u.buf = &b;
  u.desc_range = std::min<VkDeviceSize>(b.vk_size, ctx_->caps.max_storage_range) / 4 * 4;
  if (bytes > u.desc_range)
    fail("[vulkan] selective_scan: chunk scratch of ", bytes,
         " bytes exceeds maxStorageBufferRange ", ctx_->caps.max_storage_range);
  u.begin = 0;
  u.end = bytes;
  u.row_bytes = bytes;
  u.write = true;
  return u;
}

void VulkanBackend::ensure_scratch(std::unique_ptr<VulkanBuffer>& b, uint64_t bytes) {
  if (b && b->bytes() >= bytes) return;
  // The old buffer may still be read by enqueued work: VulkanBuffer defers its own free.
  b = std::make_unique<VulkanBuffer>(*ctx_, std::max<uint64_t>(bytes, uint64_t(1) << 20),
                                     BufferKind::Device);
}

// DM_VULKAN_SCAN: "" (the default: the warp scan where warp_default says so, else chunked),
// chunked, warp, subgroup or lookback. The subgroup and warp scans need shuffles in
// compute and a device where work groups of k × subgroupSize invocations are k full subgroups of
// the reported size (NVIDIA and lavapipe, where they are tested); the chunked scan wherever a
// forced one does not apply.
std::string VulkanBackend::scan_mode() {
  const char* env = std::getenv("DM_VULKAN_SCAN");
  return env ? env : "";
}

// Words of the look-back sync buffer: 4 counters, a done count per channel group (at most
// kLbMaxGroups, shaders/selective_scan_lb.comp's GMAX), a flag per (chunk, channel group);
// at most 128K flags, at most one binding.
uint64_t VulkanBackend::lb_sync_words() const {
  return std::max<uint64_t>(
      std::min<uint64_t>(4 + kLbMaxGroups + (uint64_t(1) << 17), ctx_->caps.max_storage_range / 4),
      4 + kLbMaxGroups);
}

uint64_t VulkanBackend::lb_shared_bytes(uint32_t cw, uint32_t s, uint32_t tok) {
  const uint64_t chunk = uint64_t(s) * tok;
  return 4 * (2ull * s * 16 * cw + uint64_t(s) * cw + 2 * chunk * 16 + 3ull * 16 * cw + cw + 3);
}

// The look-back scan's shape: CW channels (consecutive lanes) × S segments of TOK tokens per
// work group. 32 × 8 × 8 where the shared memory allows (NVIDIA, AMD: 48+ KiB; the fastest
// of 7 shapes measured on the H100), 32 × 4 × 8 on 32 KiB (lavapipe);
// DM_VULKAN_SCAN_LB=CW,S,TOK overrides (TOK 4 or 8).
VulkanBackend::LbConfig VulkanBackend::lb_config(uint32_t d_state) const {
  LbConfig c;
  if (d_state != 16) return c;
  const auto& caps = ctx_->caps;
  auto fits = [&](uint32_t cw, uint32_t s, uint32_t tok) {
    return cw >= 1 && s >= 1 && s <= 16 && (tok == 4 || tok == 8) &&
           uint64_t(cw) * s <= caps.max_wg_invocations &&
           lb_shared_bytes(cw, s, tok) <= caps.max_shared_bytes;
  };
  if (const char* env = std::getenv("DM_VULKAN_SCAN_LB")) {
    unsigned cw = 0, s = 0, tok = 0;
    if (std::sscanf(env, "%u,%u,%u", &cw, &s, &tok) != 3 || !fits(cw, s, tok))
      fail("[vulkan] DM_VULKAN_SCAN_LB=", env, ": want CW,S,TOK with TOK 4 or 8, S <= 16, fitting ",
           caps.max_shared_bytes, " bytes of shared memory and the work-group limits");
    c.ok = true, c.cw = cw, c.s = s, c.tok = tok;
    return c;
  }
  for (const uint32_t s : {8u, 4u, 2u})
    if (fits(32, s, 8)) {
      c.ok = true, c.s = s;
      return c;
    }
  return c;
}

void VulkanBackend::ensure_sync() {
  if (scan_sync_) return;
  // Ticket counter, 2 unused, fallback count, one done count per channel group, one flag per
  // (chunk, channel group): all zero once; the ticket counter only grows (the host knows its
  // value), the done counts return to zero, flags carry the dispatch's epoch: no clearing
  // between dispatches.
  const uint64_t bytes = lb_sync_words() * 4;
  scan_sync_ = std::make_unique<VulkanBuffer>(*ctx_, bytes, BufferKind::Device);
  const std::vector<uint32_t> zeros(size_t(bytes / 4), 0u);
  rec_->upload(*scan_sync_, 0, zeros.data(), bytes);
}

// Shared memory of the warp scan (selective_scan_warp2.comp): delta, u, z, y transposed, B, C;
// 2 slots each.
uint64_t VulkanBackend::warp_shared_bytes(uint64_t sg, uint64_t cb, uint64_t r) {
  const uint64_t nsl = sg / 4, t = nsl * r;
  return 16 * (8 * cb * (t / 4 + 1) + 16 * (t + nsl));
}

// The warp scan's shape (shaders/selective_scan_warp2.comp, DM_VULKAN_SCAN=warp or the default
// where warp_default says so): CB channels (subgroups) per work group, R tokens per slice
// (chunks of subgroupSize / 4 · R tokens). A forced one runs where it applies (the chunked scan
// otherwise); DM_VULKAN_SCAN_WARP=CB,R[,PREP2[,OPT]] picks the shape (and the prep's token map,
// WarpConfig::prep2, and the scan's OPT bits, WarpConfig::opt), else the defaults below (12,8: 44 KiB of shared memory at subgroups of 32). Its predecessor, the plain port of the CUDA v6 scan
// (`warp6`, shaders/selective_scan_warp.comp), measured slower than it at 1536-3072 and no
// faster than the chunked scan (the default there) at 5120 (H100, session 5), was removed.
// offs: element offsets of u, delta, B, C, z, y in their bindings (the vec4 variant needs all
// of them, the row strides and the channel count to be multiples of 4).
VulkanBackend::WarpConfig VulkanBackend::warp_config(const SelectiveScanParams& p,
                                                     const std::string& mode,
                                                     std::initializer_list<uint32_t> offs) const {
  WarpConfig w;
  if (mode != "warp" && !(mode.empty() && warp_default(p))) return w;
  const auto& c = ctx_->caps;
  if (!subgroup_scan_supported(p, c)) return w;
  const uint32_t sg = c.subgroup_size;
  w.vec = scan_vec4(p, offs);
  auto fits = [&](uint32_t cb, uint32_t r) {
    return cb >= 4 && cb % 4 == 0 && r >= 4 && r % 4 == 0 && r <= 16 &&
           uint64_t(cb) * sg <= c.max_wg_invocations &&
           warp_shared_bytes(sg, cb, r) <= c.max_shared_bytes;
  };
  if (const char* env = std::getenv("DM_VULKAN_SCAN_WARP")) {
    unsigned cb = 0, r = 0, prep2 = 1, opt = w.opt;
    if (std::sscanf(env, "%u,%u,%u,%u", &cb, &r, &prep2, &opt) < 2 || !fits(cb, r))
      fail("[vulkan] DM_VULKAN_SCAN_WARP=", env,
           ": want CB,R[,PREP2[,OPT]] with CB a multiple of 4, R in 4, 8, 12, 16, fitting ",
           c.max_shared_bytes, " bytes of shared memory and the work-group limits");
    w.ok = true, w.cb = cb, w.r = r, w.prep2 = prep2 != 0, w.opt = opt & 3u;
    return w;
  }
  // 12,8, but 8,4 for 1536 < d_inner <= 2048 on NVIDIA (warp_shape_nvidia); 8,8 or 4,4 where
  // those do not fit.
  const std::pair<uint32_t, uint32_t> first =
      c.vendor_id == kVendorNvidia ? warp_shape_nvidia(p.channels) : std::pair{12u, 8u};
  for (const auto& [cb, r] : {first, std::pair{8u, 8u}, std::pair{4u, 4u}})
    if (fits(cb, r)) {
      w.ok = true, w.cb = cb, w.r = r;
      return w;
    }
  return w;
}

// The warp scan (warp2) is the default on NVIDIA for 1536 <= d_inner <= 3072, where it measured
// faster than the chunked scan (H100, one run, L 4K / 16K, µs: d_inner 1536 118.9 / 447.2 against
// 159.4 / 541.0; 2048 (8,4) 168.3 / 640.1 against 212.8 / 698.3; 3072 233.2 / 888.7 against
// 283.6 / 1024.3). At 5120 it only ties (best shape 8,8: 432.4 / 1676.4 against 440.3 / 1657.8;
// on an H200 1666 against 1593 at 16K) and below 1536 it was not measured (fewer work groups
// than SMs): the chunked scan stays the default there, and on other vendors (the warp scans are
// tested on lavapipe, measured on NVIDIA only).
bool VulkanBackend::warp_default(const SelectiveScanParams& p) const {
  return ctx_->caps.vendor_id == kVendorNvidia && p.channels >= 1536 && p.channels <= 3072;
}

// warp2's shape on NVIDIA. A 12,8 work group (384 invocations) takes a whole SM's registers:
// the time goes by waves of 132 work groups on a 132-SM H100 / H200 (d_inner 1536: 128 groups,
// one wave, 118.9 µs at L 4K; 2048: 171, two waves, 228.2; 3072: 256, two waves, 233.2). Where
// 12,8 would spill just past a wave, 8,4 (smaller groups, several per SM) is faster: 168.3 µs at
// 2048 (12,8: 228.2), slower at 1536 (163.0 against 118.9) and 3072 (326.4 against 233.2).
std::pair<uint32_t, uint32_t> VulkanBackend::warp_shape_nvidia(uint32_t channels) {
  if (channels > 1536 && channels <= 2048) return {8u, 4u};
  return {12u, 8u};
}

// Shared memory of the segment scan (selective_scan_seg.comp): 2 slots of (Δ, Δ·u) and
// (D·u, gate) pair rows and of B, C rows, (P, H) per invocation, 2 slots of carry-in.
uint64_t VulkanBackend::seg_shared_bytes(uint64_t cb, uint64_t s, uint64_t r) {
  const uint64_t t = s * r;
  return 2 * (2 * 8 * (t * cb + s * 4) + 2 * 16 * (t + s) * 4) + 2 * 16 * 4 * cb * s +
         2 * 16 * 4 * cb;
}

// The segment scan's shape (DM_VULKAN_SCAN=seg forces it where it applies, the chunked scan
// otherwise; opt-in: slower than warp2 and the chunked scan on the H100, README): CB channels
// per work group, S segments of R tokens per chunk; DM_VULKAN_SCAN_SEG=CB,S,R picks it, else
// the first of 12,4,8 (its fastest shape at d_inner 1536 on the H100), 8,4,8, 4,4,8 that fits.
// offs: element offsets of u, delta, B, C, z, y (the vec4 variant needs them, the row strides
// and the channel count to be multiples of 4).
VulkanBackend::SegConfig VulkanBackend::seg_config(const SelectiveScanParams& p,
                                                   const std::string& mode,
                                                   std::initializer_list<uint32_t> offs) const {
  SegConfig w;
  if (mode != "seg") return w;
  const auto& c = ctx_->caps;
  if (!subgroup_scan_supported(p, c)) return w;
  const uint32_t sg = c.subgroup_size;
  w.vec = scan_vec4(p, offs);
  // The shader's B / C staging holds at most 4 pieces per invocation: R <= 4·CB.
  auto fits = [&](uint32_t cb, uint32_t s, uint32_t r) {
    const uint64_t wg = 4ull * cb * s;
    return cb >= 4 && cb % 4 == 0 && s >= 1 && r >= 4 && r % 4 == 0 && r <= 16 &&
           r <= 4 * cb && wg % sg == 0 && wg <= c.max_wg_invocations &&
           seg_shared_bytes(cb, s, r) <= c.max_shared_bytes;
  };
  if (const char* env = std::getenv("DM_VULKAN_SCAN_SEG")) {
    unsigned cb = 0, s = 0, r = 0;
    if (std::sscanf(env, "%u,%u,%u", &cb, &s, &r) != 3 || !fits(cb, s, r))
      fail("[vulkan] DM_VULKAN_SCAN_SEG=", env,
           ": want CB,S,R with CB a multiple of 4, R in 4, 8, 12, 16, 4·CB·S a multiple of the "
           "subgroup size, fitting ",
           c.max_shared_bytes, " bytes of shared memory and the work-group limits");
    w.ok = true, w.cb = cb, w.s = s, w.r = r;
    return w;
  }
  for (const auto& [cb, s, r] :
       {std::tuple{12u, 4u, 8u}, std::tuple{8u, 4u, 8u}, std::tuple{4u, 4u, 8u}})
    if (fits(cb, s, r)) {
      w.ok = true, w.cb = cb, w.s = s, w.r = r;
      return w;
    }
  return w;
}

bool VulkanBackend::scan_subgroup_ok(uint32_t d_state) const {
  const auto& c = ctx_->caps;
  const std::string mode = scan_mode();
  if (mode == "chunked") return false;
  const VkSubgroupFeatureFlags need =
      VK_SUBGROUP_FEATURE_BASIC_BIT | VK_SUBGROUP_FEATURE_SHUFFLE_BIT;
  if (!c.subgroup_in_compute || (c.subgroup_ops & need) != need) return false;
  const uint64_t sg = c.subgroup_size, ch = sg * 4;
  if (sg < 4 || sg > 128 || (sg & (sg - 1)) != 0 || 4 * sg > c.max_wg_invocations) return false;
  if (4 * (ch * (3 * 4 + 2 * uint64_t(d_state)) + 5 * sg) > c.max_shared_bytes) return false;
  // Opt-in: correct (lavapipe and H100 tests) but on the H100 2.5-4x SLOWER than the chunked
  // scan (one subgroup per channel walking all of L is latency-bound).
  return mode == "subgroup";
}

}  // namespace dm::vk
