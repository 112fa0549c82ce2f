// The Vulkan backend: each Backend method checks its call with make_*_params (params.h), binds
// its tensors and pushes the params struct followed by the tensors' element offsets, and
// enqueues one dispatch (two for causal_conv1d, up to three for selective_scan) on the
// recorder, which derives the barriers. Nothing waits until download() or synchronize().
//
// Tensor offsets: a binding's descriptor range starts at the tensor's byte offset rounded down
// to max(minStorageBufferOffsetAlignment, 4); the remainder travels in elements in the
// push-constant tail after the params struct (every block here is ≤ 100 bytes, inside the
// 128 bytes Vulkan guarantees). Weights (F32 / F16 / BF16) are read as 32-bit words and
// widened in the shader, so no device feature is needed and BF16 needs no conversion at load.
#include "backend/vulkan/vulkan_backend.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <sstream>

#include "backend/vulkan/context.h"
#include "backend/vulkan/pipeline.h"
#include "backend/vulkan/recorder.h"
#include "core/error.h"

namespace dm {
namespace {

using vk::BufferUse;
using vk::VulkanBuffer;

uint32_t ceil_div(uint64_t a, uint64_t b) { return uint32_t((a + b - 1) / b); }

// The params struct, then uint32 element offsets: the shader's push-constant block.
struct Push {
  uint8_t bytes[128];
  uint32_t size = 0;
  template <typename P>
  Push(const P& params, std::initializer_list<uint32_t> tail) {
    static_assert(sizeof(P) % 4 == 0);
    DM_ASSERT(sizeof(P) + 4 * tail.size() <= sizeof(bytes));
    std::memcpy(bytes, &params, sizeof(P));
    size = sizeof(P);
    for (uint32_t v : tail) {
      std::memcpy(bytes + size, &v, 4);
      size += 4;
    }
  }
};

struct Grid {
  uint32_t x = 1, y = 1, z = 1;
};

class VulkanBackend final : public Backend {
 public:
  explicit VulkanBackend(int device)
      : ctx_(std::make_unique<vk::Context>(device)),
        pipelines_(*ctx_),
        rec_(std::make_unique<vk::Recorder>(*ctx_)) {
    align_ = std::max<VkDeviceSize>(ctx_->caps.min_storage_offset_align, 4);
    DM_ASSERT(align_ % 4 == 0, "minStorageBufferOffsetAlignment ", align_);
    dummy_ = std::make_unique<VulkanBuffer>(*ctx_, 16, vk::BufferKind::Device);
    // gemm.gemv_norm's work-group ticket: zero, and back to zero after every dispatch.
    ticket_ = std::make_unique<VulkanBuffer>(*ctx_, 16, vk::BufferKind::Device);
    const uint32_t zeros[4] = {0, 0, 0, 0};
    rec_->upload(*ticket_, 0, zeros, sizeof(zeros));
  }
  ~VulkanBackend() override {
    try {
      rec_->finish();
    } catch (...) {
    }
    scan_h_.reset();
    scan_d_.reset();
    scan_sync_.reset();
    ticket_.reset();
    dummy_.reset();
    rec_.reset();
  }

  std::string name() const override { return "vulkan"; }
  std::string device_name() const override { return ctx_->caps.name; }
  bool supports_weight_dtype(DType t) const override {
    return t == DType::F32 || t == DType::F16 || t == DType::BF16;
  }

  std::unique_ptr<Buffer> alloc(size_t bytes) override {
    return std::make_unique<VulkanBuffer>(*ctx_, bytes, vk::BufferKind::Device);
  }
  void upload(Buffer& dst, size_t offset, const void* src, size_t bytes) override {
    if (offset + bytes > dst.bytes())
      fail("[vulkan] upload of ", bytes, " bytes at offset ", offset, " runs past a ", dst.bytes(),
           "-byte buffer");
    rec_->upload(vbuf(dst, "upload"), offset, src, bytes);
  }
  void download(const Buffer& src, size_t offset, void* dst, size_t bytes) override {
    if (offset + bytes > src.bytes())
      fail("[vulkan] download of ", bytes, " bytes at offset ", offset, " runs past a ", src.bytes(),
           "-byte buffer");
    rec_->download(vbuf(const_cast<Buffer&>(src), "download"), offset, dst, bytes);
  }
  void synchronize() override { rec_->finish(); }

  void gemm(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) override {
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
    if (p.M <= 4 && small_m_vec_ok(x, w, p)) {  // decode, 16-byte loads: shaders/gemv.comp
      if (const GemvConfig gc = gemv_config(p); gc.ok) {  // gemm.gemv
        Push vp(p, {off(x, ux), off(w, uw), bias ? off(*bias, ub) : 0u, off(y, uy), gc.rows});
        auto& pipe = pipelines_.get("gemm.gemv", 4, vp.size, gc.spec(), 256, "gemm.gemv");
        const Grid g = linear_grid(ceil_div(p.N, gc.rows));
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
    // 128×128 tiles where both sides fill them (prefill projections), 64×64 otherwise.
    const uint32_t tile = p.M >= 128 && p.N >= 128 ? 128 : 64;
    const char* variant = tile == 128 ? "gemm.tile128" : "gemm";
    auto& pipe = pipelines_.get(variant, 4, push.size, {}, 256, variant);
    rec_->dispatch(pipe, {ux, uw, ub, uy}, push.bytes, push.size, ceil_div(p.N, tile), ceil_div(p.M, tile), 1);
  }

  // The tensor-core GEMM (shaders/gemm_coopmat.comp): 128 × 256 output tiles (16 subgroups
  // of 32 × 64), or 128 × 128 (8 subgroups of 64 × 32) where N fits one 128-wide tile or
  // 256-wide ones would give fewer than 64 work groups (under half an H100's 132 SMs; measured:
  // x_proj at L = 4096 is faster so). The flags tell the shader which 16-byte paths the
  // alignments allow: rows 16-byte aligned (the tensor's byte offset and row stride; the
  // descriptor start is then aligned too, see small_m_vec_ok), direct stores without bias.
  // DM_VULKAN_GEMM_COOPMAT=n256|n128 forces a tile width (bench_vulkan --gemm-variants).
  void gemm_coopmat(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
                    const GemmParams& p, const BufferUse& ux, const BufferUse& uw, const BufferUse& ub,
                    const BufferUse& uy) {
    struct {
      GemmParams g;
      uint32_t off[4];
      uint32_t flags;
    } cp{p, {off(x, ux), off(w, uw), bias ? off(*bias, ub) : 0u, off(y, uy)}, 0u};
    static_assert(sizeof(cp) == sizeof(GemmParams) + 20);
    if (x.offset % 16 == 0 && p.x_stride % 4 == 0) cp.flags |= 1u;
    if (w.offset % 16 == 0 && p.w_stride % 8 == 0) cp.flags |= 2u;
    if (!bias && y.offset % 16 == 0 && p.y_stride % 4 == 0) cp.flags |= 4u;
    const uint32_t gm = ceil_div(p.M, 128);
    bool wide = p.N > 128 && uint64_t(gm) * ceil_div(p.N, 256) >= 64;
    if (const char* v = std::getenv("DM_VULKAN_GEMM_COOPMAT")) {
      if (std::strcmp(v, "n256") == 0) wide = true;
      if (std::strcmp(v, "n128") == 0) wide = false;
    }
    const uint32_t bn = wide ? 256 : 128, threads = wide ? 512 : 256;
    const char* variant = wide ? "gemm.coopmat" : "gemm.coopmat_n128";
    auto& pipe = pipelines_.get(variant, 4, sizeof(cp), {}, threads, variant);
    rec_->dispatch(pipe, {ux, uw, ub, uy}, &cp, sizeof(cp), ceil_div(p.N, bn), gm, 1);
  }

  void rms_norm(const Tensor& x, const Tensor* residual, const Tensor& weight, const Tensor& y,
                float eps) override {
    const RmsNormParams p = make_rms_norm_params(x, residual, weight, y, eps);
    if (p.L == 0) return;
    if (const int64_t m = std::min({rows_fit(x), rows_fit(y), residual ? rows_fit(*residual) : x.rows});
        m < x.rows) {
      for (int64_t t0 = 0; t0 < x.rows; t0 += m) {
        const int64_t n = std::min(m, x.rows - t0);
        const Tensor r = residual ? residual->row_slice(t0, n) : Tensor{};
        rms_norm(x.row_slice(t0, n), residual ? &r : nullptr, weight, y.row_slice(t0, n), eps);
      }
      return;
    }
    const char* k = "rms_norm";
    BufferUse ux = bind(x, false, k, "x"), ur = residual ? bind(*residual, true, k, "residual") : dummy(),
              uw = bind(weight, false, k, "weight"), uy = bind(y, true, k, "y");
    Push push(p, {off(x, ux), residual ? off(*residual, ur) : 0u, off(weight, uw), off(y, uy)});
    const char* variant = residual ? "rms_norm.residual" : "rms_norm";
    auto& pipe = pipelines_.get(variant, 4, push.size, {256}, 256, variant);
    const Grid g = linear_grid(p.L);
    rec_->dispatch(pipe, {ux, ur, uw, uy}, push.bytes, push.size, g.x, g.y, g.z);
  }

  void causal_conv1d(const Tensor& x, const Tensor& weight, const Tensor* bias,
                     const Tensor& conv_state, const Tensor& y) override {
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
              us = bind(conv_state, false, k, "conv_state"), uy = bind(y, true, k, "y");
    const uint32_t tb = 16;
    Push push(p, {tb, off(x, ux), off(weight, uw), bias ? off(*bias, ub) : 0u, off(conv_state, us),
                  off(y, uy)});
    const uint32_t cg = ceil_div(p.channels, 64);
    auto& conv = pipelines_.get("causal_conv1d", 5, push.size, {64, p.d_conv}, 64, "causal_conv1d");
    const Grid g = fold_yz(ceil_div(p.L, tb));
    rec_->dispatch(conv, {ux, uw, ub, us, uy}, push.bytes, push.size, cg, g.y, g.z);
    // The state update reads x (and the old state) and overwrites the state: after every
    // token block has read it (the recorder sees the write-after-read).
    auto& upd = pipelines_.get("causal_conv1d.state", 5, push.size, {64, p.d_conv}, 64,
                               "causal_conv1d.state");
    BufferUse us_w = us;
    us_w.write = true;
    rec_->dispatch(upd, {ux, untracked(uw), untracked(ub), us_w, untracked(uy)}, push.bytes,
                   push.size, cg, 1, 1);
  }

  // The scan over consecutive pieces of at most m time steps, the state carrying between them.
  void scan_in_pieces(int64_t m, const Tensor& u, const Tensor& delta, const Tensor& A_log,
                      const Tensor& B, const Tensor& C, const Tensor& D, const Tensor* z,
                      const Tensor& dt_bias, const Tensor& ssm_state, const Tensor& y) {
    for (int64_t t0 = 0; t0 < u.rows; t0 += m) {
      const int64_t n = std::min(m, u.rows - t0);
      const Tensor zs = z ? z->row_slice(t0, n) : Tensor{};
      selective_scan(u.row_slice(t0, n), delta.row_slice(t0, n), A_log, B.row_slice(t0, n),
                     C.row_slice(t0, n), D, z ? &zs : nullptr, dt_bias, ssm_state, y.row_slice(t0, n));
    }
  }

  void selective_scan(const Tensor& u, const Tensor& delta, const Tensor& A_log, const Tensor& B,
                      const Tensor& C, const Tensor& D, const Tensor* z, const Tensor& dt_bias,
                      const Tensor& ssm_state, const Tensor& y) override {
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
    BufferUse uu = bind(u, false, k, "u"), ud = bind(delta, false, k, "delta"),
              ua = bind(A_log, false, k, "A_log"), uB = bind(B, false, k, "B"),
              uC = bind(C, false, k, "C"), uD = bind(D, false, k, "D"),
              uz = z ? bind(*z, false, k, "z") : dummy(), ubias = bind(dt_bias, false, k, "dt_bias"),
              us = bind(ssm_state, true, k, "ssm_state"), uy = bind(y, true, k, "y");

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
        const uint64_t cap = std::min<uint64_t>(ctx_->caps.max_storage_range / 4 * 4, uint64_t(256) << 20);
        const uint64_t max_chunks =
            groups > kLbMaxGroups
                ? 0
                : std::min<uint64_t>((cap - std::min(cap, groups * lb.cw * 64)) / (groups * slot_bytes),
                                     (lb_sync_words() - 4 - kLbMaxGroups) / groups);
        // max_chunks 0: one chunk's scratch for every channel exceeds a binding; the chunked
        // scan below then.
        if (max_chunks > 0 && uint64_t(p.L) > max_chunks * chunk) {  // pieces of time, the state carried
          scan_in_pieces(int64_t(max_chunks * chunk), u, delta, A_log, B, C, D, z, dt_bias,
                         ssm_state, y);
          return;
        }
        if (max_chunks > 0) {
          const uint32_t n_chunks = ceil_div(p.L, chunk);
          const uint64_t nslot = uint64_t(n_chunks) * groups;
          const uint64_t scr_bytes = nslot * slot_bytes + groups * lb.cw * 16 * 4;  // + final state
          ensure_scratch(scan_h_, scr_bytes);
          ensure_sync();
          BufferUse uscr = scratch(*scan_h_, scr_bytes), usync = scratch(*scan_sync_, scan_sync_->bytes());
          const Grid g = linear_grid(nslot);
          Push push(p, {n_chunks, lb_tickets_, lb_epoch_, off(u, uu), off(delta, ud), off(A_log, ua),
                        off(B, uB), off(C, uC), off(D, uD), z ? off(*z, uz) : 0u, off(dt_bias, ubias),
                        off(ssm_state, us), off(y, uy)});
          lb_tickets_ += g.x * g.y * g.z;  // mod 2^32, as the device counter
          lb_epoch_ = (lb_epoch_ + 1) & 0x3fffffffu;
          if (lb_epoch_ == 0) lb_epoch_ = 1;  // 0 is the freshly cleared flags' tag
          const char* variant = lb.tok == 8 ? "selective_scan.lookback_t8" : "selective_scan.lookback_t4";
          // Polls before the fallback: bounded everywhere; few on a CPU device, whose loops are
          // capped (lavapipe) and whose work groups may run one at a time.
          const uint32_t poll = ctx_->caps.type == "cpu" ? 64 : 4096;
          auto& pipe = pipelines_.get(variant, 12, push.size, {lb.cw * lb.s, lb.cw, lb.s, poll},
                                      lb.cw * lb.s, "selective_scan.lookback");
          rec_->dispatch(pipe, {uu, ud, ua, uB, uC, uD, uz, ubias, us, uy, uscr, usync}, push.bytes,
                         push.size, g.x, g.y, g.z);
          if (std::getenv("DM_VULKAN_LB_DEBUG")) {  // fallbacks so far (work groups that gave up polling)
            uint32_t w[4];
            rec_->download(*scan_sync_, 0, w, 16);
            std::fprintf(stderr, "[vulkan] selective_scan.lookback L=%u C=%u: %u fallbacks so far\n", p.L,
                         p.channels, w[3]);
          }
          return;
        }
      }
    }
    // One pass, time-parallel inside a subgroup (shaders/selective_scan_warp.comp, the port of
    // cuda/selective_scan_v6.cu): where subgroup shuffles and d_state 16 allow; 16-byte row loads
    // where the rows are aligned, scalar loads otherwise.
    if (const WarpConfig wc = warp_config(p, mode, {off(u, uu), off(delta, ud), off(B, uB), off(C, uC),
                                                    z ? off(*z, uz) : 0u, off(y, uy)});
        wc.ok) {
      const uint32_t sg = ctx_->caps.subgroup_size;
      Push push(p, {0u, 1u, off(u, uu), off(delta, ud), off(A_log, ua), off(B, uB), off(C, uC),
                    off(D, uD), z ? off(*z, uz) : 0u, off(dt_bias, ubias), off(ssm_state, us),
                    off(y, uy)});
      const char* variant = wc.vec ? "selective_scan.warp" : "selective_scan.warp_scalar";
      auto& pipe = pipelines_.get(variant, 10, push.size, {wc.cb * sg, sg, wc.cb, wc.r}, wc.cb * sg, variant);
      const Grid g = linear_grid(ceil_div(p.channels, wc.cb));
      rec_->dispatch(pipe, {uu, ud, ua, uB, uC, uD, uz, ubias, us, uy}, push.bytes, push.size, g.x, g.y, g.z);
      return;
    }
    // One pass, one exp per (token, channel, state), where subgroup shuffles are verified
    // (shaders/selective_scan_sg.comp); the chunked three-pass scan below otherwise.
    if (mode == "subgroup" && scan_subgroup_ok(p.d_state)) {
      const uint32_t sg = ctx_->caps.subgroup_size, chn = 4, items = 4;
      Push push(p, {0u, 1u, off(u, uu), off(delta, ud), off(A_log, ua), off(B, uB), off(C, uC),
                    off(D, uD), z ? off(*z, uz) : 0u, off(dt_bias, ubias), off(ssm_state, us),
                    off(y, uy)});
      auto& pipe = pipelines_.get("selective_scan.subgroup", 10, push.size,
                                  {chn * sg, p.d_state, sg, items, chn}, chn * sg, "selective_scan.subgroup");
      const Grid g = linear_grid(ceil_div(p.channels, chn));
      rec_->dispatch(pipe, {uu, ud, ua, uB, uC, uD, uz, ubias, us, uy}, push.bytes, push.size, g.x, g.y, g.z);
      return;
    }
    // Chunks: enough (channel, chunk) invocations to fill a large GPU (~128K), chunks of at
    // least 64 tokens so the rerun and the extra pass stay a small share, a multiple of the
    // staging width, and at most 65535 chunks (the grid's y limit).
    const uint32_t s_tok = std::max<uint32_t>(
        1, std::min<uint32_t>(32, ctx_->caps.max_shared_bytes / (8 * p.d_state)));
    uint64_t len = std::max<uint64_t>(64, (uint64_t(p.L) * p.channels + 131071) / 131072);
    len = std::max<uint64_t>(len, (p.L + 65534) / 65535);
    len = (len + s_tok - 1) / s_tok * s_tok;
    const uint32_t n_chunks = ceil_div(p.L, len);
    const uint32_t chunk_len = n_chunks == 1 ? p.L : uint32_t(len);

    Push push(p, {chunk_len, n_chunks, off(u, uu), off(delta, ud), off(A_log, ua), off(B, uB),
                  off(C, uC), off(D, uD), z ? off(*z, uz) : 0u, off(dt_bias, ubias),
                  off(ssm_state, us), off(y, uy)});
    const uint32_t cg = ceil_div(p.channels, 64);
    auto pipe = [&](const char* variant) -> vk::Pipeline& {
      return pipelines_.get(variant, 12, push.size, {64, p.d_state, s_tok}, 64, variant);
    };
    if (n_chunks == 1) {
      rec_->dispatch(pipe("selective_scan"), {uu, ud, ua, uB, uC, uD, uz, ubias, us, uy, dummy(), dummy()},
                     push.bytes, push.size, cg, 1, 1);
      return;
    }
    const uint64_t h_bytes = uint64_t(n_chunks) * p.channels * p.d_state * 4;
    const uint64_t d_bytes = uint64_t(n_chunks) * p.channels * 4;
    ensure_scratch(scan_h_, h_bytes);
    ensure_scratch(scan_d_, d_bytes);
    BufferUse uh = scratch(*scan_h_, h_bytes), udsum = scratch(*scan_d_, d_bytes);
    BufferUse us_r = us;
    us_r.write = false;
    rec_->dispatch(pipe("selective_scan.chunk_state"),
                   {uu, ud, ua, uB, untracked(uC), untracked(uD), untracked(uz), ubias,
                    untracked(us), untracked(uy), uh, udsum},
                   push.bytes, push.size, cg, n_chunks - 1, 1);
    rec_->dispatch(pipe("selective_scan.combine"),
                   {untracked(uu), untracked(ud), ua, untracked(uB), untracked(uC), untracked(uD),
                    untracked(uz), untracked(ubias), us_r, untracked(uy), uh, read_only(udsum)},
                   push.bytes, push.size, ceil_div(uint64_t(p.channels) * p.d_state, 64), 1, 1);
    rec_->dispatch(pipe("selective_scan"),
                   {uu, ud, ua, uB, uC, uD, uz, ubias, us, uy, read_only(uh), untracked(udsum)},
                   push.bytes, push.size, cg, n_chunks, 1);
  }

  void dt_importance(const Tensor& delta, const Tensor& dt_bias, const Tensor& scores) override {
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
    Push push(p, {off(delta, ud), off(dt_bias, ub), off(scores, us)});
    auto& pipe = pipelines_.get("dt_importance", 3, push.size, {256}, 256, "dt_importance");
    const Grid g = linear_grid(p.L);
    rec_->dispatch(pipe, {ud, ub, us}, push.bytes, push.size, g.x, g.y, g.z);
  }

  void topk_indices(const Tensor& scores, int64_t n_candidates, int64_t k,
                    const Tensor& idx) override {
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

  void gather_rows(const Tensor& src, const Tensor& idx, const Tensor& dst) override {
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
    auto& pipe = pipelines_.get("gather_rows", 3, sizeof(p) + 5 * 4, {256}, 256, "gather_rows");
    const Grid g = fold_yz(p.n);
    // Windows of source rows, each within one binding (one window unless src is huge: a
    // tied fp32 embedding of 50280 × 768 is 154 MB, lavapipe binds at most 128 MiB).
    const int64_t win = rows_fit(src);
    for (int64_t r0 = 0; r0 < std::max<int64_t>(src.rows, 1); r0 += win) {
      const int64_t nr = std::min(win, src.rows - r0);
      const Tensor part = src.row_slice(r0, nr);
      BufferUse us = bind(part, false, k, "src");
      Push push(p, {uint32_t(r0), uint32_t(r0 + nr), off(part, us), off(idx, ui), off(dst, ud)});
      rec_->dispatch(pipe, {us, ui, ud}, push.bytes, push.size, ceil_div(p.cols, 256), g.y, g.z);
    }
  }

  void causal_conv1d_step(const Tensor& x, const Tensor& weight, const Tensor* bias,
                          const Tensor& conv_state, const Tensor& y) override {
    const CausalConv1dStepParams p = make_causal_conv1d_step_params(x, weight, bias, conv_state, y);
    if (p.batch == 0 || p.channels == 0) return;
    const char* k = "causal_conv1d_step";
    check_small(k, "d_conv", p.d_conv, 64);
    BufferUse ux = bind(x, false, k, "x"), uw = bind(weight, false, k, "weight"),
              ub = bias ? bind(*bias, false, k, "bias") : dummy(),
              us = bind(conv_state, true, k, "conv_state"), uy = bind(y, true, k, "y");
    Push push(p, {off(x, ux), off(weight, uw), bias ? off(*bias, ub) : 0u, off(conv_state, us), off(y, uy)});
    auto& pipe = pipelines_.get("causal_conv1d_step", 5, push.size, {64, p.d_conv}, 64, "causal_conv1d_step");
    const Grid g = fold_yz(p.batch);
    rec_->dispatch(pipe, {ux, uw, ub, us, uy}, push.bytes, push.size, ceil_div(p.channels, 64), g.y, g.z);
  }

  void selective_scan_step(const Tensor& u, const Tensor& delta, const Tensor& A_log,
                           const Tensor& B, const Tensor& C, const Tensor& D, const Tensor* z,
                           const Tensor& dt_bias, const Tensor& ssm_state,
                           const Tensor& y) override {
    const SelectiveScanStepParams p =
        make_selective_scan_step_params(u, delta, A_log, B, C, D, z, dt_bias, ssm_state, y);
    if (p.batch == 0 || p.channels == 0) return;
    const char* k = "selective_scan_step";
    check_small(k, "d_state", p.d_state, 256);
    BufferUse uu = bind(u, false, k, "u"), ud = bind(delta, false, k, "delta"),
              ua = bind(A_log, false, k, "A_log"), uB = bind(B, false, k, "B"),
              uC = bind(C, false, k, "C"), uD = bind(D, false, k, "D"),
              uz = z ? bind(*z, false, k, "z") : dummy(), ubias = bind(dt_bias, false, k, "dt_bias"),
              us = bind(ssm_state, true, k, "ssm_state"), uy = bind(y, true, k, "y");
    Push push(p, {off(u, uu), off(delta, ud), off(A_log, ua), off(B, uB), off(C, uC), off(D, uD),
                  z ? off(*z, uz) : 0u, off(dt_bias, ubias), off(ssm_state, us), off(y, uy)});
    auto& pipe = pipelines_.get("selective_scan_step", 10, push.size, {64, p.d_state}, 64,
                                "selective_scan_step");
    const Grid g = fold_yz(p.batch);
    rec_->dispatch(pipe, {uu, ud, ua, uB, uC, uD, uz, ubias, us, uy}, push.bytes, push.size,
                   ceil_div(p.channels, 64), g.y, g.z);
  }

  // The fused decode shaders (gemm.gemv_norm_conv / gemm.gemv_norm: residual add + norm + GEMV
  // (+ conv step) in one dispatch; selective_scan_step.dt_proj(_sg): dt_proj inside the scan
  // step): DM_VULKAN_FUSED_STEP=1 on, =0 off, unset: kFusedStepDefault.
  static constexpr bool kFusedStepDefault = false;
  // gemm.gemv_norm(_conv) only with DM_VULKAN_FUSED_NORM=1 (and the fused shaders on): correct,
  // but measured 2–3× SLOWER than rms_norm + gemm.gemv on an H100 (README): every work group
  // re-reads the whole of x, the residual and the norm weight (scalar loads) from L2, which at
  // 2 rows per work group is ~2.5× the weight bytes.
  static bool fused_norm_on() {
    const char* e = std::getenv("DM_VULKAN_FUSED_NORM");
    return fused_step_on() && e && std::strcmp(e, "1") == 0;
  }
  static bool fused_step_on() {
    const char* e = std::getenv("DM_VULKAN_FUSED_STEP");
    if (e && *e) return std::strcmp(e, "0") != 0;
    return kFusedStepDefault;
  }
  // Batch 1 with the fused shaders: the norm inside the GEMV (gemm.gemv_norm, the LM head).
  void rms_norm_gemm(const Tensor* x, const Tensor& residual, const Tensor& norm_weight, float eps,
                     const Tensor& normed, const Tensor& w, const Tensor* bias, const Tensor& y) override {
    const RmsNormGemmParams p = make_rms_norm_gemm_params(x, residual, norm_weight, eps, normed, w, bias,
                                                          y, nullptr, nullptr, nullptr, nullptr);
    if (!gemv_norm(x, residual, norm_weight, normed, w, bias, y, p, nullptr, nullptr, nullptr, nullptr))
      Backend::rms_norm_gemm(x, residual, norm_weight, eps, normed, w, bias, y);
  }
  // gemm.gemv_norm(_conv) (shaders/gemv.comp): residual add, norm, GEMV (and conv step) in one
  // dispatch at M = 1 with the fused shaders on, where gemm.gemv applies, one batch of loads
  // covers a row (v stays in registers), x and the residual are 16-byte aligned and the bindings
  // fit. False: not taken (nothing enqueued).
  bool gemv_norm(const Tensor* x, const Tensor& residual, const Tensor& norm_weight, const Tensor& normed,
                 const Tensor& w, const Tensor* bias, const Tensor& y, const RmsNormGemmParams& p,
                 const Tensor* conv_weight, const Tensor* conv_bias, const Tensor* conv_state,
                 const Tensor* conv_y) {
    const bool conv = conv_weight != nullptr;
    if (!fused_norm_on() || p.gemm.M != 1 || p.gemm.N == 0 || !small_m_vec_ok(residual, w, p.gemm) ||
        (x && (x->offset % 16 != 0)) || ctx_->caps.max_storage_buffers < (conv ? 12u : 8u) ||
        (conv && (p.conv.d_conv < 1 || p.conv.d_conv > 8)) || rows_fit(w) < w.rows)
      return false;
    const GemvConfig gc = gemv_config(p.gemm);
    const uint32_t pieces = p.gemm.K / (p.gemm.w_dtype == uint32_t(DType::F32) ? 4 : 8);
    if (!gc.ok || pieces > gc.pipe * (256 / gc.rows)) return false;
    const char* k = conv ? "gemm.gemv_norm_conv" : "gemm.gemv_norm";
    BufferUse ux = x ? bind(*x, false, k, "x") : dummy(), uw = bind(w, false, k, "w"),
              ub = bias ? bind(*bias, false, k, "bias") : dummy(), uy = bind(y, true, k, "y"),
              ur = bind(residual, true, k, "residual"), un = bind(norm_weight, false, k, "norm_weight"),
              uo = bind(normed, true, k, "normed"), ut = scratch(*ticket_, 4);
    const uint32_t tail[] = {p.norm.has_residual, p.norm.weight_dtype, 0u, off(residual, ur),
                             off(norm_weight, un), off(normed, uo)};
    const uint32_t offs[] = {x ? off(*x, ux) : 0u, off(w, uw), bias ? off(*bias, ub) : 0u, off(y, uy)};
    const Grid g = linear_grid(ceil_div(p.gemm.N, gc.rows));
    auto push_tail = [&](Push& push) {  // the norm fields after the conv ones (eps as its bits)
      for (uint32_t i = 0; i < 6; ++i) {
        uint32_t v = tail[i];
        if (i == 2) std::memcpy(&v, &p.norm.eps, 4);
        std::memcpy(push.bytes + push.size, &v, 4);
        push.size += 4;
      }
      DM_ASSERT(push.size <= sizeof(push.bytes));
    };
    if (conv) {
      const CausalConv1dStepParams& c = p.conv;
      BufferUse ucw = bind(*conv_weight, false, k, "conv_weight"),
                ucb = conv_bias ? bind(*conv_bias, false, k, "conv_bias") : dummy(),
                ucs = bind(*conv_state, true, k, "conv_state"), ucy = bind(*conv_y, true, k, "conv_y");
      Push push(p.gemm, {offs[0], offs[1], offs[2], offs[3], gc.rows, c.channels, c.d_conv, c.y_stride,
                         c.weight_dtype, c.bias_dtype, c.has_bias, off(*conv_weight, ucw),
                         conv_bias ? off(*conv_bias, ucb) : 0u, off(*conv_state, ucs), off(*conv_y, ucy)});
      push_tail(push);
      auto& pipe = pipelines_.get(k, 12, push.size, gc.spec(), 256, k);
      rec_->dispatch(pipe, {ux, uw, ub, uy, ucw, ucb, ucs, ucy, ur, un, uo, ut}, push.bytes, push.size, g.x,
                     g.y, g.z);
    } else {
      Push push(p.gemm, {offs[0], offs[1], offs[2], offs[3], gc.rows});
      push_tail(push);
      auto& pipe = pipelines_.get(k, 8, push.size, gc.spec(), 256, k);
      rec_->dispatch(pipe, {ux, uw, ub, uy, ur, un, uo, ut}, push.bytes, push.size, g.x, g.y, g.z);
    }
    return true;
  }
  // Decode fusions (backend.h): rms_norm, then in_proj and the conv step in one dispatch
  // (gemm.small_m_vec_conv), where the GEMV takes its 16-byte path; else the composition.
  void rms_norm_gemm_conv_step(const Tensor* x, const Tensor& residual, const Tensor& norm_weight,
                               float eps, const Tensor& normed, const Tensor& w, const Tensor* bias,
                               const Tensor& y, const Tensor& conv_weight, const Tensor* conv_bias,
                               const Tensor& conv_state, const Tensor& conv_y) override {
    const RmsNormGemmParams p = make_rms_norm_gemm_params(x, residual, norm_weight, eps, normed, w,
                                                          bias, y, &conv_weight, conv_bias,
                                                          &conv_state, &conv_y);
    if (gemv_norm(x, residual, norm_weight, normed, w, bias, y, p, &conv_weight, conv_bias, &conv_state,
                  &conv_y))
      return;
    const bool fuse = fused_step_on() && p.gemm.M >= 1 && p.gemm.M <= 4 && small_m_vec_ok(normed, w, p.gemm) &&
                      p.conv.d_conv >= 1 && p.conv.d_conv <= 8 && ctx_->caps.max_storage_buffers >= 8 &&
                      rows_fit(w) >= w.rows && rows_fit(normed) >= normed.rows && rows_fit(y) >= y.rows;
    if (!fuse)
      return Backend::rms_norm_gemm_conv_step(x, residual, norm_weight, eps, normed, w, bias, y,
                                              conv_weight, conv_bias, conv_state, conv_y);
    if (x)
      rms_norm(*x, &residual, norm_weight, normed, eps);  // residual += x
    else
      rms_norm(residual, nullptr, norm_weight, normed, eps);
    const char* k = "gemm.small_m_vec_conv";  // the label of the bindings' errors too
    BufferUse ux = bind(normed, false, k, "x"), uw = bind(w, false, k, "w"),
              ub = bias ? bind(*bias, false, k, "bias") : dummy(), uy = bind(y, true, k, "y"),
              ucw = bind(conv_weight, false, k, "conv_weight"),
              ucb = conv_bias ? bind(*conv_bias, false, k, "conv_bias") : dummy(),
              ucs = bind(conv_state, true, k, "conv_state"), ucy = bind(conv_y, true, k, "conv_y");
    // gemm.gemv_conv where gemm.gemv applies (as gemm() decides), else gemm.small_m_vec_conv.
    const GemvConfig gc = gemv_config(p.gemm);
    if (gc.ok) k = "gemm.gemv_conv";
    const uint32_t rows = gc.ok ? gc.rows : small_m_vec_rows(p.gemm);
    const CausalConv1dStepParams& c = p.conv;
    Push push(p.gemm, {off(normed, ux), off(w, uw), bias ? off(*bias, ub) : 0u, off(y, uy), rows,
                       c.channels, c.d_conv, c.y_stride, c.weight_dtype, c.bias_dtype, c.has_bias,
                       off(conv_weight, ucw), conv_bias ? off(*conv_bias, ucb) : 0u,
                       off(conv_state, ucs), off(conv_y, ucy)});
    auto& pipe = pipelines_.get(k, 8, push.size, gc.ok ? gc.spec() : std::vector<uint32_t>{}, 256, k);
    const Grid g = linear_grid(ceil_div(p.gemm.N, rows));
    rec_->dispatch(pipe, {ux, uw, ub, uy, ucw, ucb, ucs, ucy}, push.bytes, push.size, g.x, g.y, g.z);
  }

  // dt_proj's dot product inside the scan step (selective_scan_step.dt_proj): one dispatch.
  void dt_proj_scan_step(const Tensor& dt_low, const Tensor& dt_proj, const Tensor& delta,
                         const Tensor& u, const Tensor& A_log, const Tensor& B, const Tensor& C,
                         const Tensor& D, const Tensor* z, const Tensor& dt_bias,
                         const Tensor& ssm_state, const Tensor& y) override {
    const DtProjScanStepParams p = make_dt_proj_scan_step_params(dt_low, dt_proj, delta, u, A_log, B,
                                                                 C, D, z, dt_bias, ssm_state, y);
    if (p.scan.batch == 0 || p.scan.channels == 0) return;
    if (!fused_step_on() || ctx_->caps.max_storage_buffers < 12 || p.scan.d_state > 256 ||
        rows_fit(dt_proj) < dt_proj.rows)
      return Backend::dt_proj_scan_step(dt_low, dt_proj, delta, u, A_log, B, C, D, z, dt_bias,
                                        ssm_state, y);
    const char* k = "selective_scan_step.dt_proj";
    BufferUse uu = bind(u, false, k, "u"), ud = bind(delta, true, k, "delta"),
              ua = bind(A_log, false, k, "A_log"), uB = bind(B, false, k, "B"),
              uC = bind(C, false, k, "C"), uD = bind(D, false, k, "D"),
              uz = z ? bind(*z, false, k, "z") : dummy(), ubias = bind(dt_bias, false, k, "dt_bias"),
              us = bind(ssm_state, true, k, "ssm_state"), uy = bind(y, true, k, "y"),
              ul = bind(dt_low, false, k, "dt_low"), uw = bind(dt_proj, false, k, "dt_proj");
    Push push(p.scan, {off(u, uu), off(delta, ud), off(A_log, ua), off(B, uB), off(C, uC), off(D, uD),
                       z ? off(*z, uz) : 0u, off(dt_bias, ubias), off(ssm_state, us), off(y, uy),
                       p.dt.K, p.dt.x_stride, p.dt.w_stride, p.dt.w_dtype, off(dt_low, ul),
                       off(dt_proj, uw)});
    const Grid g = fold_yz(p.scan.batch);
    // LANES = 8 invocations per channel (selective_scan_step.dt_proj_sg) where subgroup shuffles
    // allow, 32 channels per work group of 256; else one invocation per channel.
    if (const uint32_t lanes = 8; shuffles_ok() && ctx_->caps.subgroup_size >= lanes && !old_decode_kernels()) {
      const char* v = "selective_scan_step.dt_proj_sg";
      auto& pipe = pipelines_.get(v, 12, push.size, {256, p.scan.d_state, lanes}, 256, v);
      rec_->dispatch(pipe, {uu, ud, ua, uB, uC, uD, uz, ubias, us, uy, ul, uw}, push.bytes, push.size,
                     ceil_div(p.scan.channels, 256 / lanes), g.y, g.z);
      return;
    }
    auto& pipe = pipelines_.get(k, 12, push.size, {64, p.scan.d_state}, 64, k);
    rec_->dispatch(pipe, {uu, ud, ua, uB, uC, uD, uz, ubias, us, uy, ul, uw}, push.bytes, push.size,
                   ceil_div(p.scan.channels, 64), g.y, g.z);
  }

  // Capture / replay (recording.cpp): one command buffer per recording.
  std::unique_ptr<Recording> record(const std::function<void()>& enqueue) override;
  void replay(Recording& recording) override;

  // Hooks of vulkan_backend.h.
  vk::Recorder& recorder() { return *rec_; }
  const vk::Recorder& recorder() const { return *rec_; }

 private:
  VulkanBuffer& vbuf(Buffer& b, const char* what) {
    auto* vb = dynamic_cast<VulkanBuffer*>(&b);
    if (!vb || &vb->ctx != ctx_.get())
      fail("[vulkan] ", what, ": the buffer was not allocated by this Vulkan backend");
    return *vb;
  }

  BufferUse bind(const Tensor& t, bool write, const char* kernel, const char* name) {
    VulkanBuffer& vb = vbuf(*t.buf, kernel);
    BufferUse u;
    u.buf = &vb;
    u.desc_offset = t.offset / align_ * align_;
    const VkDeviceSize rel = t.offset - u.desc_offset;
    // The range covers exactly the tensor (whole 32-bit words): the validation layer and any
    // robustness checks then see what the dispatch really addresses.
    const VkDeviceSize need = std::max<VkDeviceSize>(4, (rel + t.span_bytes() + 3) / 4 * 4);
    u.desc_range = need;
    if (need > ctx_->caps.max_storage_range / 4 * 4)
      fail("[vulkan] ", kernel, ": ", name, " ", t.describe(), " spans ", t.span_bytes(),
           " bytes, more than one binding may address on ", ctx_->caps.name,
           " (maxStorageBufferRange ", ctx_->caps.max_storage_range, ")");
    u.begin = t.offset;
    u.end = t.offset + t.span_bytes();
    u.rows = VkDeviceSize(std::max<int64_t>(t.rows, 1));
    u.row_bytes = VkDeviceSize(t.cols) * dtype_size(t.dtype);
    u.stride = VkDeviceSize(t.row_stride) * dtype_size(t.dtype);
    u.write = write;
    return u;
  }
  // How many leading rows of t one binding can address (all of them, almost always).
  int64_t rows_fit(const Tensor& t) const {
    const uint64_t lim = ctx_->caps.max_storage_range / 4 * 4 - align_ - 4;
    if (t.span_bytes() <= lim || t.rows <= 1) return std::max<int64_t>(t.rows, 1);
    const uint64_t es = dtype_size(t.dtype);
    if (uint64_t(t.cols) * es > lim)
      fail("[vulkan] ", t.describe(), ": one row is larger than ", ctx_->caps.name,
           " can bind (maxStorageBufferRange ", ctx_->caps.max_storage_range, ")");
    return int64_t((lim / es - uint64_t(t.cols)) / uint64_t(t.row_stride)) + 1;
  }
  // Elements [i0, i0 + n) of a vector stored as 1 × len or len × 1.
  static Tensor vec_slice(const Tensor& v, int64_t i0, int64_t n) {
    return v.rows == 1 && v.cols != 1 ? v.col_slice(i0, n) : v.row_slice(i0, n);
  }
  // gemm.small_m_vec reads W and x in 16-byte pieces: rows must start 16-byte aligned (the
  // descriptor start is then 16-byte aligned too: it is the offset rounded down to a multiple
  // of the power-of-two binding alignment) and K must be whole pieces.
  static bool small_m_vec_ok(const Tensor& x, const Tensor& w, const GemmParams& p) {
    const uint32_t per = w.dtype == DType::F32 ? 4 : 8;  // weights per 16 bytes
    return x.offset % 16 == 0 && p.x_stride % 4 == 0 && w.offset % 16 == 0 && p.K % per == 0 &&
           p.w_stride % per == 0;
  }
  // Invocations per row T (256 / rows): about six 16-byte pieces each, at least 8 (so the
  // reduction stays short), and more (fewer rows per group) while the grid would leave a
  // large GPU idle and each invocation still gets two pieces.
  static uint32_t small_m_vec_rows(const GemmParams& p) {
    const uint32_t pieces = p.K / (p.w_dtype == uint32_t(DType::F32) ? 4 : 8);
    uint32_t T = 8;
    while (T < 256 && T * 6 < pieces) T *= 2;
    while (T < 256 && ceil_div(p.N, 256 / T) < 264 && pieces >= 2 * T) T *= 2;
    return 256 / T;
  }
  // gemm.gemv (shaders/gemv.comp): where the device has subgroup shuffles in compute and a
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
  // gemm.small_m_vec; DM_VULKAN_GEMV=T,PIPE forces a shape.
  struct GemvConfig {
    bool ok = false;
    uint32_t rows = 8, pipe = 8, mm = 4, sg = 32;
    std::vector<uint32_t> spec() const { return {rows, pipe, mm, sg}; }
  };
  // Subgroup shuffles in compute, subgroups of 4 … 128 (a power of two) and work groups of 256.
  bool shuffles_ok() const {
    const auto& c = ctx_->caps;
    const VkSubgroupFeatureFlags need = VK_SUBGROUP_FEATURE_BASIC_BIT | VK_SUBGROUP_FEATURE_SHUFFLE_BIT;
    const uint32_t sg = c.subgroup_size;
    return c.subgroup_in_compute && (c.subgroup_ops & need) == need && sg >= 4 && sg <= 128 &&
           (sg & (sg - 1)) == 0 && c.max_wg_invocations >= 256;
  }
  // DM_VULKAN_GEMV=old: the decode kernels as they were before the subgroup ones (gemm.small_m_vec,
  // gemm.small_m_vec_conv, selective_scan_step.dt_proj), for comparisons in one run.
  static bool old_decode_kernels() {
    const char* env = std::getenv("DM_VULKAN_GEMV");
    return env && std::strcmp(env, "old") == 0;
  }
  GemvConfig gemv_config(const GemmParams& p) const {
    GemvConfig g;
    const uint32_t sg = ctx_->caps.subgroup_size;
    if (!shuffles_ok() || old_decode_kernels()) return g;
    const char* env = std::getenv("DM_VULKAN_GEMV");
    const uint32_t pieces = p.K / (p.w_dtype == uint32_t(DType::F32) ? 4 : 8);
    uint32_t T = 1, pipe = 0;
    if (env && *env) {
      unsigned t = 0, q = 0;
      if (std::sscanf(env, "%u,%u", &t, &q) != 2 || t < 1 || t > 256 || (t & (t - 1)) != 0 || q < 1 || q > 16)
        fail("[vulkan] DM_VULKAN_GEMV=", env, ": want old, or T,PIPE with T a power of two ≤ 256, PIPE 1 … 16");
      T = t, pipe = q;
    } else {
      while (T < 256 && ceil_div(pieces, T) > 3) T *= 2;
      while (T < 256 && ceil_div(p.N, 256 / T) < 264 && pieces > 2 * T) T *= 2;
      pipe = std::clamp<uint32_t>(ceil_div(pieces, T), 1, 16);
    }
    g.ok = true;
    g.rows = 256 / T;
    g.pipe = pipe;
    g.mm = p.M == 1 ? 1 : 4;
    g.sg = sg;
    return g;
  }
  static uint32_t off(const Tensor& t, const BufferUse& u) {
    return uint32_t((t.offset - u.desc_offset) / dtype_size(t.dtype));
  }
  BufferUse dummy() const {
    BufferUse u;
    u.buf = dummy_.get();
    u.desc_range = dummy_->vk_size;
    u.track = false;
    return u;
  }
  static BufferUse untracked(BufferUse u) {
    u.track = false;
    return u;
  }
  static BufferUse read_only(BufferUse u) {
    u.write = false;
    return u;
  }
  BufferUse scratch(VulkanBuffer& b, uint64_t bytes) const {
    BufferUse u;
    u.buf = &b;
    u.desc_range = std::min<VkDeviceSize>(b.vk_size, ctx_->caps.max_storage_range) / 4 * 4;
    if (bytes > u.desc_range)
      fail("[vulkan] selective_scan: chunk scratch of ", bytes, " bytes exceeds maxStorageBufferRange ",
           ctx_->caps.max_storage_range);
    u.begin = 0;
    u.end = bytes;
    u.row_bytes = bytes;
    u.write = true;
    return u;
  }
  void ensure_scratch(std::unique_ptr<VulkanBuffer>& b, uint64_t bytes) {
    if (b && b->bytes() >= bytes) return;
    // The old buffer may still be read by enqueued work: VulkanBuffer defers its own free.
    b = std::make_unique<VulkanBuffer>(*ctx_, std::max<uint64_t>(bytes, uint64_t(1) << 20),
                                       vk::BufferKind::Device);
  }
  // DM_VULKAN_SCAN: "" (the default: chunked), chunked, warp, subgroup or lookback. The subgroup
  // and warp scans need shuffles in compute and a device where work groups of k × subgroupSize
  // invocations are k full subgroups of the reported size (NVIDIA and lavapipe, where they are
  // tested); the chunked scan wherever a forced one does not apply.
  static std::string scan_mode() {
    const char* env = std::getenv("DM_VULKAN_SCAN");
    return env ? env : "";
  }
  // The look-back scan's shape: CW channels (consecutive lanes) × S segments of TOK tokens per
  // work group. 32 × 8 × 8 where the shared memory allows (NVIDIA, AMD: 48+ KiB; the fastest
  // of 7 shapes measured on the H100), 32 × 4 × 8 on 32 KiB (lavapipe);
  // DM_VULKAN_SCAN_LB=CW,S,TOK overrides (TOK 4 or 8).
  struct LbConfig {
    bool ok = false;
    uint32_t cw = 32, s = 8, tok = 8;
  };
  // Words of the look-back sync buffer: 4 counters, a done count per channel group (at most
  // kLbMaxGroups, shaders/selective_scan_lb.comp's GMAX), a flag per (chunk, channel group);
  // at most 128K flags, at most one binding.
  static constexpr uint64_t kLbMaxGroups = 8192;
  uint64_t lb_sync_words() const {
    return std::max<uint64_t>(std::min<uint64_t>(4 + kLbMaxGroups + (uint64_t(1) << 17), ctx_->caps.max_storage_range / 4),
                              4 + kLbMaxGroups);
  }
  static uint64_t lb_shared_bytes(uint32_t cw, uint32_t s, uint32_t tok) {
    const uint64_t chunk = uint64_t(s) * tok;
    return 4 * (2ull * s * 16 * cw + uint64_t(s) * cw + 2 * chunk * 16 + 3ull * 16 * cw + cw + 3);
  }
  LbConfig lb_config(uint32_t d_state) const {
    LbConfig c;
    if (d_state != 16) return c;
    const auto& caps = ctx_->caps;
    auto fits = [&](uint32_t cw, uint32_t s, uint32_t tok) {
      return cw >= 1 && s >= 1 && s <= 16 && (tok == 4 || tok == 8) && uint64_t(cw) * s <= caps.max_wg_invocations &&
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
  void ensure_sync() {
    if (scan_sync_) return;
    // Ticket counter, 2 unused, fallback count, one done count per channel group, one flag per
    // (chunk, channel group): all zero once; the ticket counter only grows (the host knows its
    // value), the done counts return to zero, flags carry the dispatch's epoch: no clearing
    // between dispatches.
    const uint64_t bytes = lb_sync_words() * 4;
    scan_sync_ = std::make_unique<VulkanBuffer>(*ctx_, bytes, vk::BufferKind::Device);
    const std::vector<uint32_t> zeros(size_t(bytes / 4), 0u);
    rec_->upload(*scan_sync_, 0, zeros.data(), bytes);
  }
  // The warp scan's shape (shaders/selective_scan_warp.comp): CB channels (subgroups) per work
  // group, R tokens per slice (chunks of subgroupSize / 4 · R tokens). DM_VULKAN_SCAN=warp forces
  // it where it applies (the chunked scan otherwise), DM_VULKAN_SCAN_WARP=CB,R picks the shape;
  // by default 8,8 (44 KiB of shared memory at subgroups of 32), else 4,4 where that does not
  // fit. R <= CB: a work group stages a chunk's B and C rows with one vec4 per invocation.
  struct WarpConfig {
    bool ok = false;
    bool vec = false;  // rows of 4 floats: the vec4 variant (selective_scan.warp_scalar otherwise)
    uint32_t cb = 8, r = 8;
  };
  static uint64_t warp_shared_bytes(uint64_t sg, uint64_t cb, uint64_t r) {
    const uint64_t nsl = sg / 4, t = nsl * r;
    return 16 * (6 * t * (cb / 4) + 16 * (t + nsl) + 6 * cb * (t / 4 + 1)) + 4 * cb;
  }
  // offs: element offsets of u, delta, B, C, z, y in their bindings (the vec4 variant needs all
  // of them, the row strides and the channel count to be multiples of 4).
  WarpConfig warp_config(const SelectiveScanParams& p, const std::string& mode,
                         std::initializer_list<uint32_t> offs) const {
    WarpConfig w;
    if (mode != "warp" && !(mode.empty() && warp_default(p))) return w;
    const auto& c = ctx_->caps;
    const VkSubgroupFeatureFlags need = VK_SUBGROUP_FEATURE_BASIC_BIT | VK_SUBGROUP_FEATURE_SHUFFLE_BIT;
    if (p.d_state != 16 || !c.subgroup_in_compute || (c.subgroup_ops & need) != need) return w;
    const uint32_t sg = c.subgroup_size;
    if (sg < 4 || sg > 128 || (sg & (sg - 1)) != 0) return w;
    w.vec = p.channels % 4 == 0 && p.u_stride % 4 == 0 && p.delta_stride % 4 == 0 && p.B_stride % 4 == 0 &&
            p.C_stride % 4 == 0 && p.y_stride % 4 == 0 && (!p.has_z || p.z_stride % 4 == 0);
    for (uint32_t o : offs) w.vec = w.vec && o % 4 == 0;
    auto fits = [&](uint32_t cb, uint32_t r) {
      return cb >= 4 && cb % 4 == 0 && r >= 4 && r % 4 == 0 && r <= 16 && r <= cb &&
             uint64_t(cb) * sg <= c.max_wg_invocations && warp_shared_bytes(sg, cb, r) <= c.max_shared_bytes;
    };
    if (const char* env = std::getenv("DM_VULKAN_SCAN_WARP")) {
      unsigned cb = 0, r = 0;
      if (std::sscanf(env, "%u,%u", &cb, &r) != 2 || !fits(cb, r))
        fail("[vulkan] DM_VULKAN_SCAN_WARP=", env, ": want CB,R with CB a multiple of 4, R in 4, 8, 12, 16, R <= CB, ",
             "fitting ", c.max_shared_bytes, " bytes of shared memory and the work-group limits");
      w.ok = true, w.cb = cb, w.r = r;
      return w;
    }
    for (const auto& [cb, r] : {std::pair{8u, 8u}, std::pair{4u, 4u}})
      if (fits(cb, r)) {
        w.ok = true, w.cb = cb, w.r = r;
        return w;
      }
    return w;
  }
  // Whether the warp scan is the default (no DM_VULKAN_SCAN): not until a GPU measurement shows it
  // faster than the chunked scan (it has run on lavapipe only).
  bool warp_default(const SelectiveScanParams&) const { return false; }
  bool scan_subgroup_ok(uint32_t d_state) const {
    const auto& c = ctx_->caps;
    const std::string mode = scan_mode();
    if (mode == "chunked") return false;
    const VkSubgroupFeatureFlags need = VK_SUBGROUP_FEATURE_BASIC_BIT | VK_SUBGROUP_FEATURE_SHUFFLE_BIT;
    if (!c.subgroup_in_compute || (c.subgroup_ops & need) != need) return false;
    const uint64_t sg = c.subgroup_size, ch = sg * 4;
    if (sg < 4 || sg > 128 || (sg & (sg - 1)) != 0 || 4 * sg > c.max_wg_invocations) return false;
    if (4 * (ch * (3 * 4 + 2 * uint64_t(d_state)) + 5 * sg) > c.max_shared_bytes) return false;
    // Opt-in: correct (lavapipe and H100 tests) but on the H100 2.5-4x SLOWER than the chunked
    // scan (one subgroup per channel walking all of L is latency-bound).
    return mode == "subgroup";
  }
  static void check_small(const char* kernel, const char* what, uint32_t v, uint32_t max) {
    if (v > max) fail("[vulkan] ", kernel, ": ", what, " = ", v, " is larger than this backend supports (", max, ")");
  }
  // One work group per item, numbered x fastest over (x, y).
  Grid linear_grid(uint64_t groups) const {
    Grid g;
    g.x = uint32_t(std::min<uint64_t>(groups, ctx_->caps.max_wg_count[0]));
    g.y = ceil_div(groups, g.x);
    return g;
  }
  // Items folded over (y, z): item = y + Y·z.
  Grid fold_yz(uint64_t items) const {
    Grid g;
    g.y = uint32_t(std::min<uint64_t>(items, ctx_->caps.max_wg_count[1]));
    g.z = ceil_div(items, g.y);
    return g;
  }

  std::unique_ptr<vk::Context> ctx_;
  vk::PipelineCache pipelines_;
  std::unique_ptr<vk::Recorder> rec_;
  VkDeviceSize align_ = 4;
  // Declared after the recorder: freed first, through its deferred free.
  std::unique_ptr<VulkanBuffer> dummy_, scan_h_, scan_d_, scan_sync_, ticket_;
  uint32_t lb_tickets_ = 0;  // look-back tickets handed out so far (the device counter's value)
  uint32_t lb_epoch_ = 1;    // the next look-back dispatch's flag tag
};

class VulkanRecording final : public Recording {
 public:
  explicit VulkanRecording(std::unique_ptr<vk::Captured> c) : c(std::move(c)) {}
  bool valid() const override { return c->valid(); }
  std::unique_ptr<vk::Captured> c;
};

std::unique_ptr<Recording> VulkanBackend::record(const std::function<void()>& enqueue) {
  if (rec_->profiling()) return nullptr;  // --profile times every dispatch: run eagerly
  rec_->begin_capture();
  try {
    enqueue();
  } catch (...) {
    rec_->abort_capture();
    throw;
  }
  return std::make_unique<VulkanRecording>(rec_->end_capture());
}

void VulkanBackend::replay(Recording& recording) {
  auto* r = dynamic_cast<VulkanRecording*>(&recording);
  if (!r) fail("[vulkan] replay: the recording was not made by the Vulkan backend");
  rec_->replay(*r->c);
}

VulkanBackend* as_vulkan(Backend& b) { return dynamic_cast<VulkanBackend*>(&b); }

}  // namespace

std::vector<VulkanDeviceInfo> list_vulkan_devices(std::string* why) {
  std::vector<VulkanDeviceInfo> out;
  for (const auto& d : vk::enumerate_devices(why)) out.push_back({d.index, d.caps.name, d.caps.describe()});
  return out;
}

BackendInfo probe_vulkan_backend() {
  BackendInfo info;
  info.name = "vulkan";
  std::string why;
  const auto devs = vk::enumerate_devices(&why);
  info.available = !devs.empty();
  info.detail = devs.empty() ? why : devs.front().caps.name + " (" + devs.front().caps.type + ")";
  info.software = !devs.empty() && devs.front().caps.type == "cpu";
  return info;
}

std::unique_ptr<Backend> create_vulkan_backend(int device) {
  return std::make_unique<VulkanBackend>(device);
}

bool vulkan_set_profiling(Backend& backend, bool on) {
  VulkanBackend* v = as_vulkan(backend);
  if (!v) return false;
  v->recorder().set_profiling(on);
  return true;
}

std::vector<VulkanKernelTime> vulkan_profile(Backend& backend) {
  std::vector<VulkanKernelTime> out;
  VulkanBackend* v = as_vulkan(backend);
  if (!v) return out;
  v->recorder().finish();
  for (const auto& t : v->recorder().profile()) out.push_back({t.kernel, t.dispatches, t.total_us});
  return out;
}

std::string vulkan_profile_table(Backend& backend) {
  const auto rows = vulkan_profile(backend);
  double total = 0;
  for (const auto& r : rows) total += r.total_us;
  std::ostringstream os;
  os << std::left << std::setw(28) << "kernel" << std::right << std::setw(10) << "calls"
     << std::setw(14) << "total ms" << std::setw(12) << "avg us" << std::setw(8) << "%" << "\n";
  for (const auto& r : rows)
    os << std::left << std::setw(28) << r.kernel << std::right << std::setw(10) << r.dispatches
       << std::setw(14) << std::fixed << std::setprecision(3) << r.total_us / 1e3 << std::setw(12)
       << std::setprecision(1) << r.total_us / double(std::max<uint64_t>(1, r.dispatches))
       << std::setw(8) << std::setprecision(1) << (total > 0 ? 100.0 * r.total_us / total : 0.0)
       << "\n";
  return os.str();
}

bool vulkan_stats(const Backend& backend, VulkanStats* out) {
  auto* v = dynamic_cast<const VulkanBackend*>(&backend);
  if (!v) return false;
  const auto& s = v->recorder().stats();
  *out = {s.dispatches, s.copies, s.barriers, s.submits};
  return true;
}

bool vulkan_strided_overlap(uint64_t a_begin, uint64_t a_rows, uint64_t a_row_bytes,
                            uint64_t a_stride, uint64_t b_begin, uint64_t b_rows,
                            uint64_t b_row_bytes, uint64_t b_stride) {
  vk::BufferUse a, b;
  a.begin = a_begin, a.rows = a_rows, a.row_bytes = a_row_bytes, a.stride = a_stride;
  a.end = a_begin + (a_rows - 1) * a_stride + a_row_bytes;
  b.begin = b_begin, b.rows = b_rows, b.row_bytes = b_row_bytes, b.stride = b_stride;
  b.end = b_begin + (b_rows - 1) * b_stride + b_row_bytes;
  return vk::Recorder::overlap_for_test(a, b);
}

}  // namespace dm
