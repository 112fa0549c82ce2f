// Shape checks shared by every backend. Each message names the kernel, the argument and its
// description, and what was expected, so a bad executor call reads the same on CPU, Vulkan
// and CUDA.
#include "backend/params.h"

#include <limits>
#include <string>

#include "core/error.h"

namespace dm {
namespace {

constexpr int64_t kU32Max = std::numeric_limits<uint32_t>::max();

uint32_t u32(const char* kernel, const char* what, int64_t v) {
  if (v < 0 || v > kU32Max)
    fail("[", kernel, "] ", what, " = ", v, ": does not fit the kernel's uint32 parameters");
  return uint32_t(v);
}

// Every tensor: has a buffer, non-negative shape, stride >= cols, aligned offset, lies inside
// its buffer, and its sizes fit the uint32 fields of the params structs.
void check_view(const char* kernel, const char* name, const Tensor& t) {
  if (!t.buf) fail("[", kernel, "] ", name, " ", t.describe(), ": has no buffer");
  if (t.rows < 0 || t.cols < 0) fail("[", kernel, "] ", name, " ", t.describe(), ": negative shape");
  if (t.row_stride < t.cols)
    fail("[", kernel, "] ", name, " ", t.describe(), ": row stride is smaller than cols");
  if (t.offset % dtype_size(t.dtype) != 0)
    fail("[", kernel, "] ", name, " ", t.describe(), ": offset ", t.offset,
         " is not a multiple of the element size");
  if (t.offset + t.span_bytes() > t.buf->bytes())
    fail("[", kernel, "] ", name, " ", t.describe(), ": offset ", t.offset, " + ", t.span_bytes(),
         " bytes runs past the end of its ", t.buf->bytes(), "-byte buffer");
  if (t.rows > kU32Max || t.row_stride > kU32Max)
    fail("[", kernel, "] ", name, " ", t.describe(), ": does not fit the kernel's uint32 parameters");
}

void check_dtype(const char* kernel, const char* name, const Tensor& t, DType want) {
  if (t.dtype != want)
    fail("[", kernel, "] ", name, " ", t.describe(), ": expected dtype ", dtype_name(want));
}

void check_float(const char* kernel, const char* name, const Tensor& t) {
  if (t.dtype == DType::I32)
    fail("[", kernel, "] ", name, " ", t.describe(), ": expected a float dtype (F32, F16 or BF16)");
}

void check_shape(const char* kernel, const char* name, const Tensor& t, int64_t rows, int64_t cols,
                 const std::string& why) {
  if (t.rows != rows || t.cols != cols)
    fail("[", kernel, "] ", name, " ", t.describe(), ": expected ", rows, " x ", cols, " (", why, ")");
}

// Params carry no stride for these: the kernel indexes them as one dense array.
void check_contiguous(const char* kernel, const char* name, const Tensor& t) {
  if (t.rows > 1 && t.row_stride != t.cols)
    fail("[", kernel, "] ", name, " ", t.describe(), ": must be contiguous (row stride == cols)");
}

// A vector of n elements: 1 x n, or n x 1 with unit stride. Either way element i lies i
// elements after the offset.
void check_vector(const char* kernel, const char* name, const Tensor& t, int64_t n,
                  const std::string& why) {
  const bool row = t.rows == 1 && t.cols == n;
  const bool col = t.cols == 1 && t.rows == n && (n <= 1 || t.row_stride == 1);
  if (!row && !col)
    fail("[", kernel, "] ", name, " ", t.describe(), ": expected a vector of ", n, " (", why,
         "): 1 x ", n, ", or ", n, " x 1 with stride 1");
}

// A valid F32 vector of any length (1 x n, or n x 1 with stride 1); returns n.
int64_t check_f32_vector(const char* kernel, const char* name, const Tensor& t,
                         const std::string& why) {
  check_view(kernel, name, t);
  check_dtype(kernel, name, t, DType::F32);
  const int64_t n = t.rows * t.cols;
  check_vector(kernel, name, t, n, why);
  return n;
}

// Activation matrix: F32, rows x cols, any stride >= cols.
void check_act(const char* kernel, const char* name, const Tensor& t, int64_t rows, int64_t cols,
               const std::string& why) {
  check_view(kernel, name, t);
  check_dtype(kernel, name, t, DType::F32);
  check_shape(kernel, name, t, rows, cols, why);
}

void check_weight_vector(const char* kernel, const char* name, const Tensor& t, int64_t n,
                         const std::string& why) {
  check_view(kernel, name, t);
  check_float(kernel, name, t);
  check_vector(kernel, name, t, n, why);
}

// State: F32, dense, rows x cols.
void check_state(const char* kernel, const char* name, const Tensor& t, int64_t rows, int64_t cols,
                 const std::string& why) {
  check_view(kernel, name, t);
  check_dtype(kernel, name, t, DType::F32);
  check_shape(kernel, name, t, rows, cols, why);
  check_contiguous(kernel, name, t);
}

std::string dims(const char* a, int64_t av, const char* b, int64_t bv) {
  return std::string(a) + " = " + std::to_string(av) + ", " + b + " = " + std::to_string(bv);
}

}  // namespace

GemmParams make_gemm_params(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) {
  const char* k = "gemm";
  check_view(k, "x", x);
  check_dtype(k, "x", x, DType::F32);
  check_view(k, "w", w);
  check_float(k, "w", w);
  if (w.cols != x.cols)
    fail("[gemm] x ", x.describe(), " and w ", w.describe(), ": x.cols != w.cols (K)");
  check_act(k, "y", y, x.rows, w.rows, dims("M = x.rows", x.rows, "N = w.rows", w.rows));
  if (bias) check_weight_vector(k, "bias", *bias, w.rows, "N = w.rows");
  GemmParams p{};
  p.M = u32(k, "M", x.rows);
  p.N = u32(k, "N", w.rows);
  p.K = u32(k, "K", x.cols);
  p.x_stride = u32(k, "x stride", x.row_stride);
  p.w_stride = u32(k, "w stride", w.row_stride);
  p.y_stride = u32(k, "y stride", y.row_stride);
  p.w_dtype = uint32_t(w.dtype);
  p.bias_dtype = bias ? uint32_t(bias->dtype) : uint32_t(DType::F32);
  p.has_bias = bias ? 1 : 0;
  return p;
}

RmsNormParams make_rms_norm_params(const Tensor& x, const Tensor* residual, const Tensor& weight,
                                   const Tensor& y, float eps) {
  const char* k = "rms_norm";
  check_view(k, "x", x);
  check_dtype(k, "x", x, DType::F32);
  const std::string why = dims("L = x.rows", x.rows, "D = x.cols", x.cols);
  if (residual) check_act(k, "residual", *residual, x.rows, x.cols, why);
  check_act(k, "y", y, x.rows, x.cols, why);
  check_weight_vector(k, "weight", weight, x.cols, "D = x.cols");
  if (!(eps >= 0.f)) fail("[rms_norm] eps = ", eps, ": expected a non-negative number");
  RmsNormParams p{};
  p.L = u32(k, "L", x.rows);
  p.D = u32(k, "D", x.cols);
  p.x_stride = u32(k, "x stride", x.row_stride);
  p.residual_stride = residual ? u32(k, "residual stride", residual->row_stride) : 0;
  p.y_stride = u32(k, "y stride", y.row_stride);
  p.weight_dtype = uint32_t(weight.dtype);
  p.has_residual = residual ? 1 : 0;
  p.eps = eps;
  return p;
}

CausalConv1dParams make_causal_conv1d_params(const Tensor& x, const Tensor& weight,
                                             const Tensor* bias, const Tensor& conv_state,
                                             const Tensor& y) {
  const char* k = "causal_conv1d";
  check_view(k, "x", x);
  check_dtype(k, "x", x, DType::F32);
  check_view(k, "weight", weight);
  check_float(k, "weight", weight);
  if (weight.rows != x.cols || weight.cols < 1)
    fail("[causal_conv1d] weight ", weight.describe(), " and x ", x.describe(),
         ": expected weight channels x d_conv with channels = x.cols and d_conv >= 1");
  check_contiguous(k, "weight", weight);
  const std::string why = dims("channels = x.cols", x.cols, "d_conv = weight.cols", weight.cols);
  check_state(k, "conv_state", conv_state, x.cols, weight.cols, why);
  check_act(k, "y", y, x.rows, x.cols, dims("L = x.rows", x.rows, "channels = x.cols", x.cols));
  if (bias) check_weight_vector(k, "bias", *bias, x.cols, "channels = x.cols");
  CausalConv1dParams p{};
  p.L = u32(k, "L", x.rows);
  p.channels = u32(k, "channels", x.cols);
  p.d_conv = u32(k, "d_conv", weight.cols);
  p.x_stride = u32(k, "x stride", x.row_stride);
  p.y_stride = u32(k, "y stride", y.row_stride);
  p.weight_dtype = uint32_t(weight.dtype);
  p.bias_dtype = bias ? uint32_t(bias->dtype) : uint32_t(DType::F32);
  p.has_bias = bias ? 1 : 0;
  return p;
}

namespace {

// Shared by the prefill scan (rows = L) and the step scan (rows = batch, state rows =
// batch · channels). Checks every input; returns the sizes the struct needs.
struct ScanShape {
  int64_t rows, channels, d_state;
};

ScanShape check_scan(const char* k, const Tensor& u, const Tensor& delta, const Tensor& A_log,
                     const Tensor& B, const Tensor& C, const Tensor& D, const Tensor* z,
                     const Tensor& dt_bias, const Tensor& ssm_state, int64_t state_batch) {
  check_view(k, "u", u);
  check_dtype(k, "u", u, DType::F32);
  const int64_t rows = u.rows, ch = u.cols;
  check_view(k, "A_log", A_log);
  check_float(k, "A_log", A_log);
  if (A_log.rows != ch || A_log.cols < 1)
    fail("[", k, "] A_log ", A_log.describe(), " and u ", u.describe(),
         ": expected A_log channels x d_state with channels = u.cols and d_state >= 1");
  check_contiguous(k, "A_log", A_log);
  const int64_t n = A_log.cols;
  const std::string act = dims("rows = u.rows", rows, "channels = u.cols", ch);
  const std::string bc = dims("rows = u.rows", rows, "d_state = A_log.cols", n);
  check_act(k, "delta", delta, rows, ch, act);
  check_act(k, "B", B, rows, n, bc);
  check_act(k, "C", C, rows, n, bc);
  if (z) check_act(k, "z", *z, rows, ch, act);
  check_weight_vector(k, "D", D, ch, "channels = u.cols");
  check_weight_vector(k, "dt_bias", dt_bias, ch, "channels = u.cols");
  check_state(k, "ssm_state", ssm_state, state_batch * ch, n,
              dims("state rows", state_batch * ch, "d_state = A_log.cols", n));
  return {rows, ch, n};
}

// The fields the prefill scan and the decode-step scan share (all but L / batch).
template <typename P>
void fill_scan_fields(P& p, const char* k, const ScanShape& s, const Tensor& u,
                      const Tensor& delta, const Tensor& A_log, const Tensor& B, const Tensor& C,
                      const Tensor& D, const Tensor* z, const Tensor& dt_bias, const Tensor& y) {
  p.channels = u32(k, "channels", s.channels);
  p.d_state = u32(k, "d_state", s.d_state);
  p.u_stride = u32(k, "u stride", u.row_stride);
  p.delta_stride = u32(k, "delta stride", delta.row_stride);
  p.B_stride = u32(k, "B stride", B.row_stride);
  p.C_stride = u32(k, "C stride", C.row_stride);
  p.z_stride = z ? u32(k, "z stride", z->row_stride) : 0;
  p.y_stride = u32(k, "y stride", y.row_stride);
  p.A_log_dtype = uint32_t(A_log.dtype);
  p.D_dtype = uint32_t(D.dtype);
  p.dt_bias_dtype = uint32_t(dt_bias.dtype);
  p.has_z = z ? 1 : 0;
}

}  // namespace

SelectiveScanParams make_selective_scan_params(const Tensor& u, const Tensor& delta,
                                               const Tensor& A_log, const Tensor& B,
                                               const Tensor& C, const Tensor& D, const Tensor* z,
                                               const Tensor& dt_bias, const Tensor& ssm_state,
                                               const Tensor& y) {
  const char* k = "selective_scan";
  const ScanShape s = check_scan(k, u, delta, A_log, B, C, D, z, dt_bias, ssm_state, 1);
  check_act(k, "y", y, s.rows, s.channels, dims("L = u.rows", s.rows, "channels = u.cols", s.channels));
  SelectiveScanParams p{};
  p.L = u32(k, "L", s.rows);
  fill_scan_fields(p, k, s, u, delta, A_log, B, C, D, z, dt_bias, y);
  return p;
}

DtImportanceParams make_dt_importance_params(const Tensor& delta, const Tensor& dt_bias,
                                             const Tensor& scores) {
  const char* k = "dt_importance";
  check_view(k, "delta", delta);
  check_dtype(k, "delta", delta, DType::F32);
  check_weight_vector(k, "dt_bias", dt_bias, delta.cols, "channels = delta.cols");
  check_view(k, "scores", scores);
  check_dtype(k, "scores", scores, DType::F32);
  check_vector(k, "scores", scores, delta.rows, "L = delta.rows");
  DtImportanceParams p{};
  p.L = u32(k, "L", delta.rows);
  p.channels = u32(k, "channels", delta.cols);
  p.delta_stride = u32(k, "delta stride", delta.row_stride);
  p.dt_bias_dtype = uint32_t(dt_bias.dtype);
  return p;
}

TopkIndicesParams make_topk_indices_params(const Tensor& scores, int64_t n_candidates, int64_t k,
                                           const Tensor& idx) {
  const char* kn = "topk_indices";
  const int64_t L = check_f32_vector(kn, "scores", scores, "L scores");
  if (n_candidates < 0 || n_candidates > L)
    fail("[topk_indices] scores ", scores.describe(), ": n_candidates = ", n_candidates,
         " must lie in [0, L = ", L, "]");
  if (k < 0 || k > n_candidates)
    fail("[topk_indices] scores ", scores.describe(), ": k = ", k,
         " must lie in [0, n_candidates = ", n_candidates, "]");
  check_view(kn, "idx", idx);
  check_dtype(kn, "idx", idx, DType::I32);
  const int64_t out = k + L - n_candidates;
  check_vector(kn, "idx", idx, out,
               "k + L - n_candidates = " + std::to_string(k) + " + " + std::to_string(L) + " - " +
                   std::to_string(n_candidates));
  // Indices are stored as int32.
  if (L > std::numeric_limits<int32_t>::max())
    fail("[topk_indices] scores ", scores.describe(), ": L does not fit int32 indices");
  TopkIndicesParams p{};
  p.L = u32(kn, "L", L);
  p.n_candidates = u32(kn, "n_candidates", n_candidates);
  p.k = u32(kn, "k", k);
  return p;
}

GatherRowsParams make_gather_rows_params(const Tensor& src, const Tensor& idx, const Tensor& dst) {
  const char* k = "gather_rows";
  check_view(k, "src", src);
  check_float(k, "src", src);
  check_view(k, "idx", idx);
  check_dtype(k, "idx", idx, DType::I32);
  const int64_t n = idx.rows * idx.cols;
  check_vector(k, "idx", idx, n, "the row indices");
  check_act(k, "dst", dst, n, src.cols, dims("n = idx length", n, "cols = src.cols", src.cols));
  GatherRowsParams p{};
  p.n = u32(k, "n", n);
  p.cols = u32(k, "cols", src.cols);
  p.src_rows = u32(k, "src rows", src.rows);
  p.src_stride = u32(k, "src stride", src.row_stride);
  p.dst_stride = u32(k, "dst stride", dst.row_stride);
  p.src_dtype = uint32_t(src.dtype);
  return p;
}

ArgmaxParams make_argmax_params(const Tensor& x, int64_t n, const Tensor& idx) {
  const char* k = "argmax";
  const int64_t len = check_f32_vector(k, "x", x, "a vector of values");
  if (n < 1 || n > len)
    fail("[argmax] x ", x.describe(), ": n = ", n, " must lie in [1, ", len, "]");
  if (n > std::numeric_limits<int32_t>::max())
    fail("[argmax] x ", x.describe(), ": n does not fit an int32 index");
  check_view(k, "idx", idx);
  check_dtype(k, "idx", idx, DType::I32);
  check_vector(k, "idx", idx, 1, "one index");
  ArgmaxParams p{};
  p.n = u32(k, "n", n);
  return p;
}

CausalConv1dStepParams make_causal_conv1d_step_params(const Tensor& x, const Tensor& weight,
                                                      const Tensor* bias,
                                                      const Tensor& conv_state, const Tensor& y) {
  const char* k = "causal_conv1d_step";
  check_view(k, "x", x);
  check_dtype(k, "x", x, DType::F32);
  check_view(k, "weight", weight);
  check_float(k, "weight", weight);
  if (weight.rows != x.cols || weight.cols < 1)
    fail("[causal_conv1d_step] weight ", weight.describe(), " and x ", x.describe(),
         ": expected weight channels x d_conv with channels = x.cols and d_conv >= 1");
  check_contiguous(k, "weight", weight);
  check_state(k, "conv_state", conv_state, x.rows * x.cols, weight.cols,
              dims("batch * channels = x.rows * x.cols", x.rows * x.cols, "d_conv = weight.cols",
                   weight.cols));
  check_act(k, "y", y, x.rows, x.cols, dims("batch = x.rows", x.rows, "channels = x.cols", x.cols));
  if (bias) check_weight_vector(k, "bias", *bias, x.cols, "channels = x.cols");
  CausalConv1dStepParams p{};
  p.batch = u32(k, "batch", x.rows);
  p.channels = u32(k, "channels", x.cols);
  p.d_conv = u32(k, "d_conv", weight.cols);
  p.x_stride = u32(k, "x stride", x.row_stride);
  p.y_stride = u32(k, "y stride", y.row_stride);
  p.weight_dtype = uint32_t(weight.dtype);
  p.bias_dtype = bias ? uint32_t(bias->dtype) : uint32_t(DType::F32);
  p.has_bias = bias ? 1 : 0;
  return p;
}

SelectiveScanStepParams make_selective_scan_step_params(const Tensor& u, const Tensor& delta,
                                                        const Tensor& A_log, const Tensor& B,
                                                        const Tensor& C, const Tensor& D,
                                                        const Tensor* z, const Tensor& dt_bias,
                                                        const Tensor& ssm_state, const Tensor& y) {
  const char* k = "selective_scan_step";
  const ScanShape s = check_scan(k, u, delta, A_log, B, C, D, z, dt_bias, ssm_state, u.rows);
  check_act(k, "y", y, s.rows, s.channels,
            dims("batch = u.rows", s.rows, "channels = u.cols", s.channels));
  SelectiveScanStepParams p{};
  p.batch = u32(k, "batch", s.rows);
  fill_scan_fields(p, k, s, u, delta, A_log, B, C, D, z, dt_bias, y);
  return p;
}

}  // namespace dm
