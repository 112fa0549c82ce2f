// The backend interface: one method per kernel, no op graph. Methods enqueue work; results are
// visible after synchronize() or download(). Every tensor argument is a view into a Buffer this
// backend allocated. Activations are fp32; weights are used in the dtype they were stored in.
// Shapes are checked by the make_*_params() of params.h, which every backend calls.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/params.h"
#include "core/error.h"
#include "core/tensor.h"

namespace dm {

// Work recorded by Backend::record() for replay by the same backend (a CUDA graph, a Vulkan
// command buffer). It addresses the buffers it saw while recording.
class Recording {
 public:
  virtual ~Recording() = default;
  // False once a buffer the recorded work uses has been freed: record again.
  virtual bool valid() const = 0;
};

// What Backend::mamba_block_step takes: one layer's weights, its recurrent state and the step's
// activations, rows = 1 (batch 1). D = d_model, E = d_inner, R = dt_rank, N = d_state.
struct MambaBlockStepArgs {
  const Tensor* x = nullptr;  // (1, D) the previous block's output, added into residual; null at layer 0
  Tensor residual;            // (1, D) read; residual += x when x is set
  Tensor norm_weight;         // (1, D)
  float eps = 1e-5f;
  Tensor normed;              // (1, D) out: residual / rms(residual) · norm_weight
  Tensor in_proj;             // (2E, D)
  const Tensor* in_proj_bias = nullptr;  // (1, 2E)
  Tensor xz;                  // (1, 2E) out: x | z
  Tensor conv_weight;         // (E, d_conv)
  const Tensor* conv_bias = nullptr;  // (1, E)
  Tensor conv_state;          // (E, d_conv) read, then advanced by one token
  Tensor xc;                  // (1, E) out: SiLU(conv step of x), the scan input u
  Tensor x_proj;              // (R + 2N, E)
  Tensor x_dbl;               // (1, R + 2N) out: dt_low | B | C
  Tensor dt_proj;             // (E, R)
  Tensor dt;                  // (1, E) out: dt_low · dt_projᵀ (before bias and softplus)
  Tensor A_log;               // (E, N)
  Tensor D;                   // (1, E)
  Tensor dt_bias;             // (1, E)
  Tensor ssm_state;           // (E, N) read, then advanced by one token
  Tensor y;                   // (1, E) out: gated scan output
  Tensor out_proj;            // (D, E)
  const Tensor* out_proj_bias = nullptr;  // (1, D)
  Tensor hidden;              // (1, D) out: the block's output (may share x's buffer)
  // The norm moved across the layer boundary (Backend::decode_norm_tail says when a backend
  // wants it). normed_ready: residual already holds the previous blocks' sum and normed its norm
  // with norm_weight (the previous block's next_norm wrote them): the front skips the residual
  // add and the norm; x must be null. next_norm (1, D): after out_proj, residual += hidden and
  // normed = residual / rms(residual) · next_norm (the next block's norm weight, or the final
  // norm_f): rms_norm's outputs, so the next call can take normed_ready.
  bool normed_ready = false;
  const Tensor* next_norm = nullptr;
};

// The params of mamba_block_step's four calls, each made and checked by its own make_*_params
// (front: rms_norm_gemm_conv_step; x_proj: gemm; scan: dt_proj_scan_step; out: gemm), after
// checking the links between them (xz is 2E wide, x_dbl R + 2N). Defined in backend.cpp.
struct MambaBlockStepParams {
  RmsNormGemmParams front;
  GemmParams x_proj;
  DtProjScanStepParams scan;
  GemmParams out;
  RmsNormParams next_norm;  // with a.next_norm (has_next_norm): residual += hidden, normed
  uint32_t has_next_norm = 0;
};
MambaBlockStepParams make_mamba_block_step_params(const MambaBlockStepArgs& a);
// What mamba_block_step's scan step reads of the block's intermediates: z = xz's last E columns,
// x_dbl's dt_low | B | C. Checks the two links first (xz 2E wide, x_dbl R + 2N). backend.cpp.
struct BlockStepViews {
  Tensor z, dt_low, B, C;
};
BlockStepViews block_step_views(const MambaBlockStepArgs& a);

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string name() const = 0;         // "cpu", "vulkan", "cuda"
  virtual std::string device_name() const = 0;  // e.g. "NVIDIA H100 80GB HBM3", "CPU (16 threads)"

  // A backend that cannot run weights of this dtype says so; the caller reports the reason.
  virtual bool supports_weight_dtype(DType) const { return true; }

  virtual std::unique_ptr<Buffer> alloc(size_t bytes) = 0;
  // A read-only device copy of host data that outlives the returned buffer (weights in the
  // memory-mapped file). A backend whose memory is host memory keeps a view instead of a copy.
  // No kernel writes it, so a backend may keep data derived from its contents (the CUDA
  // backend's K-concatenated GEMM weights). upload() into it: refused by the CPU backend (the
  // view is the caller's memory); the CUDA backend accepts it and drops the derived data.
  virtual std::unique_ptr<Buffer> upload_constant(const void* host, size_t bytes);
  virtual void upload(Buffer& dst, size_t offset, const void* src, size_t bytes) = 0;
  // Waits for the work already enqueued, then copies.
  virtual void download(const Buffer& src, size_t offset, void* dst, size_t bytes) = 0;
  // A download that does not wait: download_start enqueues the copy of `bytes` (at most
  // kAsyncDownloadMax) after the work already enqueued and returns a ticket; download_wait
  // waits for that copy only and writes it to dst. Tickets are waited for in the order they
  // were started, each once. For a small result the host wants while later work runs (greedy
  // decoding's pick while the next step already runs). This default downloads at once and keeps
  // the bytes until waited for; a backend with a queue overrides both. Every backend takes at
  // least kAsyncDownloadsOutstanding downloads started and not yet waited for.
  static constexpr size_t kAsyncDownloadMax = 256;
  static constexpr int kAsyncDownloadsOutstanding = 32;
  virtual uint64_t download_start(const Buffer& src, size_t offset, size_t bytes);
  virtual void download_wait(uint64_t ticket, void* dst);
  virtual void synchronize() = 0;

  // y (M×N) = x (M×K) · w (N×K)ᵀ (+ bias, 1×N)
  virtual void gemm(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) = 0;
  // With residual: residual += x, then y = residual / rms(residual) · weight.
  // Without: y = x / rms(x) · weight. x, residual, y: L×D fp32; weight: 1×D.
  virtual void rms_norm(const Tensor& x, const Tensor* residual, const Tensor& weight,
                        const Tensor& y, float eps) = 0;
  // x, y: L×C; weight: C×d_conv; bias: 1×C; conv_state: C×d_conv fp32, read then overwritten.
  virtual void causal_conv1d(const Tensor& x, const Tensor& weight, const Tensor* bias,
                             const Tensor& conv_state, const Tensor& y) = 0;
  // u, delta, z, y: L×C; A_log: C×N; B, C: L×N; D, dt_bias: 1×C; ssm_state: C×N fp32, read then
  // overwritten with the state after the last token. delta is before bias and softplus.
  virtual void selective_scan(const Tensor& u, const Tensor& delta, const Tensor& A_log,
                              const Tensor& B, const Tensor& C, const Tensor& D, const Tensor* z,
                              const Tensor& dt_bias, const Tensor& ssm_state, const Tensor& y) = 0;
  // delta: L×C; dt_bias: 1×C; scores: L×1 fp32.
  virtual void dt_importance(const Tensor& delta, const Tensor& dt_bias, const Tensor& scores) = 0;
  // scores: L×1 fp32; idx: (k + L − n_candidates)×1 I32, ascending.
  virtual void topk_indices(const Tensor& scores, int64_t n_candidates, int64_t k,
                            const Tensor& idx) = 0;
  // src: R×C any float dtype; idx: n×1 I32 (each < R); dst: n×C fp32.
  virtual void gather_rows(const Tensor& src, const Tensor& idx, const Tensor& dst) = 0;
  // x: a vector of ≥ n fp32; idx: 1×1 I32 ← the position of the largest of x[0 .. n) (ties: the
  // lower index; NaN below every number; params.h ArgmaxParams): greedy decoding on the device.
  virtual void argmax(const Tensor& x, int64_t n, const Tensor& idx) = 0;

  // Decode: one token for each of `batch` sequences (rows of x / u).
  // conv_state: (batch·C)×d_conv; ssm_state: (batch·C)×N.
  virtual void causal_conv1d_step(const Tensor& x, const Tensor& weight, const Tensor* bias,
                                  const Tensor& conv_state, const Tensor& y) = 0;
  virtual void selective_scan_step(const Tensor& u, const Tensor& delta, const Tensor& A_log,
                                   const Tensor& B, const Tensor& C, const Tensor& D,
                                   const Tensor* z, const Tensor& dt_bias,
                                   const Tensor& ssm_state, const Tensor& y) = 0;

  // Fusions: fewer, larger kernels per layer for a backend that has them. The defaults
  // (backend.cpp) call the methods above in order, so every backend runs them and the CPU stays
  // the oracle; a backend that overrides one must produce the same outputs, including the
  // intermediates named here (normed, delta), which the caller may read afterwards.
  // Shapes are those of the composed methods, rows = batch (1 for decode).
  //
  // With x: residual += x, then normed = residual / rms(residual) · norm_weight; without x:
  // normed = residual / rms(residual) · norm_weight (residual unchanged). Then
  // y = normed · wᵀ (+ bias): rms_norm then gemm. The LM head of a decode step, and a prompt's
  // norm feeding in_proj (rows = L).
  // x, residual, normed: rows×D fp32; norm_weight: 1×D; w: N×D; bias: 1×N; y: rows×N fp32.
  // normed is scratch (as y in selective_scan_gemm): the composition writes the norm's output
  // there; a backend that feeds the GEMM from the norm directly may leave it unspecified.
  virtual void rms_norm_gemm(const Tensor* x, const Tensor& residual, const Tensor& norm_weight,
                             float eps, const Tensor& normed, const Tensor& w,
                             const Tensor* bias, const Tensor& y);
  // rms_norm_gemm, then causal_conv1d_step(y.col_slice(0, C), conv_weight, conv_bias,
  // conv_state, conv_y): the front of a Mamba block (residual add, norm, in_proj, conv step).
  // y: rows×N with N ≥ C; conv_weight: C×d_conv; conv_bias: 1×C; conv_state: (rows·C)×d_conv,
  // read then overwritten; conv_y: rows×C fp32 (after SiLU).
  virtual void rms_norm_gemm_conv_step(const Tensor* x, const Tensor& residual,
                                       const Tensor& norm_weight, float eps, const Tensor& normed,
                                       const Tensor& w, const Tensor* bias, const Tensor& y,
                                       const Tensor& conv_weight, const Tensor* conv_bias,
                                       const Tensor& conv_state, const Tensor& conv_y);
  // causal_conv1d(x, conv_weight, conv_bias, conv_state, xc), then y = xc · wᵀ (gemm, no
  // bias): a prompt's conv feeding x_proj. Shapes as those two methods; xc (the scan's input)
  // is written too.
  virtual void causal_conv1d_gemm(const Tensor& x, const Tensor& conv_weight,
                                  const Tensor* conv_bias, const Tensor& conv_state,
                                  const Tensor& xc, const Tensor& w, const Tensor& y);
  // selective_scan(u, delta, A_log, B, C, D, z, dt_bias, ssm_state, y), then out = y · wᵀ
  // (+ bias): a prompt's scan feeding out_proj. Shapes as those two methods. y is scratch here:
  // the composition writes the scan's output there, a backend may leave y's contents
  // unspecified and use its memory for the GEMM's operand instead.
  virtual void selective_scan_gemm(const Tensor& u, const Tensor& delta, const Tensor& A_log,
                                   const Tensor& B, const Tensor& C, const Tensor& D,
                                   const Tensor* z, const Tensor& dt_bias,
                                   const Tensor& ssm_state, const Tensor& y, const Tensor& w,
                                   const Tensor* bias, const Tensor& out);
  // delta = dt_low · dt_projᵀ (gemm, no bias), then selective_scan_step(u, delta, A_log, B, C,
  // D, z, dt_bias, ssm_state, y). dt_low: rows×R; dt_proj: C×R; delta: rows×C fp32 (before bias
  // and softplus); the rest as selective_scan_step.
  virtual void dt_proj_scan_step(const Tensor& dt_low, const Tensor& dt_proj,
                                 const Tensor& delta, const Tensor& u, const Tensor& A_log,
                                 const Tensor& B, const Tensor& C, const Tensor& D,
                                 const Tensor* z, const Tensor& dt_bias, const Tensor& ssm_state,
                                 const Tensor& y);
  // delta = dt_low · dt_projᵀ (gemm, no bias), then dt_importance(delta, dt_bias, scores): the
  // token scores of a decimating layer, which keeps only the top-scored tokens, so only their
  // delta is needed afterwards (the caller projects the kept rows' dt_low again). dt_low: L×R;
  // dt_proj: C×R; delta: L×C fp32, scratch (as y in selective_scan_gemm): the composition writes
  // it, a backend that scores straight from the projection may leave it unspecified; dt_bias:
  // 1×C; scores: L×1 fp32.
  virtual void dt_proj_importance(const Tensor& dt_low, const Tensor& dt_proj,
                                  const Tensor& delta, const Tensor& dt_bias,
                                  const Tensor& scores);
  // One Mamba block of a decode step: rms_norm_gemm_conv_step (a.x, residual, norm, in_proj →
  // xz, conv step → xc), gemm x_proj (xc → x_dbl), dt_proj_scan_step (x_dbl's dt_low | B | C,
  // u = xc, z = xz's last E columns → dt, y, ssm_state), gemm out_proj (y → hidden), in that
  // order: the four calls Executor::enqueue_step made per layer. Every output and intermediate
  // of MambaBlockStepArgs is written as those calls write it (a backend may run it as one
  // kernel). hidden may be x's own buffer (the executor's case): x is consumed first.
  virtual void mamba_block_step(const MambaBlockStepArgs& a);
  // Whether this backend's mamba_block_step runs a.next_norm inside the block's last kernel for
  // these arguments (without next_norm, normed_ready as the executor would set them), so the
  // executor should move each layer's norm to the end of the layer before it. False where the
  // next block's front folds the norm in as cheaply (every backend but Vulkan's wide layers).
  virtual bool decode_norm_tail(const MambaBlockStepArgs& a) { return false; }

  // Capture and replay (decode as one unit). record() calls `enqueue` (once; Vulkan once per
  // copy with DM_VULKAN_REPLAY_COPIES) and records the work it enqueues without running it;
  // replay() enqueues that work again, in order with everything else on this backend, as often
  // as wanted. While recording, upload / download / synchronize
  // throw (alloc may), and kernels must not need buffers they have not already got (run the same work
  // eagerly once, or size everything first). The recording reads and writes the same buffers and
  // offsets every time: write its inputs before replay(), read its outputs after. A backend that
  // cannot record returns nullptr (the CPU backend: nothing to save there); then run eagerly.
  virtual std::unique_ptr<Recording> record(const std::function<void()>& enqueue) {
    return nullptr;
  }
  // Throws dm::Error for a recording of another backend or one that is no longer valid().
  virtual void replay(Recording& recording) {
    throw Error("[" + name() + "] replay: this backend does not record");
  }

 private:
  // download_start's default: the bytes of each ticket not yet waited for, oldest first.
  struct HeldDownload {
    uint64_t ticket;
    std::vector<uint8_t> bytes;
  };
  std::vector<HeldDownload> held_downloads_;
  uint64_t next_ticket_ = 1;
};

struct BackendInfo {
  std::string name;       // "cpu" | "vulkan" | "cuda"
  bool available = false;
  std::string detail;     // device name when available, the reason when not
  bool software = false;  // a CPU implementation of a GPU API (lavapipe): `auto` skips it
};

// Every backend this binary knows of, in order of preference for `auto` (fastest first).
std::vector<BackendInfo> list_backends();
// name: "cpu" | "vulkan" | "cuda" | "auto". Throws dm::Error naming why a backend is unavailable.
std::unique_ptr<Backend> create_backend(const std::string& name, int device = 0);

}  // namespace dm
