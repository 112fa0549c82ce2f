// The prompt fusions of Backend (backend.h): rms_norm_gemm over many rows (a prompt's norm +
// in_proj), causal_conv1d_gemm (a prompt's conv + x_proj), dt_proj_importance (a decimating
// layer's dt_proj + scores; delta is scratch) and selective_scan_gemm (a prompt's
// scan + out_proj; on CUDA at d_inner 1536 the v7u scan writes the GEMM's operand into y's
// memory, so y is scratch there and only out and the state are compared), on every backend, against their
// default composition (Backend::…, the single-kernel methods in order) on the CPU backend. On
// CUDA with F16 / BF16 weights these are the fused paths: the norm / conv kernel writes the
// tensor-core GEMM's hi / lo operand in row slices (cuda_gemm.cpp gemm_tensor_cores), so the
// cases cut the rows into slices (DM_CUDA_GEMM_SLICE) that end inside a conv window and leave a
// last slice of 1-2 rows (rms_norm's few-row kernel) besides the default single slice.
// Elsewhere (CPU, Vulkan, F32 weights) the composition runs on the device: a check of the
// plumbing. Random inputs (never zeros), real widths (d_model 768, d_inner 1536, x_proj's 80
// outputs), the conv input a column slice of xz as in a layer (its z columns are NaN padding
// here: a read of them fails), each call made twice (the residual and the conv state advance).
//
// Tolerance 1e-8 NMSE, as test_fused_step: both sides fp32 (the GEMM's hi / lo split keeps
// ~22 bits of x, NMSE ~1e-12), sums reassociated, device exp a few ulp off.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend_cache.h"
#include "backend_ops_harness.h"
#include "core/dtype.h"

namespace dm {
namespace {

using test::Arg;
using test::Case;
using test::Role;

constexpr double kTol = 1e-8;

std::vector<std::string> backends_under_test() {
  std::vector<std::string> out = {"cpu"};
  for (const std::string& b : test::device_backends()) out.push_back(b);
  return out;
}

// DM_CUDA_GEMM_SLICE for one case (0: the default, unset).
class SliceRows {
 public:
  explicit SliceRows(int64_t rows) {
    if (rows > 0) setenv("DM_CUDA_GEMM_SLICE", std::to_string(rows).c_str(), 1);
  }
  ~SliceRows() { unsetenv("DM_CUDA_GEMM_SLICE"); }
};

std::string dt(DType t) { return std::string(dtype_name(t)); }

// Each case runs twice: the GEMM weight allocated and uploaded (Role::In), then as the model's
// weights are, by upload_constant (Role::Weight), where CUDA's GEMM may use a K-concatenated copy
// of it (one GEMM over the operand's hi | lo rows instead of two: cuda_gemm.cpp).
Role weight_role(size_t i) { return i % 2 ? Role::Weight : Role::In; }
const char* role_name(Role r) { return r == Role::Weight ? "constant" : "uploaded"; }

// The GEMM's weight (N×K) as `role`, scaled so outputs stay O(1) for inputs of O(1).
Arg& add_gemm_weight(Case& c, Role role, DType dtype, int64_t N, int64_t K) {
  const float ws = 1.7f / std::sqrt(float(K));
  return c.add("w", role, dtype, N, K, K, c.nonzero(0.1f * ws, ws));
}

struct NormCase {
  int64_t L, D, N;
  DType w_dtype;
  bool has_x, bias;
  int64_t slice;  // DM_CUDA_GEMM_SLICE; 0: default
  int64_t lead;
};

TEST(PromptFusions, RmsNormGemm) {
  const std::vector<NormCase> cases = {
      {1000, 768, 3072, DType::F16, true, false, 0, 0},     // 130m in_proj, one slice
      {1000, 768, 3072, DType::F16, false, false, 0, 0},    // layer 0: no x
      {1001, 768, 3072, DType::BF16, true, true, 333, 0},   // slices of 333, a last one of 2
      {4097, 768, 512, DType::F16, true, false, 1024, 3},   // unaligned, last slice of 1
      {9, 64, 40, DType::F16, true, true, 0, 0},            // the fewest rows past the GEMV
      {300, 100, 72, DType::F32, true, true, 0, 0},         // F32 weights: composition
  };
  for (const std::string& backend : backends_under_test())
    for (size_t i = 0; i < 2 * cases.size(); ++i) {
      const NormCase& g = cases[i / 2];
      const Role w_role = weight_role(i);
      const SliceRows slice(g.slice);
      const int64_t L = g.L, D = g.D, N = g.N;
      std::ostringstream desc;
      desc << "rms_norm_gemm L=" << L << " D=" << D << " N=" << N << " w=" << dt(g.w_dtype)
           << " x=" << g.has_x << " bias=" << g.bias << " slice=" << g.slice << " lead=" << g.lead;
      desc << " w_role=" << role_name(w_role);
      Case c(backend, desc.str(), 7000 + uint32_t(i));
      c.set_lead(g.lead);
      Arg* x = g.has_x ? &c.add("x", Role::In, DType::F32, L, D, D, c.nonzero(0.1f, 2.f)) : nullptr;
      Arg& res = c.add("residual", g.has_x ? Role::InOut : Role::In, DType::F32, L, D, D,
                       c.nonzero(0.1f, 2.f));
      Arg& nw = c.add("norm_weight", Role::In, g.w_dtype, 1, D, D, c.nonzero(0.5f, 1.5f));
      // normed is scratch (backend.h): the CUDA fusion feeds the GEMM without writing it.
      Arg& normed = c.add("normed", Role::Scratch, DType::F32, L, D, D, nullptr);
      Arg& w = add_gemm_weight(c, w_role, g.w_dtype, N, D);
      Arg* b = g.bias ? &c.add("bias", Role::In, g.w_dtype, 1, N, N, c.nonzero(0.1f, 1.f)) : nullptr;
      Arg& y = c.add("y", Role::Out, DType::F32, L, N, N, nullptr);
      for (int rep = 0; rep < 2; ++rep) {
        Tensor xr, xd, br, bd;
        if (x) xr = x->cpu(), xd = x->dev();
        if (b) br = b->cpu(), bd = b->dev();
        c.cpu().Backend::rms_norm_gemm(x ? &xr : nullptr, res.cpu(), nw.cpu(), 1e-5f,
                                       normed.cpu(), w.cpu(), b ? &br : nullptr, y.cpu());
        c.dev().rms_norm_gemm(x ? &xd : nullptr, res.dev(), nw.dev(), 1e-5f, normed.dev(),
                              w.dev(), b ? &bd : nullptr, y.dev());
      }
      c.check(kTol);
    }
}

struct ConvCase {
  int64_t L, E, N, d_conv;
  DType w_dtype;
  bool conv_bias;
  int64_t slice;
  int64_t lead;
};

TEST(PromptFusions, CausalConv1dGemm) {
  const std::vector<ConvCase> cases = {
      {1000, 1536, 80, 4, DType::F16, true, 0, 0},     // 130m conv + x_proj, one slice
      {1001, 1536, 80, 4, DType::BF16, true, 333, 0},  // slices of 333 (windows span them), last 2
      {2050, 256, 40, 4, DType::F16, false, 1024, 3},  // unaligned, last slice of 2
      {700, 96, 24, 3, DType::F16, true, 250, 0},      // d_conv 3: the generic conv kernel
      {2, 64, 16, 4, DType::F16, true, 0, 0},          // L < d_conv: the GEMV path, state shifts
      {300, 128, 32, 4, DType::F32, true, 0, 0},       // F32 weights: composition
  };
  for (const std::string& backend : backends_under_test())
    for (size_t i = 0; i < 2 * cases.size(); ++i) {
      const ConvCase& g = cases[i / 2];
      const Role w_role = weight_role(i);
      const SliceRows slice(g.slice);
      const int64_t L = g.L, E = g.E, N = g.N, d = g.d_conv;
      std::ostringstream desc;
      desc << "causal_conv1d_gemm L=" << L << " E=" << E << " N=" << N << " d_conv=" << d
           << " w=" << dt(g.w_dtype) << " conv_bias=" << g.conv_bias << " slice=" << g.slice
           << " lead=" << g.lead;
      desc << " w_role=" << role_name(w_role);
      Case c(backend, desc.str(), 7100 + uint32_t(i));
      c.set_lead(g.lead);
      // x: the first E columns of an (L, 2E) xz; the other E are padding (NaN).
      Arg& x = c.add("x", Role::In, DType::F32, L, E, 2 * E, c.nonzero(0.1f, 2.f));
      Arg& cw = c.add("conv_weight", Role::In, g.w_dtype, E, d, d, c.nonzero(0.1f, 0.6f));
      Arg* cb = g.conv_bias ? &c.add("conv_bias", Role::In, g.w_dtype, 1, E, E, c.nonzero(0.1f, 0.5f))
                            : nullptr;
      Arg& cs = c.add("conv_state", Role::InOut, DType::F32, E, d, d, c.nonzero(0.1f, 1.f));
      Arg& xc = c.add("xc", Role::Out, DType::F32, L, E, E, nullptr);
      Arg& w = add_gemm_weight(c, w_role, g.w_dtype, N, E);
      Arg& y = c.add("y", Role::Out, DType::F32, L, N, N, nullptr);
      for (int rep = 0; rep < 2; ++rep) {
        Tensor cbr, cbd;
        if (cb) cbr = cb->cpu(), cbd = cb->dev();
        c.cpu().Backend::causal_conv1d_gemm(x.cpu(), cw.cpu(), cb ? &cbr : nullptr, cs.cpu(),
                                            xc.cpu(), w.cpu(), y.cpu());
        c.dev().causal_conv1d_gemm(x.dev(), cw.dev(), cb ? &cbd : nullptr, cs.dev(), xc.dev(),
                                   w.dev(), y.dev());
      }
      c.check(kTol);
    }
}

struct ScanGemmCase {
  int64_t L, E, N;
  DType w_dtype;
  bool z, bias;
};

TEST(PromptFusions, SelectiveScanGemm) {
  const std::vector<ScanGemmCase> cases = {
      {1000, 1536, 768, DType::F16, true, false},   // 130m scan + out_proj: CUDA's fused path
      {4097, 1536, 768, DType::BF16, true, true},   // a ragged last chunk, BF16, bias
      {63, 1536, 96, DType::F16, true, false},      // one partial chunk
      {300, 256, 64, DType::F16, true, false},      // narrow: the composition everywhere
      {200, 1536, 48, DType::F32, false, false},    // F32 weights, no z: composition
  };
  for (const std::string& backend : backends_under_test())
    for (size_t i = 0; i < 2 * cases.size(); ++i) {
      const ScanGemmCase& g = cases[i / 2];
      const Role w_role = weight_role(i);
      const int64_t L = g.L, E = g.E, N = g.N, S = 16;
      std::ostringstream desc;
      desc << "selective_scan_gemm L=" << L << " E=" << E << " N=" << N << " w=" << dt(g.w_dtype)
           << " z=" << g.z << " bias=" << g.bias;
      desc << " w_role=" << role_name(w_role);
      Case c(backend, desc.str(), 7200 + uint32_t(i));
      c.set_lead(0);  // 16-byte aligned rows: what the executor's buffers are, what v7 needs
      Arg& u = c.add("u", Role::In, DType::F32, L, E, E, c.nonzero(0.1f, 2.f));
      Arg& delta = c.add("delta", Role::In, DType::F32, L, E, E, c.uniform(-3.f, 1.5f));
      Arg& A_log = c.add("A_log", Role::In, DType::F32, E, S, S, c.uniform(0.f, 2.77f));
      Arg& B = c.add("B", Role::In, DType::F32, L, S, S, c.nonzero(0.1f, 1.f));
      Arg& C = c.add("C", Role::In, DType::F32, L, S, S, c.nonzero(0.1f, 1.f));
      Arg& D = c.add("D", Role::In, DType::F32, 1, E, E, c.nonzero(0.5f, 1.5f));
      Arg* z = g.z ? &c.add("z", Role::In, DType::F32, L, E, E, c.nonzero(0.1f, 3.f)) : nullptr;
      Arg& dt_bias = c.add("dt_bias", Role::In, DType::F32, 1, E, E, c.uniform(-4.5f, -2.f));
      Arg& state = c.add("ssm_state", Role::InOut, DType::F32, E, S, S, c.nonzero(0.01f, 1.f));
      Arg& y = c.add("y", Role::Scratch, DType::F32, L, E, E, nullptr);
      Arg& w = add_gemm_weight(c, w_role, g.w_dtype, N, E);
      Arg* b = g.bias ? &c.add("bias", Role::In, g.w_dtype, 1, N, N, c.nonzero(0.1f, 1.f)) : nullptr;
      Arg& out = c.add("out", Role::Out, DType::F32, L, N, N, nullptr);
      for (int rep = 0; rep < 2; ++rep) {
        Tensor zc, zd, bc, bd;
        if (z) zc = z->cpu(), zd = z->dev();
        if (b) bc = b->cpu(), bd = b->dev();
        c.cpu().Backend::selective_scan_gemm(u.cpu(), delta.cpu(), A_log.cpu(), B.cpu(), C.cpu(),
                                             D.cpu(), z ? &zc : nullptr, dt_bias.cpu(),
                                             state.cpu(), y.cpu(), w.cpu(), b ? &bc : nullptr,
                                             out.cpu());
        c.dev().selective_scan_gemm(u.dev(), delta.dev(), A_log.dev(), B.dev(), C.dev(), D.dev(),
                                    z ? &zd : nullptr, dt_bias.dev(), state.dev(), y.dev(),
                                    w.dev(), b ? &bd : nullptr, out.dev());
      }
      c.check(kTol);
    }
}

struct ImportanceCase {
  int64_t L, E, R;
  DType w_dtype;
  int64_t extra;  // x_dbl's columns past dt_low (B | C): dt_low is a column slice
  int64_t lead;
};

// A decimating layer's scores from dt_low (backend.h dt_proj_importance; delta is scratch). On
// CUDA with F16 / BF16 weights and dt_rank <= 160 the fused tensor-core kernel
// (cuda/dt_proj_importance.cu); elsewhere the composition.
TEST(PromptFusions, DtProjImportance) {
  const std::vector<ImportanceCase> cases = {
      {2049, 1536, 48, DType::F16, 32, 0},   // 130m: 32 tokens past a block multiple
      {300, 5120, 160, DType::BF16, 32, 0},  // 2.8b: ten k steps, BF16
      {1000, 2048, 64, DType::F16, 32, 3},   // 370m, unaligned rows
      {1, 100, 5, DType::F16, 0, 0},         // one token, rank < 16, C not a chunk multiple
      {77, 70, 17, DType::BF16, 3, 1},       // rank 17: two k steps, the second mostly padding
      {300, 256, 48, DType::F32, 32, 0},     // F32 weights: composition
      {100, 128, 200, DType::F16, 0, 0},     // rank > 160: composition
  };
  for (const std::string& backend : backends_under_test())
    for (size_t i = 0; i < 2 * cases.size(); ++i) {
      const ImportanceCase& g = cases[i / 2];
      const Role w_role = weight_role(i);
      const int64_t L = g.L, E = g.E, R = g.R;
      std::ostringstream desc;
      desc << "dt_proj_importance L=" << L << " E=" << E << " R=" << R << " w=" << dt(g.w_dtype)
           << " dt_low_stride=" << R + g.extra << " lead=" << g.lead;
      desc << " w_role=" << role_name(w_role);
      Case c(backend, desc.str(), 7300 + uint32_t(i));
      c.set_lead(g.lead);
      Arg& dt_low = c.add("dt_low", Role::In, DType::F32, L, R, R + g.extra, c.nonzero(0.05f, 1.f));
      Arg& w = add_gemm_weight(c, w_role, g.w_dtype, E, R);
      Arg& delta = c.add("delta", Role::Scratch, DType::F32, L, E, E, nullptr);
      Arg& bias = c.add("dt_bias", Role::In, g.w_dtype, 1, E, E, c.uniform(-4.5f, -2.f));
      Arg& scores = c.add("scores", Role::Out, DType::F32, L, 1, 1, nullptr);
      c.cpu().Backend::dt_proj_importance(dt_low.cpu(), w.cpu(), delta.cpu(), bias.cpu(),
                                          scores.cpu());
      c.dev().dt_proj_importance(dt_low.dev(), w.dev(), delta.dev(), bias.dev(), scores.dev());
      c.check(kTol);
    }
}

// The selection a 32K-token decimating 130m layer makes from those scores: top 2000 of the first
// L - 64 (per-token offsets in dt_low spread the scores). The kept set and its order must be the
// CPU composition's exactly, so a fused projection that rounds differently may not reorder
// scores that a real layer would keep apart.
TEST(PromptFusions, DtProjImportanceTopkSelection) {
  constexpr int64_t L = 32768, E = 1536, R = 48, n_cand = L - 64, k = 2000;
  for (const std::string& backend : backends_under_test()) {
    Case c(backend, "dt_proj_importance + topk_indices L=32768 E=1536 R=48 k=2000", 7400);
    c.align16();
    std::vector<float> offset(L);
    for (float& o : offset) o = std::uniform_real_distribution<float>(-0.5f, 0.5f)(c.rng());
    const test::Gen u = c.uniform(-1.f, 1.f);
    Arg& dt_low = c.add("dt_low", Role::In, DType::F32, L, R, R + 32,
                        [&](int64_t r, int64_t col) { return u(r, col) + offset[size_t(r)]; });
    Arg& w = add_gemm_weight(c, Role::Weight, DType::F16, E, R);
    Arg& delta = c.add("delta", Role::Scratch, DType::F32, L, E, E, nullptr);
    Arg& bias = c.add("dt_bias", Role::In, DType::F16, 1, E, E, c.uniform(-4.5f, -2.f));
    Arg& scores = c.add("scores", Role::Out, DType::F32, L, 1, 1, nullptr);
    Arg& idx = c.add("idx", Role::Out, DType::I32, k + L - n_cand, 1, 1, nullptr);
    c.cpu().Backend::dt_proj_importance(dt_low.cpu(), w.cpu(), delta.cpu(), bias.cpu(),
                                        scores.cpu());
    c.cpu().topk_indices(scores.cpu(), n_cand, k, idx.cpu());
    c.dev().dt_proj_importance(dt_low.dev(), w.dev(), delta.dev(), bias.dev(), scores.dev());
    c.dev().topk_indices(scores.dev(), n_cand, k, idx.dev());
    c.check(kTol);  // idx (I32) exactly
  }
}

}  // namespace
}  // namespace dm
