// CudaBackend's fusions (backend.h "Prompt fusions" and "Decode fusions"): the prompt's norm +
// in_proj, conv + x_proj and scan + out_proj through the tensor-core GEMM's per-slice producers;
// the decode's norm + GEMV (+ conv step) paths, dt_proj + scan step, and mamba_block_step's forms
// (the default, form 5, folds the norm into in_proj: cuda/gemv_rows.cu). The kernels are in
// cuda/fused_step.cu, cuda/gemv_rows.cu and cuda/mamba_block_step.cu; the GEMMs in cuda_gemm.cpp.
#include <cstdlib>
#include <cstring>
#include <string>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_util.h"
#include "backend/params.h"
#include "core/env.h"
#include "core/error.h"

namespace dm {

using namespace cuda_util;

namespace {
bool fused_step_enabled() {
  return env_choice("cuda", "DM_FUSED_STEP", {"1", "0"}) == 0;
}
// DM_CUDA_SCAN_SPLIT=0: selective_scan_gemm's scan writes y and a conversion kernel the operand,
// even where the scan could write the operand itself (a comparison switch; read per call).
bool scan_split_enabled() {
  return env_choice("cuda", "DM_CUDA_SCAN_SPLIT", {"1", "0"}) == 0;
}
// Three ways to run rms_norm_gemm(_conv_step) for one row, DM_CUDA_DECODE_NORM (read per call):
//   fused    norm_gemv: every block recomputes the norm, then the GEMV (+ conv in its epilogue);
//   split    the rms_norm kernel, then norm_gemv reading the normed row (GEMV + conv epilogue);
//   compose  Backend's composition: rms_norm, GEMV, conv step (three kernels).
// Default: split for matrices of at most DM_CUDA_NORM_GEMV_MAX_WEIGHTS (4M) weights, where
// launches dominate (130m's in_proj), compose above (2.8b's in_proj and every LM head, where the
// weight stream dominates). Measured on an H100, graph device time per token
// (bench/results/h100_cuda_decode_session4_2026-11-27.md): 130m split 346, compose 373, fused
// 400 µs; 2.8b compose 2823, split 2993, fused 3285 µs.
size_t norm_gemv_max_weights() {
  const char* e = std::getenv("DM_CUDA_NORM_GEMV_MAX_WEIGHTS");
  return e ? size_t(std::strtoull(e, nullptr, 10)) : size_t(1) << 22;
}
enum class NormPath { kFused, kSplit, kCompose };
NormPath norm_path(const RmsNormGemmParams& p) {
  const char* e = std::getenv("DM_CUDA_DECODE_NORM");
  const std::string v = e ? e : "";
  if (!fused_step_enabled() || !cuda::norm_gemv_supported(p) || v == "compose")
    return NormPath::kCompose;
  if (v == "split") return NormPath::kSplit;
  if (v == "fused") return NormPath::kFused;
  return size_t(p.gemm.N) * p.gemm.K > norm_gemv_max_weights() ? NormPath::kCompose
                                                                 : NormPath::kSplit;
}
}  // namespace

void CudaBackend::norm_gemm(const Tensor* x, const Tensor& residual, const Tensor& norm_weight,
                            float eps, const Tensor& normed, const Tensor& w, const Tensor* bias,
                            const Tensor& y, const Tensor* conv_weight, const Tensor* conv_bias,
                            const Tensor* conv_state, const Tensor* conv_y,
                            const cuda::XProjPartials& xp) {
  const RmsNormGemmParams p = make_rms_norm_gemm_params(x, residual, norm_weight, eps, normed, w,
                                                        bias, y, conv_weight, conv_bias,
                                                        conv_state, conv_y);
  if (!conv_weight && tensor_core_gemm(p.gemm) && fused_step_enabled()) {
    prompt_norm_gemm(p, x, residual, norm_weight, normed, w, bias, y);
    return;
  }
  const NormPath path = norm_path(p);
  if (xp.J > 0 && path == NormPath::kCompose)
    fail("[cuda] rms_norm_gemm_conv_step: x_proj partials need the norm_gemv kernel");
  if (path == NormPath::kCompose) {
    if (conv_weight)
      Backend::rms_norm_gemm_conv_step(x, residual, norm_weight, eps, normed, w, bias, y,
                                       *conv_weight, conv_bias, *conv_state, *conv_y);
    else
      Backend::rms_norm_gemm(x, residual, norm_weight, eps, normed, w, bias, y);
    return;
  }
  const bool prenormed = path == NormPath::kSplit;
  if (prenormed) {  // residual += x; normed = rms_norm(residual)
    if (x)
      rms_norm(*x, &residual, norm_weight, normed, eps);
    else
      rms_norm(residual, nullptr, norm_weight, normed, eps);
  }
  const char* k = "rms_norm_gemm";
  check_launch(cuda::launch_norm_gemv(
                   p, dptr(x, k), dptr(residual, k), dptr<const void>(norm_weight, k),
                   dptr(normed, k), dptr<const void>(w, k), dptr<const void>(bias, k), dptr(y, k),
                   dptr<const void>(conv_weight, k), dptr<const void>(conv_bias, k),
                   dptr(conv_state, k), dptr(conv_y, k), step_counter_, prenormed, xp, stream_),
               conv_weight ? "rms_norm_gemm_conv_step" : "rms_norm_gemm");
}

// A prompt's norm + in_proj: per GEMM slice, the rms_norm kernel over its rows writes the
// residual as rms_norm does and the GEMM's hi / lo, for the tensor cores, but not normed
// (scratch in rms_norm_gemm: nothing reads it, and its store was ~20% of the kernel's traffic).
void CudaBackend::prompt_norm_gemm(const RmsNormGemmParams& p, const Tensor* x,
                                   const Tensor& residual, const Tensor& norm_weight,
                                   const Tensor& normed, const Tensor& w, const Tensor* bias,
                                   const Tensor& y) {
  const char* k = "rms_norm_gemm";
  // As rms_norm(x, &residual, …) with x, rms_norm(residual, nullptr, …) without (p.norm's strides).
  const float* src = x ? dptr(x, k) : dptr(residual, k);
  float* res = x ? dptr(residual, k) : nullptr;
  const void* nw = dptr<const void>(norm_weight, k);
  dptr(normed, k);  // checks that normed is this backend's, as the composition would
  float* yp = dptr(y, k);
  gemm_tensor_cores(p.gemm, gemm_weight(w, p.gemm), yp,
                    [&](uint32_t m0, uint32_t ms, const cuda::GemmSplitOut& out) {
                      RmsNormParams n = p.norm;
                      n.L = ms;
                      check_launch(cuda::launch_rms_norm(
                                       n, src + size_t(m0) * n.x_stride,
                                       res ? res + size_t(m0) * n.residual_stride : nullptr, nw,
                                       nullptr, stream_, out),
                                   "rms_norm_gemm (norm)");
                    });
  add_bias(p.gemm, yp, dptr<const void>(bias, k));
}

void CudaBackend::causal_conv1d_gemm(const Tensor& x, const Tensor& conv_weight,
                                     const Tensor* conv_bias, const Tensor& conv_state,
                                     const Tensor& xc, const Tensor& w, const Tensor& y) {
  const TimedCall timed(*this, "causal_conv1d_gemm");
  const CausalConv1dParams c = make_causal_conv1d_params(x, conv_weight, conv_bias, conv_state, xc);
  const GemmParams g = make_gemm_params(xc, w, nullptr, y);
  if (!tensor_core_gemm(g) || !fused_step_enabled())
    return Backend::causal_conv1d_gemm(x, conv_weight, conv_bias, conv_state, xc, w, y);
  const char* k = "causal_conv1d_gemm";
  const float* xp = dptr(x, k);
  const void* cw = dptr<const void>(conv_weight, k);
  const void* cb = dptr<const void>(conv_bias, k);
  float* cs = dptr(conv_state, k);
  float* xcp = dptr(xc, k);
  gemm_tensor_cores(g, gemm_weight(w, g), dptr(y, k),
                    [&](uint32_t m0, uint32_t ms, const cuda::GemmSplitOut& out) {
                      check_launch(cuda::launch_causal_conv1d_rows(c, xp, cw, cb, cs, xcp, m0, ms,
                                                                   out, stream_),
                                   "causal_conv1d_gemm (conv)");
                    });
}

void CudaBackend::selective_scan_gemm(const Tensor& u, const Tensor& delta, const Tensor& A_log,
                                      const Tensor& B, const Tensor& C, const Tensor& D,
                                      const Tensor* z, const Tensor& dt_bias,
                                      const Tensor& ssm_state, const Tensor& y, const Tensor& w,
                                      const Tensor* bias, const Tensor& out) {
  const TimedCall timed(*this, "selective_scan_gemm");
  const SelectiveScanParams sp =
      make_selective_scan_params(u, delta, A_log, B, C, D, z, dt_bias, ssm_state, y);
  const GemmParams g = make_gemm_params(y, w, bias, out);
  // The operand fills y's bytes exactly (hi: L·E halves, then lo), so y must be dense.
  if (tensor_core_gemm(g) && fused_step_enabled() && scan_split_enabled() && g.x_stride == g.K) {
    check_cublas_range(g);
    const char* k = "selective_scan_gemm";
    const GemmWeight wt = gemm_weight(w, g);
    // y's L·E floats hold the operand's 2·L·E halves exactly.
    const cuda::GemmSplitOut op = operand_layout(g, wt, dptr(y, k), g.M);
    const cudaError_t e = cuda::launch_selective_scan_split(
        sp, dptr(u, k), dptr(delta, k), dptr<const void>(A_log, k), dptr(B, k), dptr(C, k),
        dptr<const void>(D, k), dptr(z, k), dptr<const void>(dt_bias, k), dptr(ssm_state, k),
        dptr(y, k), op, stream_);
    if (e != cudaErrorNotSupported) {
      check_launch(e, "selective_scan_gemm (scan)");
      float* op_out = dptr(out, k);
      gemm_operand(g, wt, op, 0, g.M, op_out);
      add_bias(g, op_out, dptr<const void>(bias, k));
      return;
    }
  }
  Backend::selective_scan_gemm(u, delta, A_log, B, C, D, z, dt_bias, ssm_state, y, w, bias, out);
}

void CudaBackend::rms_norm_gemm(const Tensor* x, const Tensor& residual, const Tensor& norm_weight,
                                float eps, const Tensor& normed, const Tensor& w,
                                const Tensor* bias, const Tensor& y) {
  const TimedCall timed(*this, "rms_norm_gemm");
  norm_gemm(x, residual, norm_weight, eps, normed, w, bias, y, nullptr, nullptr, nullptr, nullptr);
}

void CudaBackend::rms_norm_gemm_conv_step(const Tensor* x, const Tensor& residual,
                                          const Tensor& norm_weight, float eps,
                                          const Tensor& normed, const Tensor& w,
                                          const Tensor* bias, const Tensor& y,
                                          const Tensor& conv_weight, const Tensor* conv_bias,
                                          const Tensor& conv_state, const Tensor& conv_y) {
  const TimedCall timed(*this, "rms_norm_gemm_conv_step");
  norm_gemm(x, residual, norm_weight, eps, normed, w, bias, y, &conv_weight, conv_bias,
            &conv_state, &conv_y);
}

void CudaBackend::dt_proj_scan_step(const Tensor& dt_low, const Tensor& dt_proj,
                                    const Tensor& delta, const Tensor& u, const Tensor& A_log,
                                    const Tensor& B, const Tensor& C, const Tensor& D,
                                    const Tensor* z, const Tensor& dt_bias,
                                    const Tensor& ssm_state, const Tensor& y) {
  const TimedCall timed(*this, "dt_proj_scan_step");
  const DtProjScanStepParams p = make_dt_proj_scan_step_params(
      dt_low, dt_proj, delta, u, A_log, B, C, D, z, dt_bias, ssm_state, y);
  if (!fused_step_enabled() || !cuda::dt_scan_supported(p)) {
    Backend::dt_proj_scan_step(dt_low, dt_proj, delta, u, A_log, B, C, D, z, dt_bias, ssm_state,
                               y);
    return;
  }
  const char* k = "dt_proj_scan_step";
  check_launch(cuda::launch_dt_scan(p, dptr(dt_low, k), dptr<const void>(dt_proj, k),
                                    dptr(delta, k), dptr(u, k), dptr<const void>(A_log, k),
                                    dptr(B, k), dptr(C, k), dptr<const void>(D, k), dptr(z, k),
                                    dptr<const void>(dt_bias, k), dptr(ssm_state, k), dptr(y, k),
                                    stream_),
               k);
}

namespace {
// DM_CUDA_DECODE_FORM (read at each call) picks mamba_block_step's form where it applies:
//   1  one kernel (cuda/mamba_block_step.cu; also DM_CUDA_DECODE_BLOCK=1). Opt-in because it
//      measured slower: 130m 358.1 against 344.2 µs a token for form 4 (H100, graph device time,
//      session 6; bench/results/h100_session6_decode_block_2026-11-27.md); 2.8b's slices do not
//      fit in shared memory;
//   3  x_proj inside the norm_gemv and dt_scan kernels, where cuda::xproj_fold_plan applies and
//      rms_norm_gemm_conv_step takes a norm_gemv path (split or fused: 130m-class widths; 2.8b's
//      in_proj is composed and its partials too many). Opt-in because it measured slower: 130m
//      433.3 against 356.1 µs a token for form 4 (H100, graph device time, one process, session
//      9; bench/results/h100_session9_cudadecode_2026-11-27.md);
//   4  x_proj a GEMV of its own (Backend's composition of the fused methods);
//   5  (the default) form 4 with the norm folded into in_proj's GEMV (cuda/gemv_rows.cu:
//      no norm kernel; the conv step in the GEMV's epilogue; the residual and normed rows
//      written by the scan step's tail), where cuda::norm_fold_gemv_supported and
//      cuda::dt_scan_supported take the shapes. Four kernels a layer: in_proj, x_proj, dt_proj +
//      scan, out_proj. H200, graph device time, µs a token (session 16,
//      bench/results/h200_session16_2026-11-28.md): 2.8b 2158 against 2478 for form 4 with
//      session 15's GEMVs, 130m 261 against 343.
// Where the chosen form does not apply, the next one in the order 1, 3, 5, 4 that does runs.
std::string decode_form() {
  const char* b = std::getenv("DM_CUDA_DECODE_BLOCK");
  if (b && std::string(b) == "1") return "1";
  const char* e = std::getenv("DM_CUDA_DECODE_FORM");
  return e ? e : "5";
}
// Form 5's in_proj launch, from the block's tensors (the GEMV on xz, the conv step on its first
// E columns).
cuda::NormFoldGemvArgs norm_fold_args(const MambaBlockStepArgs& a, const RmsNormGemmParams& p,
                                      float* scale) {
  const char* k = "mamba_block_step";
  cuda::NormFoldGemvArgs f;
  f.N = p.gemm.N, f.K = p.gemm.K, f.D = p.norm.D;
  f.residual = dptr(a.residual, k), f.x = dptr(a.x, k);
  f.norm_w = dptr<const void>(a.norm_weight, k), f.norm_dtype = p.norm.weight_dtype;
  f.eps = p.norm.eps;
  f.w = dptr<const void>(a.in_proj, k), f.w_stride = p.gemm.w_stride, f.w_dtype = p.gemm.w_dtype;
  f.bias = dptr<const void>(a.in_proj_bias, k), f.bias_dtype = p.gemm.bias_dtype;
  f.y = dptr(a.xz, k), f.scale = scale;
  f.conv_channels = p.conv.channels, f.conv_d = p.conv.d_conv;
  f.conv_w = dptr<const void>(a.conv_weight, k), f.conv_w_dtype = p.conv.weight_dtype;
  f.conv_b = dptr<const void>(a.conv_bias, k), f.conv_b_dtype = p.conv.bias_dtype;
  f.conv_has_bias = p.conv.has_bias;
  f.conv_state = dptr(a.conv_state, k), f.conv_y = dptr(a.xc, k);
  return f;
}
// Whether form 5 takes the block: one row, the fold's alignment, dense conv tensors and rows.
bool norm_fold_applies(const MambaBlockStepArgs& a, const MambaBlockStepParams& p, float* scale) {
  const RmsNormGemmParams& f = p.front;
  return f.norm.L == 1 && f.gemm.M == 1 && f.conv.batch == 1 && a.conv_weight.cols == 4 &&
         a.conv_weight.row_stride == 4 && a.conv_state.row_stride == 4 &&
         cuda::dt_scan_supported(p.scan) && p.scan.scan.channels * 16ull >= f.norm.D &&
         cuda::norm_fold_gemv_supported(norm_fold_args(a, f, scale));
}
cuda::MambaBlockStepPtrs block_step_ptrs(const MambaBlockStepArgs& a) {
  const char* k = "mamba_block_step";
  return {dptr(a.x, k),           dptr(a.residual, k),
          dptr<const void>(a.norm_weight, k), dptr(a.normed, k),
          dptr<const void>(a.in_proj, k),     dptr<const void>(a.in_proj_bias, k),
          dptr(a.xz, k),          dptr<const void>(a.conv_weight, k),
          dptr<const void>(a.conv_bias, k),   dptr(a.conv_state, k),
          dptr(a.xc, k),          dptr<const void>(a.x_proj, k),
          dptr(a.x_dbl, k),       dptr<const void>(a.dt_proj, k),
          dptr(a.dt, k),          dptr<const void>(a.A_log, k),
          dptr<const void>(a.D, k),           dptr<const void>(a.dt_bias, k),
          dptr(a.ssm_state, k),   dptr(a.y, k),
          dptr<const void>(a.out_proj, k),    dptr<const void>(a.out_proj_bias, k),
          dptr(a.hidden, k)};
}
}  // namespace

int CudaBackend::block_step_form(const MambaBlockStepArgs& a) {
  return block_step_form(a, make_mamba_block_step_params(a));
}

int CudaBackend::block_step_form(const MambaBlockStepArgs& a, const MambaBlockStepParams& p) {
  if (!fused_step_enabled()) return 0;
  // The norm moved across the layer boundary (next_norm / normed_ready: the executor asks for it
  // only where decode_norm_tail says so, never here) runs Backend's composition.
  if (a.normed_ready || a.next_norm) return 0;
  const std::string form = decode_form();
  if (form == "1" && cuda::mamba_block_step_supported(p, block_step_ptrs(a))) return 1;
  if ((form == "1" || form == "3") && norm_path(p.front) != NormPath::kCompose &&
      cuda::xproj_fold_plan(p, cuda::kDecodePartialBytes).G > 0)
    return 3;
  if (form != "4" && norm_fold_applies(a, p, norm_scale_)) return 5;
  return 4;
}

void CudaBackend::mamba_block_step(const MambaBlockStepArgs& a) {
  const TimedCall timed(*this, "mamba_block_step");
  const MambaBlockStepParams p = make_mamba_block_step_params(a);
  const char* k = "mamba_block_step";
  switch (block_step_form(a, p)) {
    case 1:
      check_launch(cuda::launch_mamba_block_step(p, block_step_ptrs(a), block_exchange_, stream_),
                   k);
      return;
    case 3: {
      // norm (+ residual) → in_proj + conv step + x_proj partials; x_dbl reduced, dt_proj, scan
      // step, gate; out_proj.
      const cuda::XProjPlan plan = cuda::xproj_fold_plan(p, cuda::kDecodePartialBytes);
      const cuda::XProjPartials xp{dptr<const void>(a.x_proj, k), xproj_partials_,
                                   p.x_proj.w_stride, p.x_proj.w_dtype, plan.J};
      norm_gemm(a.x, a.residual, a.norm_weight, a.eps, a.normed, a.in_proj, a.in_proj_bias, a.xz,
                &a.conv_weight, a.conv_bias, &a.conv_state, &a.xc, xp);
      const Tensor z = block_step_views(a).z;
      const cuda::XProjReduce xr{xproj_partials_, dptr(a.x_dbl, k), plan.G, plan.J};
      check_launch(cuda::launch_dt_scan_xp(p.scan, plan, xr, dptr<const void>(a.dt_proj, k),
                                           dptr(a.dt, k), dptr(a.xc, k),
                                           dptr<const void>(a.A_log, k), dptr<const void>(a.D, k),
                                           dptr(z, k), dptr<const void>(a.dt_bias, k),
                                           dptr(a.ssm_state, k), dptr(a.y, k), stream_),
                   k);
      gemm(a.y, a.out_proj, a.out_proj_bias, a.hidden);
      return;
    }
    case 5: {
      // norm folded into in_proj + conv step; x_proj; dt_proj + scan step + the norm's residual
      // and normed rows; out_proj.
      check_launch(cuda::launch_norm_fold_gemv(norm_fold_args(a, p.front, norm_scale_), stream_),
                   k);
      gemm(a.xc, a.x_proj, nullptr, a.x_dbl);
      const BlockStepViews v = block_step_views(a);
      cuda::ResidualNormTail tail;
      tail.residual = dptr(a.residual, k), tail.x = dptr(a.x, k);
      tail.norm_w = dptr<const void>(a.norm_weight, k), tail.norm_dtype = p.front.norm.weight_dtype;
      tail.normed = dptr(a.normed, k), tail.scale = norm_scale_, tail.D = p.front.norm.D;
      check_launch(cuda::launch_dt_scan(p.scan, dptr(v.dt_low, k), dptr<const void>(a.dt_proj, k),
                                        dptr(a.dt, k), dptr(a.xc, k), dptr<const void>(a.A_log, k),
                                        dptr(v.B, k), dptr(v.C, k), dptr<const void>(a.D, k),
                                        dptr(v.z, k), dptr<const void>(a.dt_bias, k),
                                        dptr(a.ssm_state, k), dptr(a.y, k), stream_, tail),
                   k);
      gemm(a.y, a.out_proj, a.out_proj_bias, a.hidden);
      return;
    }
    default: Backend::mamba_block_step(a);
  }
}

std::vector<unsigned long long> CudaBackend::decode_block_trace() {
  not_capturing("decode_block_trace");
  std::vector<unsigned long long> out(cuda::kDecodeTraceWords);
  const char* base = static_cast<const char*>(block_exchange_) + cuda::kDecodeExchangeBytes -
                     out.size() * sizeof(unsigned long long);
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  CUDA_CHECK(cudaMemcpy(out.data(), base, out.size() * sizeof(unsigned long long),
                        cudaMemcpyDeviceToHost));
  return out;
}

}  // namespace dm
