// The CUDA backend: one device, one non-blocking stream that every method enqueues on, a cuBLAS
// handle bound to it with a fixed workspace (so GEMMs can be recorded into graphs), and the
// kernels of cuda/*.cu. Nothing synchronises except download() and synchronize().
#pragma once

#include <array>
#include <map>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_call_timer.h"
#include "backend/cuda/kernels.h"
#include "backend/profile_table.h"

namespace dm::cuda_util {
class GemmAlgoTable;
class PinnedStaging;
class PinnedAsyncDownloads;
}

namespace dm {

class CudaBuffer : public Buffer {
 public:
  CudaBuffer(size_t bytes, int device);
  ~CudaBuffer() override;
  void* ptr() const { return ptr_; }

  // Made by upload_constant (the model's weights): kernels never write it, so copies derived
  // from its contents stay valid until the next upload into it.
  bool constant = false;
  // K-concatenated copies (W | W rows) of GEMM weights in this buffer (CudaBackend::gemm_weight),
  // by the weight's offset, N, K and row stride; freed with the buffer or by an upload into it.
  std::map<std::array<uint64_t, 4>, void*> kcat;

 private:
  void* ptr_ = nullptr;
};

class CudaBackend : public Backend {
 public:
  explicit CudaBackend(int device);
  ~CudaBackend() override;

  std::string name() const override { return "cuda"; }
  std::string device_name() const override { return device_name_; }

  std::unique_ptr<Buffer> alloc(size_t bytes) override;
  std::unique_ptr<Buffer> upload_constant(const void* host, size_t bytes) override;
  void upload(Buffer& dst, size_t offset, const void* src, size_t bytes) override;
  void download(const Buffer& src, size_t offset, void* dst, size_t bytes) override;
  uint64_t download_start(const Buffer& src, size_t offset, size_t bytes) override;
  void download_wait(uint64_t ticket, void* dst) override;
  void synchronize() override;

  void gemm(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) override;
  void rms_norm(const Tensor& x, const Tensor* residual, const Tensor& weight, const Tensor& y,
                float eps) override;
  void causal_conv1d(const Tensor& x, const Tensor& weight, const Tensor* bias,
                     const Tensor& conv_state, const Tensor& y) override;
  void selective_scan(const Tensor& u, const Tensor& delta, const Tensor& A_log, const Tensor& B,
                      const Tensor& C, const Tensor& D, const Tensor* z, const Tensor& dt_bias,
                      const Tensor& ssm_state, const Tensor& y) override;
  void dt_importance(const Tensor& delta, const Tensor& dt_bias, const Tensor& scores) override;
  void dt_proj_importance(const Tensor& dt_low, const Tensor& dt_proj, const Tensor& delta,
                          const Tensor& dt_bias, const Tensor& scores) override;
  void topk_indices(const Tensor& scores, int64_t n_candidates, int64_t k,
                    const Tensor& idx) override;
  void gather_rows(const Tensor& src, const Tensor& idx, const Tensor& dst) override;
  void argmax(const Tensor& x, int64_t n, const Tensor& idx) override;
  void causal_conv1d_step(const Tensor& x, const Tensor& weight, const Tensor* bias,
                          const Tensor& conv_state, const Tensor& y) override;
  void selective_scan_step(const Tensor& u, const Tensor& delta, const Tensor& A_log,
                           const Tensor& B, const Tensor& C, const Tensor& D, const Tensor* z,
                           const Tensor& dt_bias, const Tensor& ssm_state,
                           const Tensor& y) override;

  // Decode fusions (cuda/fused_step.cu) for one row; a prompt's rms_norm_gemm (many rows, F16 /
  // BF16 weights): the norm kernel writes the GEMM's operand as well (gemm_tensor_cores); other
  // shapes, or DM_FUSED_STEP=0 (read at each call; prompt fusions included), run Backend's
  // composition.
  void rms_norm_gemm(const Tensor* x, const Tensor& residual, const Tensor& norm_weight, float eps,
                     const Tensor& normed, const Tensor& w, const Tensor* bias,
                     const Tensor& y) override;
  void rms_norm_gemm_conv_step(const Tensor* x, const Tensor& residual, const Tensor& norm_weight,
                               float eps, const Tensor& normed, const Tensor& w,
                               const Tensor* bias, const Tensor& y, const Tensor& conv_weight,
                               const Tensor* conv_bias, const Tensor& conv_state,
                               const Tensor& conv_y) override;
  // A prompt's conv feeding x_proj: the conv kernel writes the GEMM's operand as well (see
  // gemm_tensor_cores); other shapes run Backend's composition.
  void causal_conv1d_gemm(const Tensor& x, const Tensor& conv_weight, const Tensor* conv_bias,
                          const Tensor& conv_state, const Tensor& xc, const Tensor& w,
                          const Tensor& y) override;
  // A prompt's scan feeding out_proj: where the scan can (kernels.h
  // launch_selective_scan_split), it writes the GEMM's operand into y's memory instead of y.
  void selective_scan_gemm(const Tensor& u, const Tensor& delta, const Tensor& A_log,
                           const Tensor& B, const Tensor& C, const Tensor& D, const Tensor* z,
                           const Tensor& dt_bias, const Tensor& ssm_state, const Tensor& y,
                           const Tensor& w, const Tensor* bias, const Tensor& out) override;
  void dt_proj_scan_step(const Tensor& dt_low, const Tensor& dt_proj, const Tensor& delta,
                         const Tensor& u, const Tensor& A_log, const Tensor& B, const Tensor& C,
                         const Tensor& D, const Tensor* z, const Tensor& dt_bias,
                         const Tensor& ssm_state, const Tensor& y) override;
  // One Mamba block of a decode step in the form block_step_form picks.
  void mamba_block_step(const MambaBlockStepArgs& a) override;
  // Which form mamba_block_step runs for these args (the environment is read at each call;
  // cuda_fusions.cpp, DM_CUDA_DECODE_FORM): 1 one kernel (cuda/mamba_block_step.cu); 3 x_proj
  // folded into the norm + in_proj + conv kernel and the dt_proj + scan kernel, then out_proj;
  // 4 Backend's composition of the fused methods above and gemm (x_proj a GEMV of its own);
  // 5 (the default) form 4 with the norm folded into in_proj (cuda/gemv_rows.cu); 0 the
  // composition of single kernels (DM_FUSED_STEP=0).
  int block_step_form(const MambaBlockStepArgs& a);
  // The trace records of that kernel (DM_CUDA_DECODE_BLOCK_TRACE=1; cuda_timing.h), synchronizing.
  std::vector<unsigned long long> decode_block_trace();

  // Decode as a CUDA graph: stream capture of `enqueue`, instantiated once, launched by replay().
  std::unique_ptr<Recording> record(const std::function<void()>& enqueue) override;
  void replay(Recording& recording) override;

  cudaStream_t stream() const { return stream_; }
  bool capturing() const { return capturing_; }
  // --profile (cuda_profile.h): on → a fresh table; off → none.
  void set_profiling(bool on);
  std::vector<ProfileRow> profile();  // synchronizes first; empty when off
  void begin_capture();
  cudaGraph_t end_capture();

 private:
  void not_capturing(const char* op) const;
  // The timer of the calls being made now: null when profiling is off or a graph is recording.
  cuda_util::CallTimer* call_timer() const { return capturing_ ? nullptr : timer_.get(); }
  friend class TimedCall;
  void norm_gemm(const Tensor* x, const Tensor& residual, const Tensor& norm_weight, float eps,
                 const Tensor& normed, const Tensor& w, const Tensor* bias, const Tensor& y,
                 const Tensor* conv_weight, const Tensor* conv_bias, const Tensor* conv_state,
                 const Tensor* conv_y, const cuda::XProjPartials& xp = {});
  int block_step_form(const MambaBlockStepArgs& a, const MambaBlockStepParams& p);
  // The tensor-core GEMM of fp32 activations (gemm's F16 / BF16 path; cuda_gemm.cpp says how).
  // The weight operand: W itself, or its K-concatenated copy (rows W | W, ld 2K) where one is
  // kept (gemm_weight); then the activation operand's rows are hi | lo and one GEMM sums both.
  struct GemmWeight {
    const void* ptr;
    uint32_t ld;  // elements between rows
    bool kcat;
  };
  GemmWeight gemm_weight(const Tensor& w, const GemmParams& p);
  // Where `rows` operand rows go in `base` (2 · rows · K halves) for this weight: hi | lo rows
  // (K-concatenated) or an M×K hi plane followed by the lo plane.
  cuda::GemmSplitOut operand_layout(const GemmParams& p, const GemmWeight& w, void* base,
                                    uint32_t rows) const;
  // In slices of at most DM_CUDA_GEMM_SLICE rows (default 32768; read per call),
  // `write_operand(m0, rows, out)` enqueues what writes activation rows m0 .. m0 + rows into out
  // (cuda::GemmSplitOut), then gemm_operand. No bias.
  using OperandWriter = std::function<void(uint32_t m0, uint32_t rows, const cuda::GemmSplitOut&)>;
  static bool tensor_core_gemm(const GemmParams& p);  // whether gemm takes that path
  void gemm_tensor_cores(const GemmParams& p, const GemmWeight& w, float* y,
                         const OperandWriter& write_operand);
  // y's rows m0 .. m0 + rows = W·hi + W·lo (lo null: W·hi) for an operand already written in
  // operand_layout's layout; no bias.
  void gemm_operand(const GemmParams& p, const GemmWeight& w, const cuda::GemmSplitOut& op,
                    uint32_t m0, uint32_t rows, float* y);
  void add_bias(const GemmParams& p, float* y, const void* bias);
  void prompt_norm_gemm(const RmsNormGemmParams& p, const Tensor* x, const Tensor& residual,
                        const Tensor& norm_weight, const Tensor& normed, const Tensor& w,
                        const Tensor* bias, const Tensor& y);
  void check_device_errors();  // throws what a kernel recorded in err_
  void* scratch(size_t bytes);  // the GEMM's converted activations, stream-ordered growth

  int device_;
  std::string device_name_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  void* cublas_workspace_ = nullptr;
  // Measured tile exceptions for some GEMM shapes (cuda_gemm_algo.h), sharing the workspace.
  std::unique_ptr<cuda_util::GemmAlgoTable> algo_table_;
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
  void* scan_scratch_ = nullptr;  // selective_scan's look-back flags and chunk states
  size_t scan_scratch_bytes_ = 0;
  unsigned* step_counter_ = nullptr;  // rms_norm_gemm's last-block counter (one word, kept 0)
  void* argmax_scratch_ = nullptr;  // argmax's per-block maxima and counter (kept 0; kernels.h)
  void* block_exchange_ = nullptr;  // mamba_block_step's exchange area (kernels.h)
  float* xproj_partials_ = nullptr;  // its three-kernel form's x_proj partials (kernels.h)
  float* norm_scale_ = nullptr;  // its norm-fold form's 1 / rms, in_proj to the scan's tail
  cuda::DeviceErrorInfo* err_host_ = nullptr;  // mapped pinned memory
  std::unique_ptr<cuda_util::PinnedStaging> staging_;  // small uploads / downloads
  std::unique_ptr<cuda_util::PinnedAsyncDownloads> async_downloads_;  // download_start / wait
  cuda::DeviceErrorInfo* err_dev_ = nullptr;
  bool capturing_ = false;
  std::unique_ptr<cuda_util::CallTimer> timer_;  // --profile
  size_t kcat_budget_ = 0;  // bytes of K-concatenated weight copies made by default (1/8 of memory)
  bool split_gemm_ = true;  // F16/BF16 GEMMs as hi + lo (see gemm); DM_CUDA_FAST_GEMM=1: hi only
};

// Times the Backend call it is made in, when --profile is on (cuda_profile.h): the first line
// of every CudaBackend compute method. `name` is called only then (GEMMs name their shape).
class TimedCall {
 public:
  TimedCall(const CudaBackend& b, const char* name) : t_(b.call_timer()) {
    if (t_) t_->begin(name);
  }
  template <class Name>
  TimedCall(const CudaBackend& b, const Name& name) : t_(b.call_timer()) {
    if (t_) t_->begin(name());
  }
  ~TimedCall() {
    if (t_) t_->end();
  }
  TimedCall(const TimedCall&) = delete;
  TimedCall& operator=(const TimedCall&) = delete;

 private:
  cuda_util::CallTimer* t_;
};

}  // namespace dm
