// The launchers of the CUDA kernels in cuda/*.cu, one per Backend method (plus the GEMM's
// helpers). Each takes the params struct of params.h (already checked by make_*_params), device
// pointers offset to the tensor's first element, and the stream; it enqueues and returns
// cudaGetLastError(), which the caller checks. Zero-sized work enqueues nothing.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/backend.h"  // MambaBlockStepParams
#include "backend/params.h"

namespace dm::cuda {

// Kernels that find bad input (gather_rows: an index outside the source) record the first
// occurrence here, in mapped host memory, and skip the bad row; the host reports it as a
// dm::Error at the next synchronize() or download().
struct DeviceErrorInfo {
  int32_t code;  // 0: none; kErrGatherIndex
  int32_t pad;
  int64_t a, b, c;  // gather_rows: position i, idx[i], src_rows
};
constexpr int32_t kErrGatherIndex = 1;

// True when this binary holds machine code or PTX the current device can run (probe).
cudaError_t check_kernel_image();

// The tensor-core GEMM's operand (cuda_gemm.cpp): fp32 activations split into hi = x rounded
// to `dtype` (1 F16, 2 BF16, the weights' dtype) and lo = (x - hi) rounded, rows of `cols`
// halves `stride` halves apart, so that W·hi + W·lo keeps ~22 (fp16) / 16 (bf16) bits of x.
// Two layouts (cuda_gemm.cpp operand_layout): an M×K hi plane and an M×K lo plane (stride =
// cols), or rows hi | lo (lo = hi + cols, stride = 2·cols: the K-concatenated operand). lo null:
// hi only (DM_CUDA_FAST_GEMM=1). A kernel that produces activations can write this besides its
// fp32 output (rms_norm, causal_conv1d: the prompt fusions of backend.h), which saves the GEMM a
// conversion pass over them; row r of its launch lands at row r of hi / lo. hi null: none.
struct GemmSplitOut {
  void* hi = nullptr;
  void* lo = nullptr;
  uint32_t dtype = 1;
  uint32_t cols = 0;
  uint32_t stride = 0;
};

// x's M rows of K (out.cols) as the GEMM operand out.
cudaError_t launch_convert_rows(uint32_t M, uint32_t K, const float* x, uint32_t x_stride,
                                const GemmSplitOut& out, cudaStream_t s);
// y = x · wᵀ (+ bias) for M ≤ kGemvMaxM, any weight dtype, fp32 arithmetic.
constexpr uint32_t kGemvMaxM = 8;
cudaError_t launch_gemv_small_m(uint32_t M, uint32_t N, uint32_t K, const float* x,
                                uint32_t x_stride, const void* w, uint32_t w_stride,
                                uint32_t w_dtype, const void* bias, uint32_t bias_dtype, float* y,
                                uint32_t y_stride, cudaStream_t s);
cudaError_t launch_add_bias(uint32_t M, uint32_t N, float* y, uint32_t y_stride, const void* bias,
                            uint32_t bias_dtype, cudaStream_t s);

// split: also write y as the GEMM operand (GemmSplitOut; split.cols = p.D); y may then be null
// (the operand only: a prompt's rms_norm_gemm, whose normed is scratch).
cudaError_t launch_rms_norm(const RmsNormParams& p, const float* x, float* residual,
                            const void* weight, float* y, cudaStream_t s,
                            const GemmSplitOut& split = {});
// Every row and the conv state update.
cudaError_t launch_causal_conv1d(const CausalConv1dParams& p, const float* x, const void* weight,
                                 const void* bias, float* conv_state, float* y, cudaStream_t s);
// The outputs of rows [row0, row0 + rows) only (inputs before row0 come from x, before row 0
// from the conv state), and with split also those rows as the GEMM operand (split.cols =
// p.channels; output row row0 + r at operand row r). The last launch (in row order) whose
// rows' windows reach into the state also replaces it by the last d_conv inputs of x (all L
// rows of x must be written before it), so prompts run in ascending row slices
// (causal_conv1d_gemm) need nothing after the last slice.
cudaError_t launch_causal_conv1d_rows(const CausalConv1dParams& p, const float* x,
                                      const void* weight, const void* bias, float* conv_state,
                                      float* y, uint32_t row0, uint32_t rows,
                                      const GemmSplitOut& split, cudaStream_t s);
// The device scratch launch_selective_scan wants for these params (0: none; the look-back
// scan's per-chunk flags and states, capped: longer prompts run in pieces). With less (or
// none) it runs a kernel that needs none.
size_t selective_scan_scratch_bytes(const SelectiveScanParams& p, const float* u,
                                    const float* delta, const float* B, const float* C,
                                    const float* z, const float* y);
cudaError_t launch_selective_scan(const SelectiveScanParams& p, const float* u,
                                  const float* delta, const void* A_log, const float* B,
                                  const float* C, const void* D, const float* z,
                                  const void* dt_bias, float* ssm_state, float* y,
                                  void* scratch, size_t scratch_bytes, cudaStream_t s);
// selective_scan with its gated output written as out_proj's GEMM operand (GemmSplitOut,
// split.cols = p.channels) instead of y (y not written): a prompt's scan + out_proj
// (cuda_fusions.cpp selective_scan_gemm). cudaErrorNotSupported, nothing launched, where the
// scan that would run cannot write it (selective_scan_v7.cu says where it can).
cudaError_t launch_selective_scan_split(const SelectiveScanParams& p, const float* u,
                                        const float* delta, const void* A_log, const float* B,
                                        const float* C, const void* D, const float* z,
                                        const void* dt_bias, float* ssm_state, float* y,
                                        const GemmSplitOut& split, cudaStream_t s);
cudaError_t launch_dt_importance(const DtImportanceParams& p, const float* delta,
                                 const void* dt_bias, float* scores, cudaStream_t s);
// dt_proj_importance's fused form (cuda/dt_proj_importance.cu: the projection on tensor cores,
// scored without storing delta). cudaErrorNotSupported, nothing launched, where it does not
// apply (F32 weights, dt_rank > 160, a device below sm_80, DM_CUDA_DT_PROJ_IMPORTANCE=0): the
// backend composes gemm + dt_importance then.
cudaError_t launch_dt_proj_importance(const DtProjImportanceParams& p, const float* dt_low,
                                      const void* dt_proj, const void* dt_bias, float* scores,
                                      cudaStream_t s);
cudaError_t launch_topk_indices(const TopkIndicesParams& p, const float* scores, int32_t* idx,
                                cudaStream_t s);
cudaError_t launch_gather_rows(const GatherRowsParams& p, const void* src, const int32_t* idx,
                               float* dst, DeviceErrorInfo* err, cudaStream_t s);
// scratch: kArgmaxScratchBytes, zeroed once (the grid form's per-block maxima and last-block
// counter, which each launch leaves 0 again).
constexpr unsigned kArgmaxMaxBlocks = 1024;
constexpr size_t kArgmaxScratchBytes = kArgmaxMaxBlocks * sizeof(uint64_t) + sizeof(uint64_t);
cudaError_t launch_argmax(const ArgmaxParams& p, const float* x, int32_t* idx, void* scratch,
                          cudaStream_t s);
// Copies bytes (a few hundred at most) by a kernel to mapped_dst, the device address of
// host-mapped page-locked memory (cuda/small_copy.cu: Backend::download_start).
cudaError_t launch_small_copy(const void* src, void* mapped_dst, size_t bytes, cudaStream_t s);
cudaError_t launch_causal_conv1d_step(const CausalConv1dStepParams& p, const float* x,
                                      const void* weight, const void* bias, float* conv_state,
                                      float* y, cudaStream_t s);
cudaError_t launch_selective_scan_step(const SelectiveScanStepParams& p, const float* u,
                                       const float* delta, const void* A_log, const float* B,
                                       const float* C, const void* D, const float* z,
                                       const void* dt_bias, float* ssm_state, float* y,
                                       cudaStream_t s);

// Decode fusions (cuda/fused_step.cu), one row, launched with programmatic dependent launch
// where the device has it (DM_CUDA_PDL=0: plain launches). rms_norm_gemm(_conv_step): rows of up
// to kNormGemvMaxD (the normed row sits in shared memory, under the 48 KiB default); `counter` is one zeroed device word,
// left zero, that no other launch uses concurrently (the stream serialises them). prenormed:
// normed already holds the normed row (rms_norm ran; residual and x are not touched): only the
// GEMV (+ the conv step in its epilogue) runs.
constexpr uint32_t kNormGemvMaxD = 8192;
bool norm_gemv_supported(const RmsNormGemmParams& p);
// The GEMV rows one block group of launch_norm_gemv takes (8 / gemv_k_split: 1, 2, 4 or 8).
int norm_gemv_rows_per_group(const RmsNormGemmParams& p);
// x_proj folded into the conv epilogue (the three-kernel mamba_block_step, cuda/fused_step.cu):
// with J > 0, each group g of norm_gemv_rows_per_group rows that holds conv channels stores
// part[g·J + j] = Σ over its channels c of w[j, c] · xc[c] (w: J×C x_proj, row stride w_stride).
constexpr uint32_t kXProjMaxJ = 256;  // R + 2N: 80 at 130m, 192 at 2.8b
struct XProjPartials {
  const void* w = nullptr;
  float* part = nullptr;
  uint32_t w_stride = 0, w_dtype = 0, J = 0;  // J = 0: none
};
cudaError_t launch_norm_gemv(const RmsNormGemmParams& p, const float* x, float* residual,
                             const void* norm_w, float* normed, const void* w, const void* bias,
                             float* y, const void* conv_w, const void* conv_b, float* conv_state,
                             float* conv_y, unsigned* counter, bool prenormed,
                             const XProjPartials& xp, cudaStream_t s);
// Batch-1 GEMV with RW rows per warp (cuda/gemv_rows.cu): y = x · wᵀ (+ bias), x and y dense
// rows of K and N. Needs K % 8 == 0 and 16-byte aligned rows (gemv_rows_supported). Its block
// shape: KS warps per row (2, 4, 8), RW rows per warp (1, 2, 4); gemv_rows_shape picks it
// (DM_CUDA_GEMV_SHAPE="KSxRW" forces one).
struct GemvShape {
  uint32_t ks = 0, rw = 0;
};
GemvShape gemv_rows_shape(uint32_t N);
bool gemv_rows_supported(uint32_t N, uint32_t K, const float* x, const void* w,
                         uint32_t w_stride, uint32_t w_dtype);
cudaError_t launch_gemv_rows(uint32_t N, uint32_t K, const float* x, const void* w,
                             uint32_t w_stride, uint32_t w_dtype, const void* bias,
                             uint32_t bias_dtype, float* y, cudaStream_t s);
// The decode front with the norm folded into in_proj's GEMV (cuda/gemv_rows.cu, kNorm): y =
// rms_norm(residual (+ x)) · wᵀ (+ bias) for one row without writing the residual or the normed
// row (other blocks still read them), and with conv_channels > 0 the conv step (d_conv 4) of y's
// first conv_channels columns. *scale gets 1 / rms, for the ResidualNormTail of a later kernel.
// Needs K = D, K % 8 == 0, 16-byte aligned rows (w, residual, x, norm_w, conv_state).
struct NormFoldGemvArgs {
  uint32_t N = 0, K = 0, D = 0;
  const float* residual = nullptr;
  const float* x = nullptr;  // null: h = residual (layer 0)
  const void* norm_w = nullptr;
  uint32_t norm_dtype = 0;
  float eps = 0.f;
  const void* w = nullptr;  // N×K, row stride w_stride
  uint32_t w_stride = 0, w_dtype = 0;
  const void* bias = nullptr;  // null when absent
  uint32_t bias_dtype = 0;
  float* y = nullptr;
  float* scale = nullptr;  // one float
  uint32_t conv_channels = 0, conv_d = 0, conv_w_dtype = 0, conv_b_dtype = 0, conv_has_bias = 0;
  const void* conv_w = nullptr;  // conv_channels × 4
  const void* conv_b = nullptr;
  float* conv_state = nullptr;  // conv_channels × 4, advanced by one token
  float* conv_y = nullptr;      // conv_channels: SiLU(conv step)
};
bool norm_fold_gemv_supported(const NormFoldGemvArgs& a);
cudaError_t launch_norm_fold_gemv(const NormFoldGemvArgs& a, cudaStream_t s);
// What the fold leaves to a kernel that runs after it (dt_scan's tail): residual += x (when x),
// normed = (residual · scale) · norm_w, rms_norm.cu's expression with the fold's scale. D = 0: none.
struct ResidualNormTail {
  float* residual = nullptr;
  const float* x = nullptr;
  const void* norm_w = nullptr;
  float* normed = nullptr;
  const float* scale = nullptr;
  uint32_t D = 0, norm_dtype = 0;
};
// dt_proj_scan_step: batch 1, d_state 16; with a tail, also the fold's residual and normed.
bool dt_scan_supported(const DtProjScanStepParams& p);
cudaError_t launch_dt_scan(const DtProjScanStepParams& p, const float* dt_low, const void* dt_proj,
                           float* delta, const float* u, const void* A_log, const float* B,
                           const float* C, const void* D, const float* z, const void* dt_bias,
                           float* ssm_state, float* y, cudaStream_t s,
                           const ResidualNormTail& tail = {});
// The three-kernel mamba_block_step: launch_norm_gemv with XProjPartials (G groups × J
// partials), launch_dt_scan_xp (dt_proj_scan_step that first reduces them, in a fixed order,
// to x_dbl = dt_low | B | C; block 0 also stores x_dbl), then out_proj. xproj_fold_plan: G = 0
// where it does not apply (norm_gemv or dt_scan unsupported, J = R + 2N > kXProjMaxJ, more than
// partial_bytes of partials, or more than 16 KB of them for one dt_scan block to reduce: 2.8b).
// The partials area: kDecodePartialBytes of device memory that only these launches use.
constexpr size_t kDecodePartialBytes = size_t(1) << 20;
struct XProjPlan {
  uint32_t G = 0, J = 0;
  uint32_t cluster = 1;  // dt_scan blocks that share the reduction (a thread-block cluster, sm_90)
};
struct XProjReduce {
  const float* part = nullptr;
  float* x_dbl = nullptr;
  uint32_t G = 0, J = 0;
};
XProjPlan xproj_fold_plan(const MambaBlockStepParams& p, size_t partial_bytes);
cudaError_t launch_dt_scan_xp(const DtProjScanStepParams& p, const XProjPlan& plan,
                              const XProjReduce& xr, const void* dt_proj, float* delta,
                              const float* u, const void* A_log, const void* D, const float* z,
                              const void* dt_bias, float* ssm_state, float* y, cudaStream_t s);

// mamba_block_step (cuda/mamba_block_step.cu): a whole Mamba block of a decode step, one row,
// as one kernel whose blocks exchange values through `exchange` (kDecodeExchangeBytes of device
// memory that start at zero, that only these launches use (the stream serialises them) and that
// each leaves fit for the next: never reset), launched with PDL. Supported:
// mamba_block_step_supported (batch 1, d_state 16, d_conv 4, d_model ≤ 1024, one weight dtype
// for the four matrices, in_proj / out_proj rows of 16-byte multiples at 16-byte aligned
// addresses, each block's weight slice within shared memory: 130m-class widths).
constexpr size_t kDecodeExchangeBytes = size_t(2) << 20;
// Its last kDecodeTraceWords u64 words: DM_CUDA_DECODE_BLOCK_TRACE=1's records, kDecodeTraceSlots
// launches (slot = epoch mod slots) × 2 blocks (0 and the last) × 16 words (%globaltimer at the
// kernel's stamps, cuda/mamba_block_step.cu; word 15 the launch's epoch).
constexpr uint32_t kDecodeTraceSlots = 64;
constexpr uint32_t kDecodeTraceWords = kDecodeTraceSlots * 2 * 16;
struct MambaBlockStepPtrs {
  const float* x;  // null at layer 0
  float* residual;
  const void* norm_w;
  float* normed;
  const void *in_proj, *in_bias;  // in_bias: null when absent
  float* xz;
  const void *conv_w, *conv_b;
  float *conv_state, *xc;
  const void* x_proj;
  float* x_dbl;
  const void* dt_proj;
  float* dt;
  const void *A_log, *D, *dt_bias;
  float *ssm_state, *y;
  const void *out_proj, *out_bias;
  float* hidden;
};
bool mamba_block_step_supported(const MambaBlockStepParams& p, const MambaBlockStepPtrs& a);
cudaError_t launch_mamba_block_step(const MambaBlockStepParams& p, const MambaBlockStepPtrs& a,
                                    void* exchange, cudaStream_t s);

}  // namespace dm::cuda
