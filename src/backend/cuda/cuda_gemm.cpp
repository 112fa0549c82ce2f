// CudaBackend's GEMMs (backend.h gemm, and the GEMM half of the prompt fusions).
//
// y (M×N) = x (M×K) · Wᵀ, three paths:
// - M ≤ 8 (decode): gemv_small_m, which reads every weight once in its stored dtype and
//   multiplies in fp32 (memory-bound; exact to fp32 rounding); M = 1 with 16-byte rows runs
//   gemv_rows instead (cuda/gemv_rows.cu: several rows per warp, less input traffic);
// - F32 weights: cuBLAS SGEMM (fp32, no TF32);
// - F16 / BF16 weights: tensor cores with fp32 accumulation (gemm_tensor_cores). The fp32
//   activations are split into hi = round(x) and lo = round(x - hi) in the weight dtype, and
//   y = W·hi + W·lo: 22 (fp16) or 16 (bf16) significant bits of x survive, NMSE vs the fp32 CPU
//   ~1e-12, at twice the tensor-core work. DM_CUDA_FAST_GEMM=1 keeps hi only (one GEMM; measured
//   NMSE ~3e-8 with F16 and ~2e-6 with BF16 weights, H100).
//   Where the weight is a constant (upload_constant: the model's weights) the sum is one GEMM
//   over K' = 2K: each operand row is hi | lo and each weight row W | W, a copy made on first use
//   (gemm_weight: "K-concatenated"). Against two GEMMs (the second accumulating into y) this
//   reads and writes y once instead of twice and launches one kernel instead of two, which is
//   most of the difference on short prompts (DeciMamba's 2,000-row layers) and on wide outputs.
//   The copies cost the GEMM weights' size again in device memory: DM_CUDA_GEMM_KCAT=0 never
//   makes them, =1 always; by default they are made while they total at most an eighth of the
//   device's memory and leave a sixteenth of it (at least 1 GiB) free (the rest run as two GEMMs).
//   A conversion kernel splits x here; the prompt fusions (rms_norm_gemm, causal_conv1d_gemm,
//   selective_scan_gemm) have the kernel that produces x write the split, which saves that pass.
// Row-major y is column-major yᵀ (N×M) = W · xᵀ: cuBLAS's C = op(A)·B with A = W stored
// column-major as K×N (op = T) and B = x stored as K×M.
#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdlib>
#include <string>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_gemm_algo.h"
#include "backend/cuda/cuda_util.h"
#include "core/env.h"
#include "core/error.h"

namespace dm {

using namespace cuda_util;

namespace {

uint32_t gemm_slice_rows() {
  const char* e = std::getenv("DM_CUDA_GEMM_SLICE");
  const unsigned long v = e ? std::strtoul(e, nullptr, 10) : 0;
  return v > 0 && v < 32768 ? uint32_t(v) : 32768u;
}

enum class KcatMode { kOff, kAuto, kOn };
KcatMode kcat_mode() {  // DM_CUDA_GEMM_KCAT, read per call
  const char* e = std::getenv("DM_CUDA_GEMM_KCAT");
  if (!e || !*e) return KcatMode::kAuto;
  const std::string v = e;
  if (v == "0") return KcatMode::kOff;
  if (v == "1") return KcatMode::kOn;
  fail("[cuda] DM_CUDA_GEMM_KCAT must be 0 or 1, got '", v, "'");
}

// Bytes of K-concatenated weight copies alive in this process (every buffer, every backend).
std::atomic<size_t>& kcat_bytes() {
  static std::atomic<size_t>* n = new std::atomic<size_t>(0);  // never destroyed: see registry()
  return *n;
}

}  // namespace

void cuda_util::free_kcat_copies(CudaBuffer& b) {
  for (auto& [key, ptr] : b.kcat) {
    cudaFree(ptr);  // waits for the device: queued GEMMs that read the copy finish first
    kcat_bytes() -= size_t(key[1]) * key[2] * 4;
  }
  b.kcat.clear();
}

void* CudaBackend::scratch(size_t bytes) {
  if (bytes <= scratch_bytes_) return scratch_;
  if (capturing_)
    fail("[cuda] gemm: the activation scratch would have to grow to ", mib(bytes),
         " while a graph is being recorded; run the same work once before recording");
  if (scratch_) CUDA_CHECK(cudaFreeAsync(scratch_, stream_));
  scratch_ = nullptr;
  scratch_bytes_ = 0;
  const size_t want = (bytes + (size_t(1) << 20) - 1) & ~((size_t(1) << 20) - 1);
  const cudaError_t e = cudaMallocAsync(&scratch_, want, stream_);
  if (e == cudaErrorMemoryAllocation) out_of_memory(e, want, "gemm activation scratch");
  CUDA_CHECK(e);
  scratch_bytes_ = want;
  return scratch_;
}

bool CudaBackend::tensor_core_gemm(const GemmParams& p) {
  const DType wt = DType(p.w_dtype);
  return p.M > cuda::kGemvMaxM && p.N > 0 && p.K > 0 && (wt == DType::F16 || wt == DType::BF16);
}

CudaBackend::GemmWeight CudaBackend::gemm_weight(const Tensor& w, const GemmParams& p) {
  CudaBuffer& b = dev(*w.buf, "gemm w");
  const void* wp = static_cast<const char*>(b.ptr()) + w.offset;
  const GemmWeight plain{wp, p.w_stride, false};
  if (!split_gemm_ || capturing_ || !tensor_core_gemm(p) || 2 * uint64_t(p.K) > INT_MAX)
    return plain;
  const KcatMode mode = kcat_mode();
  if (mode == KcatMode::kOff || !b.constant) return plain;
  const std::array<uint64_t, 4> key{w.offset, p.N, p.K, p.w_stride};
  const uint32_t ld = 2 * p.K;
  if (auto it = b.kcat.find(key); it != b.kcat.end()) return {it->second, ld, true};
  const size_t row = size_t(p.K) * 2, bytes = size_t(p.N) * row * 2;  // N rows of W | W
  if (mode == KcatMode::kAuto) {
    if (kcat_bytes() + bytes > kcat_budget_) return plain;
    // Leave room for what comes after (the operand scratch, longer prompts' activations): a
    // copy is an optimisation and must not be what runs the device out of memory.
    size_t free_b = 0, total_b = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    if (free_b < bytes + std::max(total_b / 16, size_t(1) << 30)) return plain;
  }
  void* copy = nullptr;
  const cudaError_t e = cudaMalloc(&copy, bytes);
  if (e == cudaErrorMemoryAllocation && mode == KcatMode::kAuto) {
    cudaGetLastError();
    return plain;  // the two-GEMM path needs no more memory
  }
  if (e == cudaErrorMemoryAllocation) out_of_memory(e, bytes, "gemm K-concatenated weight copy");
  CUDA_CHECK(e);
  b.kcat.emplace(key, copy);
  kcat_bytes() += bytes;
  for (size_t half = 0; half < 2; ++half)
    CUDA_CHECK(cudaMemcpy2DAsync(static_cast<char*>(copy) + half * row, 2 * row, wp,
                                 size_t(p.w_stride) * 2, row, p.N, cudaMemcpyDeviceToDevice,
                                 stream_));
  return {copy, ld, true};
}

cuda::GemmSplitOut CudaBackend::operand_layout(const GemmParams& p, const GemmWeight& w,
                                               void* base, uint32_t rows) const {
  cuda::GemmSplitOut o;
  o.hi = base, o.dtype = p.w_dtype, o.cols = p.K;
  if (w.kcat) {
    o.lo = static_cast<uint16_t*>(base) + p.K;  // row m: hi | lo
    o.stride = 2 * p.K;
  } else {
    o.lo = split_gemm_ ? static_cast<uint16_t*>(base) + size_t(rows) * p.K : nullptr;  // planes
    o.stride = p.K;
  }
  return o;
}

void CudaBackend::gemm_operand(const GemmParams& p, const GemmWeight& w,
                               const cuda::GemmSplitOut& op, uint32_t m0, uint32_t rows,
                               float* y) {
  const float one = 1.f, zero = 0.f;
  const cudaDataType t = DType(p.w_dtype) == DType::F16 ? CUDA_R_16F : CUDA_R_16BF;
  float* ys = y + size_t(m0) * p.y_stride;
  const int k = int(w.kcat ? 2 * p.K : p.K);
  // cuBLAS's own pick, or the measured exception for this shape (cuda_gemm_algo.h).
  const auto run = [&](const void* x, const float& beta) {
    if (algo_table_->run({rows, p.N, uint32_t(k), w.ptr, w.ld, x, op.stride, ys, p.y_stride, t,
                          beta},
                         stream_))
      return;
    CUBLAS_CHECK(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, int(p.N), int(rows), k, &one,
                              w.ptr, t, int(w.ld), x, t, int(op.stride), &beta, ys, CUDA_R_32F,
                              int(p.y_stride), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  };
  run(op.hi, zero);
  if (op.lo && !w.kcat) run(op.lo, one);
}

void CudaBackend::gemm_tensor_cores(const GemmParams& p, const GemmWeight& w, float* y,
                                    const OperandWriter& write_operand) {
  check_cublas_range(p);
  // Rows in slices, so the operand needs at most 2 · slice · K halves of scratch.
  const uint32_t slice = std::min(p.M, gemm_slice_rows());
  void* base = scratch(size_t(slice) * p.K * 2 * (split_gemm_ ? 2 : 1));
  const cuda::GemmSplitOut out = operand_layout(p, w, base, slice);
  for (uint32_t m0 = 0; m0 < p.M; m0 += slice) {
    const uint32_t ms = std::min(slice, p.M - m0);
    write_operand(m0, ms, out);
    gemm_operand(p, w, out, m0, ms, y);
  }
}

void CudaBackend::add_bias(const GemmParams& p, float* y, const void* bias) {
  if (bias)
    check_launch(cuda::launch_add_bias(p.M, p.N, y, p.y_stride, bias, p.bias_dtype, stream_),
                 "gemm (bias)");
}

namespace {
// One-row GEMVs run gemv_rows (RW rows per warp: each input chunk loaded once for RW rows), where
// it takes the shapes; DM_CUDA_GEMV_ROWS=0 (read per call): gemv_small_m, as before session 16.
bool gemv_rows_on() {
  return env_choice("cuda", "DM_CUDA_GEMV_ROWS", {"1", "0"}) == 0;
}
}  // namespace

void CudaBackend::gemm(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) {
  const TimedCall timed(*this, [&] {
    return "gemm " + std::to_string(w.rows) + "x" + std::to_string(w.cols);
  });
  const GemmParams p = make_gemm_params(x, w, bias, y);
  if (p.M == 0 || p.N == 0) return;
  check_cublas_range(p);
  const float* xp = dptr(x, "gemm x");
  const void* wp = dptr<const void>(w, "gemm w");
  const void* bp = dptr<const void>(bias, "gemm bias");
  float* yp = dptr(y, "gemm y");
  if (p.M == 1 && gemv_rows_on() &&
      cuda::gemv_rows_supported(p.N, p.K, xp, wp, p.w_stride, p.w_dtype)) {
    check_launch(cuda::launch_gemv_rows(p.N, p.K, xp, wp, p.w_stride, p.w_dtype, bp,
                                        p.bias_dtype, yp, stream_),
                 "gemm (gemv_rows)");
    return;
  }
  if (p.M <= cuda::kGemvMaxM) {
    check_launch(cuda::launch_gemv_small_m(p.M, p.N, p.K, xp, p.x_stride, wp, p.w_stride,
                                           p.w_dtype, bp, p.bias_dtype, yp, p.y_stride, stream_),
                 "gemm (gemv_small_m)");
    return;
  }
  if (p.K == 0) {
    CUDA_CHECK(cudaMemset2DAsync(yp, size_t(p.y_stride) * 4, 0, size_t(p.N) * 4, p.M, stream_));
  } else if (tensor_core_gemm(p)) {
    gemm_tensor_cores(p, gemm_weight(w, p), yp,
                      [&](uint32_t m0, uint32_t ms, const cuda::GemmSplitOut& out) {
                        check_launch(cuda::launch_convert_rows(ms, p.K,
                                                               xp + size_t(m0) * p.x_stride,
                                                               p.x_stride, out, stream_),
                                     "gemm (activation split)");
                      });
  } else {  // F32 weights
    const float one = 1.f, zero = 0.f;
    CUBLAS_CHECK(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, int(p.N), int(p.M), int(p.K),
                              &one, wp, CUDA_R_32F, int(p.w_stride), xp, CUDA_R_32F,
                              int(p.x_stride), &zero, yp, CUDA_R_32F, int(p.y_stride),
                              CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
  add_bias(p, yp, bp);
}

}  // namespace dm
