#include "backend/cpu/cpu_backend.h"

#include <cstdlib>
#include <cstring>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/host_buffer.h"
#include "backend/params.h"
#include "core/error.h"
#include "core/thread_pool.h"

namespace dm {
namespace {

HostBuffer& host(const Buffer& b, const char* what) {
  auto* hb = dynamic_cast<const HostBuffer*>(&b);
  if (!hb) fail("[cpu] ", what, ": buffer was not allocated by the cpu backend");
  return const_cast<HostBuffer&>(*hb);
}

// Pointers to a tensor's first element. Params have already checked that the view lies inside
// its buffer; outputs must not be read-only views of caller memory.
const void* in(const Tensor& t, const char* what) { return host(*t.buf, what).data() + t.offset; }
const float* in_f32(const Tensor& t, const char* what) {
  return reinterpret_cast<const float*>(in(t, what));
}
const float* in_f32(const Tensor* t, const char* what) { return t ? in_f32(*t, what) : nullptr; }
const void* in_opt(const Tensor* t, const char* what) { return t ? in(*t, what) : nullptr; }
template <typename T = float>
T* out(const Tensor& t, const char* what) {
  HostBuffer& hb = host(*t.buf, what);
  if (hb.read_only()) fail("[cpu] ", what, " ", t.describe(), ": is a read-only constant buffer");
  return reinterpret_cast<T*>(hb.data() + t.offset);
}

void check_range(const Buffer& b, size_t offset, size_t bytes, const char* op) {
  if (offset > b.bytes() || bytes > b.bytes() - offset)
    fail("[cpu] ", op, ": range [", offset, ", ", offset + bytes, ") exceeds the ", b.bytes(),
         "-byte buffer");
}

}  // namespace

CpuBackend::CpuBackend(CpuIsa isa) : isa_(isa) {
  if (!cpu_supports(isa))
    fail("[cpu] instruction set ", cpu_isa_name(isa), " is not supported by this CPU");
}

std::string cpu_device_name() {
  return "CPU (" + std::to_string(thread_count()) + " threads, " + cpu_isa_name(best_cpu_isa()) +
         ")";
}

std::string CpuBackend::device_name() const {
  return "CPU (" + std::to_string(thread_count()) + " threads, " + cpu_isa_name(isa_) + ")";
}

// DM_CPU_ISA=generic|avx2 pins the instruction set (to cross-check the portable path).
std::unique_ptr<Backend> create_cpu_backend(int device) {
  if (device != 0) fail("[cpu] device ", device, ": the cpu backend has one device, 0");
  const char* env = std::getenv("DM_CPU_ISA");
  if (!env || !*env) return std::make_unique<CpuBackend>();
  for (CpuIsa isa : {CpuIsa::generic, CpuIsa::avx2})
    if (cpu_isa_name(isa).rfind(env, 0) == 0) return std::make_unique<CpuBackend>(isa);
  fail("[cpu] DM_CPU_ISA=", env, ": expected generic or avx2");
}

std::unique_ptr<Buffer> CpuBackend::alloc(size_t bytes) {
  return std::make_unique<HostBuffer>(bytes);
}

std::unique_ptr<Buffer> CpuBackend::upload_constant(const void* host_data, size_t bytes) {
  return std::make_unique<HostBuffer>(host_data, bytes);
}

void CpuBackend::upload(Buffer& dst, size_t offset, const void* src, size_t bytes) {
  HostBuffer& hb = host(dst, "upload");
  if (hb.read_only()) fail("[cpu] upload: destination is a read-only constant buffer");
  check_range(dst, offset, bytes, "upload");
  if (bytes) std::memcpy(hb.data() + offset, src, bytes);
}

void CpuBackend::download(const Buffer& src, size_t offset, void* dst, size_t bytes) {
  const HostBuffer& hb = host(src, "download");
  check_range(src, offset, bytes, "download");
  if (bytes) std::memcpy(dst, hb.data() + offset, bytes);
}

void CpuBackend::gemm(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) {
  const GemmParams p = make_gemm_params(x, w, bias, y);
  cpu::gemm(p, in_f32(x, "gemm x"), in(w, "gemm w"), in_opt(bias, "gemm bias"),
            out(y, "gemm y"), isa_);
}

void CpuBackend::rms_norm(const Tensor& x, const Tensor* residual, const Tensor& weight,
                          const Tensor& y, float eps) {
  const RmsNormParams p = make_rms_norm_params(x, residual, weight, y, eps);
  cpu::rms_norm(p, in_f32(x, "rms_norm x"), residual ? out(*residual, "rms_norm residual") : nullptr,
                in(weight, "rms_norm weight"), out(y, "rms_norm y"));
}

void CpuBackend::causal_conv1d(const Tensor& x, const Tensor& weight, const Tensor* bias,
                               const Tensor& conv_state, const Tensor& y) {
  const CausalConv1dParams p = make_causal_conv1d_params(x, weight, bias, conv_state, y);
  cpu::causal_conv1d(p, in_f32(x, "causal_conv1d x"), in(weight, "causal_conv1d weight"),
                     in_opt(bias, "causal_conv1d bias"), out(conv_state, "causal_conv1d conv_state"),
                     out(y, "causal_conv1d y"), isa_);
}

void CpuBackend::selective_scan(const Tensor& u, const Tensor& delta, const Tensor& A_log,
                                const Tensor& B, const Tensor& C, const Tensor& D,
                                const Tensor* z, const Tensor& dt_bias, const Tensor& ssm_state,
                                const Tensor& y) {
  const SelectiveScanParams p =
      make_selective_scan_params(u, delta, A_log, B, C, D, z, dt_bias, ssm_state, y);
  cpu::selective_scan(p, in_f32(u, "selective_scan u"), in_f32(delta, "selective_scan delta"),
                      in(A_log, "selective_scan A_log"), in_f32(B, "selective_scan B"),
                      in_f32(C, "selective_scan C"), in(D, "selective_scan D"),
                      in_f32(z, "selective_scan z"), in(dt_bias, "selective_scan dt_bias"),
                      out(ssm_state, "selective_scan ssm_state"), out(y, "selective_scan y"), isa_);
}

void CpuBackend::dt_importance(const Tensor& delta, const Tensor& dt_bias, const Tensor& scores) {
  const DtImportanceParams p = make_dt_importance_params(delta, dt_bias, scores);
  cpu::dt_importance(p, in_f32(delta, "dt_importance delta"), in(dt_bias, "dt_importance dt_bias"),
                     out(scores, "dt_importance scores"), isa_);
}

void CpuBackend::topk_indices(const Tensor& scores, int64_t n_candidates, int64_t k,
                              const Tensor& idx) {
  const TopkIndicesParams p = make_topk_indices_params(scores, n_candidates, k, idx);
  cpu::topk_indices(p, in_f32(scores, "topk_indices scores"), out<int32_t>(idx, "topk_indices idx"));
}

void CpuBackend::gather_rows(const Tensor& src, const Tensor& idx, const Tensor& dst) {
  const GatherRowsParams p = make_gather_rows_params(src, idx, dst);
  cpu::gather_rows(p, in(src, "gather_rows src"),
                   static_cast<const int32_t*>(in(idx, "gather_rows idx")),
                   out(dst, "gather_rows dst"));
}

void CpuBackend::argmax(const Tensor& x, int64_t n, const Tensor& idx) {
  const ArgmaxParams p = make_argmax_params(x, n, idx);
  *out<int32_t>(idx, "argmax idx") = cpu::argmax(p, in_f32(x, "argmax x"));
}

void CpuBackend::causal_conv1d_step(const Tensor& x, const Tensor& weight, const Tensor* bias,
                                    const Tensor& conv_state, const Tensor& y) {
  const CausalConv1dStepParams p = make_causal_conv1d_step_params(x, weight, bias, conv_state, y);
  cpu::causal_conv1d_step(p, in_f32(x, "causal_conv1d_step x"),
                          in(weight, "causal_conv1d_step weight"),
                          in_opt(bias, "causal_conv1d_step bias"),
                          out(conv_state, "causal_conv1d_step conv_state"),
                          out(y, "causal_conv1d_step y"), isa_);
}

void CpuBackend::selective_scan_step(const Tensor& u, const Tensor& delta, const Tensor& A_log,
                                     const Tensor& B, const Tensor& C, const Tensor& D,
                                     const Tensor* z, const Tensor& dt_bias,
                                     const Tensor& ssm_state, const Tensor& y) {
  const SelectiveScanStepParams p =
      make_selective_scan_step_params(u, delta, A_log, B, C, D, z, dt_bias, ssm_state, y);
  cpu::selective_scan_step(
      p, in_f32(u, "selective_scan_step u"), in_f32(delta, "selective_scan_step delta"),
      in(A_log, "selective_scan_step A_log"), in_f32(B, "selective_scan_step B"),
      in_f32(C, "selective_scan_step C"), in(D, "selective_scan_step D"),
      in_f32(z, "selective_scan_step z"), in(dt_bias, "selective_scan_step dt_bias"),
      out(ssm_state, "selective_scan_step ssm_state"), out(y, "selective_scan_step y"), isa_);
}

}  // namespace dm
