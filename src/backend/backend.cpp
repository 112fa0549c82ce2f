// Defaults shared by the backends.
#include "backend/backend.h"

#include <cstring>

#include "core/error.h"

namespace dm {

// A device with its own memory needs a copy; host-memory backends override this with a view.
std::unique_ptr<Buffer> Backend::upload_constant(const void* host, size_t bytes) {
  std::unique_ptr<Buffer> buf = alloc(bytes);
  if (bytes > 0) upload(*buf, 0, host, bytes);
  return buf;
}

uint64_t Backend::download_start(const Buffer& src, size_t offset, size_t bytes) {
  if (bytes > kAsyncDownloadMax)
    fail("[", name(), "] download_start: ", bytes, " bytes, at most ", kAsyncDownloadMax);
  HeldDownload h{next_ticket_++, std::vector<uint8_t>(bytes)};
  download(src, offset, h.bytes.data(), bytes);
  held_downloads_.push_back(std::move(h));
  return held_downloads_.back().ticket;
}

void Backend::download_wait(uint64_t ticket, void* dst) {
  if (held_downloads_.empty() || held_downloads_.front().ticket != ticket)
    fail("[", name(), "] download_wait: ticket ", ticket,
         " is not the oldest download started and not waited for");
  const std::vector<uint8_t>& b = held_downloads_.front().bytes;
  if (!b.empty()) std::memcpy(dst, b.data(), b.size());
  held_downloads_.erase(held_downloads_.begin());
}

// The fusions, composed of the single-kernel methods. Each checks its params first, so
// a bad call fails the same way whether a backend fuses it or not.
void Backend::rms_norm_gemm(const Tensor* x, const Tensor& residual, const Tensor& norm_weight,
                            float eps, const Tensor& normed, const Tensor& w, const Tensor* bias,
                            const Tensor& y) {
  make_rms_norm_gemm_params(x, residual, norm_weight, eps, normed, w, bias, y, nullptr, nullptr,
                            nullptr, nullptr);
  if (x)
    rms_norm(*x, &residual, norm_weight, normed, eps);  // residual += x
  else
    rms_norm(residual, nullptr, norm_weight, normed, eps);
  gemm(normed, w, bias, y);
}

void Backend::rms_norm_gemm_conv_step(const Tensor* x, const Tensor& residual,
                                      const Tensor& norm_weight, float eps, const Tensor& normed,
                                      const Tensor& w, const Tensor* bias, const Tensor& y,
                                      const Tensor& conv_weight, const Tensor* conv_bias,
                                      const Tensor& conv_state, const Tensor& conv_y) {
  make_rms_norm_gemm_params(x, residual, norm_weight, eps, normed, w, bias, y, &conv_weight,
                            conv_bias, &conv_state, &conv_y);
  rms_norm_gemm(x, residual, norm_weight, eps, normed, w, bias, y);
  causal_conv1d_step(y.col_slice(0, conv_y.cols), conv_weight, conv_bias, conv_state, conv_y);
}

void Backend::causal_conv1d_gemm(const Tensor& x, const Tensor& conv_weight,
                                 const Tensor* conv_bias, const Tensor& conv_state,
                                 const Tensor& xc, const Tensor& w, const Tensor& y) {
  make_causal_conv1d_params(x, conv_weight, conv_bias, conv_state, xc);
  make_gemm_params(xc, w, nullptr, y);
  causal_conv1d(x, conv_weight, conv_bias, conv_state, xc);
  gemm(xc, w, nullptr, y);
}

void Backend::selective_scan_gemm(const Tensor& u, const Tensor& delta, const Tensor& A_log,
                                  const Tensor& B, const Tensor& C, const Tensor& D,
                                  const Tensor* z, const Tensor& dt_bias, const Tensor& ssm_state,
                                  const Tensor& y, const Tensor& w, const Tensor* bias,
                                  const Tensor& out) {
  make_selective_scan_params(u, delta, A_log, B, C, D, z, dt_bias, ssm_state, y);
  make_gemm_params(y, w, bias, out);
  selective_scan(u, delta, A_log, B, C, D, z, dt_bias, ssm_state, y);
  gemm(y, w, bias, out);
}

void Backend::dt_proj_scan_step(const Tensor& dt_low, const Tensor& dt_proj, const Tensor& delta,
                                const Tensor& u, const Tensor& A_log, const Tensor& B,
                                const Tensor& C, const Tensor& D, const Tensor* z,
                                const Tensor& dt_bias, const Tensor& ssm_state, const Tensor& y) {
  make_dt_proj_scan_step_params(dt_low, dt_proj, delta, u, A_log, B, C, D, z, dt_bias, ssm_state,
                                y);
  gemm(dt_low, dt_proj, nullptr, delta);
  selective_scan_step(u, delta, A_log, B, C, D, z, dt_bias, ssm_state, y);
}

void Backend::dt_proj_importance(const Tensor& dt_low, const Tensor& dt_proj,
                                 const Tensor& delta, const Tensor& dt_bias,
                                 const Tensor& scores) {
  make_dt_proj_importance_params(dt_low, dt_proj, delta, dt_bias, scores);
  gemm(dt_low, dt_proj, nullptr, delta);
  dt_importance(delta, dt_bias, scores);
}

BlockStepViews block_step_views(const MambaBlockStepArgs& a) {
  const int64_t E = a.xc.cols, R = a.dt_proj.cols, N = a.A_log.cols;
  if (a.xz.cols != 2 * E)
    fail("[mamba_block_step] xz has ", a.xz.cols, " columns, expected 2 · E = ", 2 * E,
         " (E = xc.cols)");
  if (a.x_dbl.cols != R + 2 * N)
    fail("[mamba_block_step] x_dbl has ", a.x_dbl.cols, " columns, expected R + 2N = ", R + 2 * N,
         " (R = dt_proj.cols, N = A_log.cols)");
  return {a.xz.col_slice(E, E), a.x_dbl.col_slice(0, R), a.x_dbl.col_slice(R, N),
          a.x_dbl.col_slice(R + N, N)};
}

void Backend::mamba_block_step(const MambaBlockStepArgs& a) {
  make_mamba_block_step_params(a);  // every shape checked before anything is enqueued
  const BlockStepViews v = block_step_views(a);
  if (a.normed_ready) {  // the previous block's next_norm wrote residual and normed
    gemm(a.normed, a.in_proj, a.in_proj_bias, a.xz);
    causal_conv1d_step(a.xz.col_slice(0, a.xc.cols), a.conv_weight, a.conv_bias, a.conv_state,
                       a.xc);
  } else {
    rms_norm_gemm_conv_step(a.x, a.residual, a.norm_weight, a.eps, a.normed, a.in_proj,
                            a.in_proj_bias, a.xz, a.conv_weight, a.conv_bias, a.conv_state, a.xc);
  }
  gemm(a.xc, a.x_proj, nullptr, a.x_dbl);
  dt_proj_scan_step(v.dt_low, a.dt_proj, a.dt, a.xc, a.A_log, v.B, v.C, a.D, &v.z, a.dt_bias,
                    a.ssm_state, a.y);
  gemm(a.y, a.out_proj, a.out_proj_bias, a.hidden);
  if (a.next_norm) rms_norm(a.hidden, &a.residual, *a.next_norm, a.normed, a.eps);
}

MambaBlockStepParams make_mamba_block_step_params(const MambaBlockStepArgs& a) {
  const BlockStepViews v = block_step_views(a);
  MambaBlockStepParams p{};
  p.front = make_rms_norm_gemm_params(a.x, a.residual, a.norm_weight, a.eps, a.normed, a.in_proj,
                                      a.in_proj_bias, a.xz, &a.conv_weight, a.conv_bias,
                                      &a.conv_state, &a.xc);
  p.x_proj = make_gemm_params(a.xc, a.x_proj, nullptr, a.x_dbl);
  p.scan = make_dt_proj_scan_step_params(v.dt_low, a.dt_proj, a.dt, a.xc, a.A_log, v.B, v.C, a.D,
                                         &v.z, a.dt_bias, a.ssm_state, a.y);
  p.out = make_gemm_params(a.y, a.out_proj, a.out_proj_bias, a.hidden);
  if (a.normed_ready && a.x)
    fail("[mamba_block_step] normed_ready with x set: the previous block's next_norm already "
         "added x into residual");
  if (a.next_norm) {
    p.next_norm = make_rms_norm_params(a.hidden, &a.residual, *a.next_norm, a.normed, a.eps);
    p.has_next_norm = 1;
  }
  return p;
}

RmsNormGemmParams make_rms_norm_gemm_params(const Tensor* x, const Tensor& residual,
                                            const Tensor& norm_weight, float eps,
                                            const Tensor& normed, const Tensor& w,
                                            const Tensor* bias, const Tensor& y,
                                            const Tensor* conv_weight, const Tensor* conv_bias,
                                            const Tensor* conv_state, const Tensor* conv_y) {
  RmsNormGemmParams p{};
  p.norm = x ? make_rms_norm_params(*x, &residual, norm_weight, normed, eps)
             : make_rms_norm_params(residual, nullptr, norm_weight, normed, eps);
  p.gemm = make_gemm_params(normed, w, bias, y);
  const bool any = conv_weight || conv_bias || conv_state || conv_y;
  if (any) {
    if (!conv_weight || !conv_state || !conv_y)
      fail("[rms_norm_gemm_conv_step] conv_weight, conv_state and conv_y are all required");
    if (conv_y->cols > y.cols)
      fail("[rms_norm_gemm_conv_step] conv_y has ", conv_y->cols, " channels but y only ",
           y.cols, " columns (the conv input is y's first C columns)");
    p.conv = make_causal_conv1d_step_params(y.col_slice(0, conv_y->cols), *conv_weight,
                                            conv_bias, *conv_state, *conv_y);
    p.has_conv = 1;
  }
  return p;
}

DtProjScanStepParams make_dt_proj_scan_step_params(
    const Tensor& dt_low, const Tensor& dt_proj, const Tensor& delta, const Tensor& u,
    const Tensor& A_log, const Tensor& B, const Tensor& C, const Tensor& D, const Tensor* z,
    const Tensor& dt_bias, const Tensor& ssm_state, const Tensor& y) {
  DtProjScanStepParams p{};
  p.dt = make_gemm_params(dt_low, dt_proj, nullptr, delta);
  p.scan = make_selective_scan_step_params(u, delta, A_log, B, C, D, z, dt_bias, ssm_state, y);
  return p;
}

DtProjImportanceParams make_dt_proj_importance_params(const Tensor& dt_low, const Tensor& dt_proj,
                                                      const Tensor& delta, const Tensor& dt_bias,
                                                      const Tensor& scores) {
  DtProjImportanceParams p{};
  p.dt = make_gemm_params(dt_low, dt_proj, nullptr, delta);
  p.importance = make_dt_importance_params(delta, dt_bias, scores);
  return p;
}

}  // namespace dm
