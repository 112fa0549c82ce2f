// The CPU reference backend: every kernel as plain loops over host memory, multithreaded with
// parallel_for. It is the oracle the GPU backends are tested against and the no-GPU fallback.
// Work runs when enqueued, so synchronize() has nothing to wait for.
#pragma once

#include <memory>
#include <string>

#include "backend/backend.h"
#include "backend/cpu/cpu_isa.h"

namespace dm {

class CpuBackend : public Backend {
 public:
  // isa: the GEMM's instruction set (tests pin generic to check the portable path too).
  explicit CpuBackend(CpuIsa isa = best_cpu_isa());

  std::string name() const override { return "cpu"; }
  std::string device_name() const override;
  bool supports_weight_dtype(DType t) const override { return t != DType::I32; }
  CpuIsa isa() const { return isa_; }

  std::unique_ptr<Buffer> alloc(size_t bytes) override;
  std::unique_ptr<Buffer> upload_constant(const void* host, size_t bytes) override;
  void upload(Buffer& dst, size_t offset, const void* src, size_t bytes) override;
  void download(const Buffer& src, size_t offset, void* dst, size_t bytes) override;
  void synchronize() override {}

  void gemm(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) override;
  void rms_norm(const Tensor& x, const Tensor* residual, const Tensor& weight, const Tensor& y,
                float eps) override;
  void causal_conv1d(const Tensor& x, const Tensor& weight, const Tensor* bias,
                     const Tensor& conv_state, const Tensor& y) override;
  void selective_scan(const Tensor& u, const Tensor& delta, const Tensor& A_log, const Tensor& B,
                      const Tensor& C, const Tensor& D, const Tensor* z, const Tensor& dt_bias,
                      const Tensor& ssm_state, const Tensor& y) override;
  void dt_importance(const Tensor& delta, const Tensor& dt_bias, const Tensor& scores) override;
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

 private:
  CpuIsa isa_;
};

// For the registry: "CPU (N threads, isa)", and the backend (device must be 0).
std::string cpu_device_name();
std::unique_ptr<Backend> create_cpu_backend(int device);

}  // namespace dm
