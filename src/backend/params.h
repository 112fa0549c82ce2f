// One POD params struct per kernel. The same struct is the Vulkan push-constant block and the
// CUDA launcher argument, so it holds only sizes, strides and flags (never pointers) and must
// fit Vulkan's guaranteed 128 bytes of push constants. Strides are in elements. Buffer offsets
// travel beside the struct (descriptor ranges / base pointers), not in it.
//
// make_*_params() fill a struct from the tensors of a Backend call and check every shape, so all
// backends agree on what a call means and a bad call fails the same way everywhere.
#pragma once

#include <cstdint>
#include <type_traits>

#include "core/tensor.h"

namespace dm {

#define DM_PARAMS_STRUCT(T)                                            \
  static_assert(std::is_trivially_copyable_v<T> && std::is_standard_layout_v<T>, \
                #T " must be POD");                                    \
  static_assert(sizeof(T) <= 128, #T " exceeds the 128-byte push-constant block")

// y[M,N] = x[M,K] · W[N,K]ᵀ (+ bias[N]); x, y fp32; W and bias any float dtype.
struct GemmParams {
  uint32_t M, N, K;
  uint32_t x_stride, w_stride, y_stride;
  uint32_t w_dtype;     // DType of W
  uint32_t bias_dtype;  // DType of bias, when has_bias
  uint32_t has_bias;
};
DM_PARAMS_STRUCT(GemmParams);

// residual[L,D] += x (when has_residual), then y = normed(residual or x) · weight.
struct RmsNormParams {
  uint32_t L, D;
  uint32_t x_stride, residual_stride, y_stride;
  uint32_t weight_dtype;
  uint32_t has_residual;
  float eps;
};
DM_PARAMS_STRUCT(RmsNormParams);

// y[t,c] = SiLU(bias[c] + Σ_k w[c,k] · xin[t-(d_conv-1)+k, c]) where xin is the conv state's
// last d_conv-1 inputs followed by x; the state is then overwritten with the last d_conv inputs.
struct CausalConv1dParams {
  uint32_t L, channels, d_conv;
  uint32_t x_stride, y_stride;
  uint32_t weight_dtype, bias_dtype;
  uint32_t has_bias;
};
DM_PARAMS_STRUCT(CausalConv1dParams);

// Δ = softplus(delta + dt_bias); h = exp(Δ·A)·h + Δ·B·u; y = C·h + D·u; y *= SiLU(z).
// A = -exp(A_log) is formed in the kernel. The state (channels × d_state, fp32) is read as the
// start and overwritten with the end state.
struct SelectiveScanParams {
  uint32_t L, channels, d_state;
  uint32_t u_stride, delta_stride, B_stride, C_stride, z_stride, y_stride;
  uint32_t A_log_dtype, D_dtype, dt_bias_dtype;
  uint32_t has_z;
};
DM_PARAMS_STRUCT(SelectiveScanParams);

// score[t] = ‖softplus(delta[t,:] + dt_bias)‖₂ over channels, fp32.
struct DtImportanceParams {
  uint32_t L, channels;
  uint32_t delta_stride;
  uint32_t dt_bias_dtype;
};
DM_PARAMS_STRUCT(DtImportanceParams);

// Keeps the k highest of score[0 .. n_candidates) (ties: the lower index wins) in ascending
// position order, then appends n_candidates .. L-1 (the protected tail).
struct TopkIndicesParams {
  uint32_t L, n_candidates, k;
};
DM_PARAMS_STRUCT(TopkIndicesParams);

// dst[i,:] = src[idx[i],:] as fp32; src any float dtype (also the embedding lookup).
struct GatherRowsParams {
  uint32_t n, cols, src_rows;
  uint32_t src_stride, dst_stride;
  uint32_t src_dtype;
};
DM_PARAMS_STRUCT(GatherRowsParams);

// idx[0] = the position of the largest of x[0 .. n): greedy decoding's pick on the device, so
// only an id crosses to the host. Ties: the lower index; NaN ranks below every number, -inf
// included (as topk_indices: a broken logit never displaces a real one); all NaN: 0.
struct ArgmaxParams {
  uint32_t n;
};
DM_PARAMS_STRUCT(ArgmaxParams);

// One decode token for each of `batch` sequences: x (batch × channels); conv state
// (batch·channels × d_conv) holds each channel's last d_conv inputs, oldest first.
struct CausalConv1dStepParams {
  uint32_t batch, channels, d_conv;
  uint32_t x_stride, y_stride;
  uint32_t weight_dtype, bias_dtype;
  uint32_t has_bias;
};
DM_PARAMS_STRUCT(CausalConv1dStepParams);

// One decode token of the scan for each of `batch` sequences; state (batch·channels × d_state).
struct SelectiveScanStepParams {
  uint32_t batch, channels, d_state;
  uint32_t u_stride, delta_stride, B_stride, C_stride, z_stride, y_stride;
  uint32_t A_log_dtype, D_dtype, dt_bias_dtype;
  uint32_t has_z;
};
DM_PARAMS_STRUCT(SelectiveScanStepParams);

// Decode fusions (Backend::rms_norm_gemm, rms_norm_gemm_conv_step, dt_proj_scan_step): the params
// of the methods they compose, each made and checked by its own make_*_params, plus the links.
// norm: rms_norm(x or residual, residual?, norm_weight, normed); gemm: normed · wᵀ (+ bias) → y;
// conv (when has_conv): causal_conv1d_step of y's first conv.channels columns.
struct RmsNormGemmParams {
  RmsNormParams norm;
  GemmParams gemm;
  CausalConv1dStepParams conv;
  uint32_t has_conv;
};
DM_PARAMS_STRUCT(RmsNormGemmParams);

// dt: gemm(dt_low, dt_proj) → delta (batch × channels, K = dt_rank); scan: selective_scan_step.
struct DtProjScanStepParams {
  GemmParams dt;
  SelectiveScanStepParams scan;
};
DM_PARAMS_STRUCT(DtProjScanStepParams);

// dt: gemm(dt_low, dt_proj) → delta (L × channels, K = dt_rank); importance: dt_importance of
// that delta (a decimating layer's scores).
struct DtProjImportanceParams {
  GemmParams dt;
  DtImportanceParams importance;
};
DM_PARAMS_STRUCT(DtProjImportanceParams);

GemmParams make_gemm_params(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y);
RmsNormParams make_rms_norm_params(const Tensor& x, const Tensor* residual, const Tensor& weight,
                                   const Tensor& y, float eps);
CausalConv1dParams make_causal_conv1d_params(const Tensor& x, const Tensor& weight,
                                             const Tensor* bias, const Tensor& conv_state,
                                             const Tensor& y);
SelectiveScanParams make_selective_scan_params(const Tensor& u, const Tensor& delta,
                                               const Tensor& A_log, const Tensor& B,
                                               const Tensor& C, const Tensor& D, const Tensor* z,
                                               const Tensor& dt_bias, const Tensor& ssm_state,
                                               const Tensor& y);
DtImportanceParams make_dt_importance_params(const Tensor& delta, const Tensor& dt_bias,
                                             const Tensor& scores);
TopkIndicesParams make_topk_indices_params(const Tensor& scores, int64_t n_candidates, int64_t k,
                                           const Tensor& idx);
GatherRowsParams make_gather_rows_params(const Tensor& src, const Tensor& idx, const Tensor& dst);
ArgmaxParams make_argmax_params(const Tensor& x, int64_t n, const Tensor& idx);
CausalConv1dStepParams make_causal_conv1d_step_params(const Tensor& x, const Tensor& weight,
                                                      const Tensor* bias,
                                                      const Tensor& conv_state, const Tensor& y);
SelectiveScanStepParams make_selective_scan_step_params(const Tensor& u, const Tensor& delta,
                                                        const Tensor& A_log, const Tensor& B,
                                                        const Tensor& C, const Tensor& D,
                                                        const Tensor* z, const Tensor& dt_bias,
                                                        const Tensor& ssm_state, const Tensor& y);

// Defined in backend/backend.cpp. conv_* are all null (no conv) or all but conv_bias set.
RmsNormGemmParams make_rms_norm_gemm_params(const Tensor* x, const Tensor& residual,
                                            const Tensor& norm_weight, float eps,
                                            const Tensor& normed, const Tensor& w,
                                            const Tensor* bias, const Tensor& y,
                                            const Tensor* conv_weight, const Tensor* conv_bias,
                                            const Tensor* conv_state, const Tensor* conv_y);
DtProjScanStepParams make_dt_proj_scan_step_params(
    const Tensor& dt_low, const Tensor& dt_proj, const Tensor& delta, const Tensor& u,
    const Tensor& A_log, const Tensor& B, const Tensor& C, const Tensor& D, const Tensor* z,
    const Tensor& dt_bias, const Tensor& ssm_state, const Tensor& y);
DtProjImportanceParams make_dt_proj_importance_params(const Tensor& dt_low, const Tensor& dt_proj,
                                                      const Tensor& delta, const Tensor& dt_bias,
                                                      const Tensor& scores);

}  // namespace dm
