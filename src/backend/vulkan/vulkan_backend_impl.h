// The Vulkan backend's class, shared by the files that define its methods (internal to
// src/backend/vulkan/; callers see vulkan_backend.h). Each Backend method checks its call with
// make_*_params (params.h), binds its tensors and pushes the params struct followed by the
// tensors' element offsets, and enqueues one dispatch (two for causal_conv1d, up to three for
// selective_scan) on the recorder, which derives the barriers. Nothing waits until download()
// or synchronize().
//
// Tensor offsets: a binding's descriptor range starts at the tensor's byte offset rounded down
// to max(minStorageBufferOffsetAlignment, 4); the remainder travels in elements in the
// push-constant tail after the params struct (every block here is ≤ 100 bytes, inside the
// 128 bytes Vulkan guarantees). Weights (F32 / F16 / BF16) are read as 32-bit words and
// widened in the shader, so no device feature is needed and BF16 needs no conversion at load.
//
// Where the methods live: vulkan_backend.cpp (construction, buffers, bindings, capture and the
// entry points of vulkan_backend.h), vulkan_gemm.cpp (GEMM and GEMV choice), vulkan_scan.cpp
// (the prompt scans), vulkan_kernels.cpp (the other prompt kernels), vulkan_decode.cpp (the
// decode steps and fusions), vulkan_block_step.cpp (a whole decode layer).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "backend/params.h"
#include "backend/vulkan/context.h"
#include "backend/vulkan/pipeline.h"
#include "backend/vulkan/recorder.h"
#include "core/error.h"

namespace dm::vk {

inline uint32_t ceil_div(uint64_t a, uint64_t b) { return uint32_t((a + b - 1) / b); }

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
    append(tail);
  }
  // More 32-bit words after those already there.
  template <typename Words>
  void append(const Words& words) {
    for (uint32_t v : words) {
      DM_ASSERT(size + 4 <= sizeof(bytes));
      std::memcpy(bytes + size, &v, 4);
      size += 4;
    }
  }
  void append(std::initializer_list<uint32_t> words) { append<>(words); }
};

// The ten tensors every selective-scan kernel binds, in its binding order (u, delta, A_log, B,
// C, D, z, dt_bias, ssm_state, y; z a dummy binding when absent), and their element offsets in
// those bindings, which every scan shader takes in the same order among its push constants.
struct ScanBindings {
  BufferUse u, delta, A_log, B, C, D, z, dt_bias, state, y;
  enum Slot { kU, kDelta, kA, kB, kC, kD, kZ, kBias, kState, kY };  // indices of off
  std::array<uint32_t, 10> off{};
  // The ten uses in binding order, then `more` (bindings 10, 11, ...).
  std::vector<BufferUse> uses(std::initializer_list<BufferUse> more = {}) const {
    std::vector<BufferUse> v{u, delta, A_log, B, C, D, z, dt_bias, state, y};
    v.insert(v.end(), more);
    return v;
  }
};

struct Grid {
  uint32_t x = 1, y = 1, z = 1;
};

class VulkanBackend final : public Backend {
 public:
  explicit VulkanBackend(int device);
  ~VulkanBackend() override;

  std::string name() const override { return "vulkan"; }
  std::string device_name() const override { return ctx_->caps.name; }
  bool supports_weight_dtype(DType t) const override {
    return t == DType::F32 || t == DType::F16 || t == DType::BF16;
  }

  std::unique_ptr<Buffer> alloc(size_t bytes) override {
    return std::make_unique<VulkanBuffer>(*ctx_, bytes, BufferKind::Device);
  }
  void upload(Buffer& dst, size_t offset, const void* src, size_t bytes) override;
  void download(const Buffer& src, size_t offset, void* dst, size_t bytes) override;
  // Not waiting (Recorder::download_start, async_download.cpp) unless DM_VULKAN_ASYNC_DOWNLOAD=0:
  // then Backend's default (at once), for the A/B.
  uint64_t download_start(const Buffer& src, size_t offset, size_t bytes) override;
  void download_wait(uint64_t ticket, void* dst) override;
  void synchronize() override { rec_->finish(); }

  // Prompt kernels (vulkan_gemm.cpp, vulkan_scan.cpp, vulkan_kernels.cpp).
  void gemm(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) override;
  void selective_scan(const Tensor& u, const Tensor& delta, const Tensor& A_log, const Tensor& B,
                      const Tensor& C, const Tensor& D, const Tensor* z, const Tensor& dt_bias,
                      const Tensor& ssm_state, const Tensor& y) override;
  void rms_norm(const Tensor& x, const Tensor* residual, const Tensor& weight, const Tensor& y,
                float eps) override;
  void causal_conv1d(const Tensor& x, const Tensor& weight, const Tensor* bias,
                     const Tensor& conv_state, const Tensor& y) override;
  void dt_importance(const Tensor& delta, const Tensor& dt_bias, const Tensor& scores) override;
  void topk_indices(const Tensor& scores, int64_t n_candidates, int64_t k,
                    const Tensor& idx) override;
  void gather_rows(const Tensor& src, const Tensor& idx, const Tensor& dst) override;
  void argmax(const Tensor& x, int64_t n, const Tensor& idx) override;  // vulkan_argmax.cpp

  // Decode steps and fusions (vulkan_decode.cpp).
  void causal_conv1d_step(const Tensor& x, const Tensor& weight, const Tensor* bias,
                          const Tensor& conv_state, const Tensor& y) override;
  void selective_scan_step(const Tensor& u, const Tensor& delta, const Tensor& A_log,
                           const Tensor& B, const Tensor& C, const Tensor& D, const Tensor* z,
                           const Tensor& dt_bias, const Tensor& ssm_state,
                           const Tensor& y) override;
  void rms_norm_gemm_conv_step(const Tensor* x, const Tensor& residual, const Tensor& norm_weight,
                               float eps, const Tensor& normed, const Tensor& w, const Tensor* bias,
                               const Tensor& y, const Tensor& conv_weight, const Tensor* conv_bias,
                               const Tensor& conv_state, const Tensor& conv_y) override;
  void dt_proj_scan_step(const Tensor& dt_low, const Tensor& dt_proj, const Tensor& delta,
                         const Tensor& u, const Tensor& A_log, const Tensor& B, const Tensor& C,
                         const Tensor& D, const Tensor* z, const Tensor& dt_bias,
                         const Tensor& ssm_state, const Tensor& y) override;
  // One decode layer in three dispatches (vulkan_block_step.cpp, shaders/mamba_step.comp).
  void mamba_block_step(const MambaBlockStepArgs& a) override;
  // Where the next layer's norm runs at the end of out_proj (gemm.gemv_norm_tail,
  // vulkan_decode.cpp).
  bool decode_norm_tail(const MambaBlockStepArgs& a) override;

  // Capture / replay (recording.cpp): one command buffer per recording.
  std::unique_ptr<Recording> record(const std::function<void()>& enqueue) override;
  void replay(Recording& recording) override;

  // Hooks of vulkan_backend.h.
  Recorder& recorder() { return *rec_; }
  const Recorder& recorder() const { return *rec_; }
  const Caps& caps() const { return ctx_->caps; }

 private:
  // Buffers and bindings (vulkan_backend.cpp).
  VulkanBuffer& vbuf(Buffer& b, const char* what);
  BufferUse bind(const Tensor& t, bool write, const char* kernel, const char* name);
  // bind() for the scans' ten tensors (delta written by the fused dt_proj step: delta_out).
  ScanBindings bind_scan(const char* kernel, const Tensor& u, const Tensor& delta,
                         const Tensor& A_log, const Tensor& B, const Tensor& C, const Tensor& D,
                         const Tensor* z, const Tensor& dt_bias, const Tensor& ssm_state,
                         const Tensor& y, bool delta_out = false);
  // How many leading rows of t one binding can address (all of them, almost always).
  int64_t rows_fit(const Tensor& t) const;
  // Elements [i0, i0 + n) of a vector stored as 1 × len or len × 1.
  static Tensor vec_slice(const Tensor& v, int64_t i0, int64_t n) {
    return v.rows == 1 && v.cols != 1 ? v.col_slice(i0, n) : v.row_slice(i0, n);
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
  static void check_small(const char* kernel, const char* what, uint32_t v, uint32_t max) {
    if (v > max)
      fail("[vulkan] ", kernel, ": ", what, " = ", v, " is larger than this backend supports (",
           max, ")");
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

  // GEMM and GEMV choice (vulkan_gemm.cpp). gemm.gemv's shape: ROWS rows per work group of 256,
  // PIPE 16-byte pieces per invocation in flight, MM rows of x, SG the subgroup size (the
  // specialization constants; gemv_config explains the choice).
  struct GemvConfig {
    bool ok = false;
    uint32_t rows = 8, pipe = 8, mm = 4, sg = 32;
    uint32_t rw = 1;  // rows of W per slot (batch 1): the _rw2 / _rw4 pipelines
    std::vector<uint32_t> spec() const { return {rows, pipe, mm, sg}; }
    uint32_t rows_per_group() const { return rows * rw; }
    // The pipeline of `base` ("gemm.gemv", "gemm.gemv_conv", "gemm.gemv_norm_tail") for rw.
    std::string pipeline(const std::string& base) const {
      return rw > 1 ? base + "_rw" + std::to_string(rw) : base;
    }
  };
  // gemm.small_m_vec reads W and x in 16-byte pieces: rows must start 16-byte aligned (the
  // descriptor start is then 16-byte aligned too: it is the offset rounded down to a multiple
  // of the power-of-two binding alignment) and K must be whole pieces.
  static bool small_m_vec_ok(const Tensor& x, const Tensor& w, const GemmParams& p) {
    const uint32_t per = w.dtype == DType::F32 ? 4 : 8;  // weights per 16 bytes
    return x.offset % 16 == 0 && p.x_stride % 4 == 0 && w.offset % 16 == 0 && p.K % per == 0 &&
           p.w_stride % per == 0;
  }
  static bool gemm_vec_ok(const Tensor& x, const Tensor& w, const Tensor& y,
                          const GemmParams& p);  // vulkan_gemm.cpp
  void gemm_coopmat(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
                    const GemmParams& p, const BufferUse& ux, const BufferUse& uw,
                    const BufferUse& ub, const BufferUse& uy);
  // The tensor-core GEMM's pipeline (an index of vulkan_gemm.cpp's kCoopmat) and K splits.
  struct CoopmatPlan {
    uint32_t variant = 0, splits = 1;
  };
  CoopmatPlan coopmat_plan(const GemmParams& p) const;
  // The SIMT prefill GEMM with 16-byte loads (gemm_vec.comp), its K splits, and the split-K
  // GEMMs' sum (vulkan_gemm.cpp).
  void gemm_vec(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
                const GemmParams& p, const BufferUse& ux, const BufferUse& uw, const BufferUse& ub,
                const BufferUse& uy);
  uint32_t simt_splits(const GemmParams& p) const;
  void splitk_sum(const GemmParams& p, uint32_t S, uint32_t ps, const BufferUse& upart,
                  const Tensor* bias, const BufferUse& ub, const Tensor& y, const BufferUse& uy);
  // The push block of gemm_coopmat.comp and gemm_vec.comp (which ignores flags).
  struct GemmSplitPush {
    GemmParams g;
    uint32_t off[4];  // element offsets of x, w, bias, y
    uint32_t flags;
    uint32_t k_split;
  };
  void gemm_split_dispatch(Pipeline& pipe, GemmSplitPush cp, uint32_t step, uint32_t splits,
                           uint32_t gx, uint32_t gy, const GemmParams& p,
                           const std::array<BufferUse, 4>& uses, const Tensor* bias,
                           const Tensor& y);
  static uint32_t small_m_vec_rows(const GemmParams& p);
  bool shuffles_ok() const;
  static bool old_decode_kernels();
  GemvConfig gemv_config(const GemmParams& p) const;
  static constexpr uint32_t kGemvRw2MinRows = 2048;  // gemv_config's default RW 2 from here

  // Prompt scans (vulkan_scan.cpp). The look-back scan's shape: CW channels × S segments of TOK
  // tokens per work group (lb_config); at most kLbMaxGroups channel groups (the sync buffer's
  // done counts, lb_sync_words). The warp scan's shape: CB channels (subgroups) per work group,
  // R tokens per slice (warp_config).
  struct LbConfig {
    bool ok = false;
    uint32_t cw = 32, s = 8, tok = 8;
  };
  static constexpr uint64_t kLbMaxGroups = 8192;
  struct WarpConfig {
    bool ok = false;
    bool vec = false;  // rows of 4 floats: the vec4 variant (the _scalar one otherwise)
    uint32_t cb = 8, r = 8;
    // The prep's token map (spec constant 4 of shaders/selective_scan_warp2.comp, PREP2): 1, the
    // default, conflict-free tokens l + SG·i; DM_VULKAN_SCAN_WARP=CB,R,0 the former l·Q + i
    // (kept for A/B timing: 0.5-1% slower on the H100, session 6).
    uint32_t prep2 = 1;
    // The scan's OPT bits (spec constant 5): 1 = ZD (the slice scan without predication), 2 =
    // YSM (y summed over the group lanes through shared memory); 3, the default, measured
    // 1.4-2.7% faster than 0 (the scan before session 12) at d_inner 1536, 2048 and 3072, L 4K /
    // 16K (H100, three calls: bench/results/h100_session12_vkscan_2026-11-28.md). The 4th field
    // of DM_VULKAN_SCAN_WARP=CB,R,PREP2,OPT picks them (for A/B timing).
    uint32_t opt = 3;
  };
  // The segment scan's shape (shaders/selective_scan_seg.comp, seg_config): CB channels per work
  // group, S time segments of R tokens per chunk (4·CB·S invocations).
  struct SegConfig {
    bool ok = false;
    bool vec = false;  // rows of 4 floats: the vec4 variant (the _scalar one otherwise)
    uint32_t cb = 12, s = 4, r = 8;
  };
  void scan_in_pieces(int64_t m, const Tensor& u, const Tensor& delta, const Tensor& A_log,
                      const Tensor& B, const Tensor& C, const Tensor& D, const Tensor* z,
                      const Tensor& dt_bias, const Tensor& ssm_state, const Tensor& y);
  BufferUse scratch(VulkanBuffer& b, uint64_t bytes) const;
  void ensure_scratch(std::unique_ptr<VulkanBuffer>& b, uint64_t bytes);
  static std::string scan_mode();
  uint64_t lb_sync_words() const;
  static uint64_t lb_shared_bytes(uint32_t cw, uint32_t s, uint32_t tok);
  LbConfig lb_config(uint32_t d_state) const;
  void ensure_sync();
  static uint64_t warp_shared_bytes(uint64_t sg, uint64_t cb, uint64_t r);
  WarpConfig warp_config(const SelectiveScanParams& p, const std::string& mode,
                         std::initializer_list<uint32_t> offs) const;
  static uint64_t seg_shared_bytes(uint64_t cb, uint64_t s, uint64_t r);
  SegConfig seg_config(const SelectiveScanParams& p, const std::string& mode,
                       std::initializer_list<uint32_t> offs) const;
  bool scan_subgroup_ok(uint32_t d_state) const;
  // Whether the warp scan (warp2) is the default (no DM_VULKAN_SCAN): on NVIDIA at the widths
  // where it measured faster than the chunked scan; its shape there (vulkan_scan.cpp).
  static constexpr uint32_t kVendorNvidia = 0x10de;
  bool warp_default(const SelectiveScanParams& p) const;
  static std::pair<uint32_t, uint32_t> warp_shape_nvidia(uint32_t channels);

  // Decode fusions (vulkan_decode.cpp).
  // The fused decode shaders (gemm.gemv_conv: the in_proj GEMV with the conv step in its
  // epilogue; selective_scan_step.dt_proj(_sg): dt_proj inside the scan step):
  // DM_VULKAN_FUSED_STEP=1 on, =0 off, unset: on for layers of at most kFusedStepMaxChannels
  // channels (fused_step_on).
  static constexpr uint32_t kFusedStepMaxChannels = 1536;
  // rms_norm_gemm_conv_step's fusion: on at every width unless DM_VULKAN_FUSED_STEP says
  // otherwise, its conv inputs loaded after the weight loop above kFusedStepMaxChannels
  // (vulkan_decode.cpp says why).
  static bool conv_fusion_on(uint32_t channels);
  // dt_proj_scan_step's fusion: on at every width where its subgroup form runs (sg) unless
  // DM_VULKAN_FUSED_STEP says otherwise (vulkan_decode.cpp says why).
  static bool scan_fusion_on(uint32_t channels, bool sg);
  static bool conv_loads_late(uint32_t channels);
  static bool fused_step_on(uint32_t channels);
  // in_proj + conv step as one dispatch (gemm.gemv_conv / gemm.small_m_vec_conv) on a normed row
  // (vulkan_decode.cpp): whether it takes these shapes, and the dispatch.
  bool gemv_conv_fits(const RmsNormGemmParams& p, const Tensor& normed, const Tensor& w,
                      const Tensor& y) const;
  void gemv_conv(const RmsNormGemmParams& p, const Tensor& normed, const Tensor& w,
                 const Tensor* bias, const Tensor& y, const Tensor& conv_weight,
                 const Tensor* conv_bias, const Tensor& conv_state, const Tensor& conv_y);
  // out_proj with the next layer's norm in its last work group (gemm.gemv_norm_tail).
  bool norm_tail_fits(const MambaBlockStepArgs& a, const GemmParams& out) const;
  void gemv_norm_tail(const MambaBlockStepArgs& a, const MambaBlockStepParams& p);
  // Backend's four calls of a decode layer with this backend's fusions, the norm moved across
  // the layer boundary where the arguments say so (normed_ready, next_norm).
  void block_step_composed(const MambaBlockStepArgs& a, const MambaBlockStepParams& p);
  // mamba_block_step's form (vulkan_block_step.cpp, block_step_mode): Backend's composition,
  // three dispatches (x_proj's slices written by the in_proj work groups, summed by the scan's)
  // or four (x_proj a GEMV of its own).
  enum class BlockStepMode { kOff, kThree, kFour };
  static constexpr BlockStepMode kBlockStepDefault = BlockStepMode::kThree;
  static BlockStepMode block_step_mode(uint32_t channels);

  std::unique_ptr<Context> ctx_;
  PipelineCache pipelines_;
  std::unique_ptr<Recorder> rec_;
  VkDeviceSize align_ = 4;
  // Declared after the recorder: freed first, through its deferred free.
  std::unique_ptr<VulkanBuffer> dummy_, scan_h_, scan_d_, scan_sync_;
  std::unique_ptr<VulkanBuffer> gemm_part_;  // the split-K GEMM's partial products
  std::unique_ptr<VulkanBuffer> block_part_;  // mamba_block_step's partial x_dbl vectors
  std::unique_ptr<VulkanBuffer> tail_counter_;  // gemm.gemv_norm_tail's done count (zero between)
  uint32_t lb_tickets_ = 0;  // look-back tickets handed out so far (the device counter's value)
  uint32_t lb_epoch_ = 1;    // the next look-back dispatch's flag tag
  std::string profile_path_;  // DM_VULKAN_PROFILE: where the destructor appends the profile
  bool async_download_ = true;  // DM_VULKAN_ASYNC_DOWNLOAD (constructor)
};

}  // namespace dm::vk
