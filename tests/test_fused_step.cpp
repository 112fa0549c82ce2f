// The decode fusions of Backend (rms_norm_gemm, rms_norm_gemm_conv_step, dt_proj_scan_step,
// mamba_block_step: the whole block, CUDA's one-kernel path forced on and off) on
// every backend, CPU included, against their default composition (Backend::…, the single-kernel
// methods in order) on the CPU backend: the same random inputs (never zeros), real widths
// (d_model 768 / 2560, d_inner 1536 / 5120, the 50280-row LM head) and odd ones, aligned and
// unaligned tensors (a few lead elements shift every tensor off 16 bytes: the vector paths
// then step aside), each call made twice in a row (the residual update and the recurrent states
// advance twice; CUDA's last-block counter must reset).
//
// Every tensor lives in its own buffer: lead elements, the rows at their stride, then a tail.
// Padding holds NaN in inputs and a sentinel in outputs; after the calls every padding byte and
// every input byte must be unchanged, and outputs within NMSE tolerance of the CPU composition.
// On the CPU backend the fused methods are the composition itself (a check of the harness and
// of the defaults' argument plumbing); on CUDA they are the fused kernels (cuda/fused_step.cu);
// on Vulkan the composition on the device.
//
// Tolerance 1e-8 NMSE: both sides are fp32; sums are reassociated (GEMV over K ≤ 2560, dt over
// R, the norm in double) and device exp/log differ by a few ulp (test_backend_ops's reasoning).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/vulkan/vulkan_backend.h"
#ifdef DM_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif
#include "backend_cache.h"
#include "backend_ops_harness.h"
#include "core/dtype.h"
#include "core/error.h"

namespace dm {
namespace {

using test::Arg;
using test::Case;
using test::Role;

constexpr double kTol = 1e-8;

// The CPU backend and every device backend this machine has; DM_FUSED_TEST_BACKENDS=cuda (a
// comma-separated list) narrows it, e.g. for compute-sanitizer.
// Vulkan's fused decode shaders depend on the width by default: "vulkan:fused" runs the Vulkan
// backend with them forced on (DM_VULKAN_FUSED_STEP=1), "vulkan" forced off (the compositions),
// "vulkan:fused:oldgemv" with the old decode kernels (DM_VULKAN_GEMV=old:
// gemm.small_m_vec_conv, selective_scan_step.dt_proj).
std::vector<std::string> backends_under_test() {
  std::vector<std::string> out = {"cpu"};
  for (const std::string& b : test::device_backends()) {
    out.push_back(b);
    if (b == "vulkan") {
      out.push_back("vulkan:fused");
      out.push_back("vulkan:fused:oldgemv");
    }
  }
  if (const char* e = std::getenv("DM_FUSED_TEST_BACKENDS")) {
    const std::string want = std::string(",") + e + ",";
    std::vector<std::string> kept;
    for (const std::string& b : out)
      if (want.find("," + b.substr(0, b.find(':')) + ",") != std::string::npos) kept.push_back(b);
    return kept;
  }
  return out;
}

// The backend of a backends_under_test() entry, with DM_VULKAN_FUSED_STEP set for its cases.
class BackendEntry {
 public:
  explicit BackendEntry(const std::string& entry)
      : name_(entry.substr(0, entry.find(':'))), fused_(entry.find(":fused") != std::string::npos),
        old_gemv_(entry.find(":oldgemv") != std::string::npos) {
    setenv("DM_VULKAN_FUSED_STEP", fused_ ? "1" : "0", 1);  // whatever the default is
    if (old_gemv_) setenv("DM_VULKAN_GEMV", "old", 1);
  }
  ~BackendEntry() {
    unsetenv("DM_VULKAN_FUSED_STEP");
    if (old_gemv_) unsetenv("DM_VULKAN_GEMV");
  }
  const std::string& name() const { return name_; }
  std::string label() const {
    return std::string(fused_ ? "fused shaders: " : "") + (old_gemv_ ? "old gemv: " : "");
  }

 private:
  std::string name_;
  bool fused_, old_gemv_;
};

// DM_CUDA_TEST_SMALL=1 keeps the cases up to 130m widths (racecheck is slow).
bool small_only() { return std::getenv("DM_CUDA_TEST_SMALL") != nullptr; }

std::string dt(DType t) { return std::string(dtype_name(t)); }

struct NormGemmCase {
  int64_t D, N, C;  // C > 0: with the conv step of the first C outputs (d_conv 4)
  DType w_dtype;
  bool has_x, bias, conv_bias;
  int64_t lead;  // 0: 16-byte aligned tensors; else every tensor shifted by `lead` elements
};

TEST(FusedStep, RmsNormGemm) {
  const std::vector<NormGemmCase> cases = {
      {768, 3072, 1536, DType::F16, true, false, true, 0},     // 130m in_proj + conv
      {768, 3072, 1536, DType::F16, false, false, true, 0},    // layer 0: no x
      {2560, 10240, 5120, DType::F16, true, false, true, 0},   // 2.8b in_proj + conv
      {2560, 10240, 5120, DType::BF16, true, true, true, 3},   // unaligned: scalar paths
      {768, 50280, 0, DType::F16, true, false, false, 0},      // 130m LM head
      {2560, 50280, 0, DType::BF16, true, false, false, 0},    // 2.8b LM head
      {1024, 4096, 2048, DType::F32, true, true, false, 0},    // F32 weights, biases
      {100, 150, 75, DType::F16, true, true, true, 0},         // K not a multiple of 8
      {264, 333, 100, DType::F32, false, false, false, 1},     // odd, unaligned
      {1, 5, 2, DType::F32, true, false, true, 0},             // D = 1
      // Short rows: Vulkan's gemm.gemv(_conv) reduces them inside part of a subgroup (few pieces):
      {32, 200, 100, DType::F16, true, true, true, 0},         // 4 pieces, + conv, biases
      {48, 300, 0, DType::BF16, true, false, false, 0},        // 6 pieces, no conv
      {64, 130, 0, DType::F16, false, true, false, 0},         // no x: residual unchanged
  };
  for (const std::string& entry : backends_under_test())
    for (size_t i = 0; i < cases.size(); ++i) {
      const BackendEntry be(entry);
      const NormGemmCase& g = cases[i];
      if (small_only() && (g.D > 1024 || g.N > 4096)) continue;
      const int64_t D = g.D, N = g.N, C = g.C, d = 4;
      std::ostringstream desc;
      desc << be.label() << "rms_norm_gemm" << (C ? "_conv_step" : "") << " D=" << D << " N=" << N
           << " C=" << C << " w=" << dt(g.w_dtype) << " x=" << g.has_x << " bias=" << g.bias
           << " conv_bias=" << g.conv_bias << " lead=" << g.lead;
      Case c(be.name(), desc.str(), 3000 + uint32_t(i));
      c.set_lead(g.lead);
      Arg* x = g.has_x ? &c.add("x", Role::In, DType::F32, 1, D, D, c.nonzero(0.1f, 2.f)) : nullptr;
      Arg& res = c.add("residual", g.has_x ? Role::InOut : Role::In, DType::F32, 1, D, D,
                       c.nonzero(0.1f, 2.f));
      Arg& nw = c.add("norm_weight", Role::In, g.w_dtype, 1, D, D, c.nonzero(0.5f, 1.5f));
      Arg& normed = c.add("normed", Role::Out, DType::F32, 1, D, D, nullptr);
      const float ws = 1.7f / std::sqrt(float(D));
      Arg& w = c.add("w", Role::In, g.w_dtype, N, D, D, c.nonzero(0.1f * ws, ws));
      Arg* b = g.bias ? &c.add("bias", Role::In, g.w_dtype, 1, N, N, c.nonzero(0.1f, 1.f)) : nullptr;
      Arg& y = c.add("y", Role::Out, DType::F32, 1, N, N, nullptr);
      Arg *cw = nullptr, *cb = nullptr, *cs = nullptr, *cy = nullptr;
      if (C) {
        cw = &c.add("conv_weight", Role::In, g.w_dtype, C, d, d, c.nonzero(0.1f, 0.6f));
        if (g.conv_bias) cb = &c.add("conv_bias", Role::In, g.w_dtype, 1, C, C, c.nonzero(0.1f, 0.5f));
        cs = &c.add("conv_state", Role::InOut, DType::F32, C, d, d, c.nonzero(0.1f, 1.f));
        cy = &c.add("conv_y", Role::Out, DType::F32, 1, C, C, nullptr);
      }
      for (int rep = 0; rep < 2; ++rep) {
        Tensor xr, xd, br, bd, cbr, cbd;
        if (x) xr = x->cpu(), xd = x->dev();
        if (b) br = b->cpu(), bd = b->dev();
        if (cb) cbr = cb->cpu(), cbd = cb->dev();
        if (C) {
          c.cpu().Backend::rms_norm_gemm_conv_step(x ? &xr : nullptr, res.cpu(), nw.cpu(), 1e-5f,
                                                   normed.cpu(), w.cpu(), b ? &br : nullptr,
                                                   y.cpu(), cw->cpu(), cb ? &cbr : nullptr,
                                                   cs->cpu(), cy->cpu());
          c.dev().rms_norm_gemm_conv_step(x ? &xd : nullptr, res.dev(), nw.dev(), 1e-5f,
                                          normed.dev(), w.dev(), b ? &bd : nullptr, y.dev(),
                                          cw->dev(), cb ? &cbd : nullptr, cs->dev(), cy->dev());
        } else {
          c.cpu().Backend::rms_norm_gemm(x ? &xr : nullptr, res.cpu(), nw.cpu(), 1e-5f,
                                         normed.cpu(), w.cpu(), b ? &br : nullptr, y.cpu());
          c.dev().rms_norm_gemm(x ? &xd : nullptr, res.dev(), nw.dev(), 1e-5f, normed.dev(),
                                w.dev(), b ? &bd : nullptr, y.dev());
        }
      }
      c.check(kTol);
    }
}

struct DtScanCase {
  int64_t C, R, N;
  DType w_dtype;  // dt_proj, A_log, D, dt_bias
  bool z;
  int64_t lead;
};

TEST(FusedStep, DtProjScanStep) {
  const std::vector<DtScanCase> cases = {
      {1536, 48, 16, DType::F16, true, 0},    // 130m
      {5120, 160, 16, DType::F16, true, 0},   // 2.8b: R > 128 (weights past the prefetch)
      {5120, 160, 16, DType::BF16, false, 3}, // no gate, unaligned
      {2048, 128, 16, DType::F32, true, 0},   // 1.4b
      {100, 7, 16, DType::F32, true, 1},      // odd
      {33, 20, 8, DType::F16, true, 0},       // d_state 8: not fused on CUDA (the composition)
  };
  for (const std::string& entry : backends_under_test())
    for (size_t i = 0; i < cases.size(); ++i) {
      const BackendEntry be(entry);
      const DtScanCase& s = cases[i];
      if (small_only() && s.C > 2048) continue;
      const int64_t C = s.C, R = s.R, N = s.N, W = R + 2 * N;
      std::ostringstream desc;
      desc << be.label() << "dt_proj_scan_step C=" << C << " R=" << R << " N=" << N << " w=" << dt(s.w_dtype)
           << " z=" << s.z << " lead=" << s.lead;
      Case c(be.name(), desc.str(), 4000 + uint32_t(i));
      c.set_lead(s.lead);
      // x_dbl = dt_low | B | C, as the executor slices it.
      Arg& x_dbl = c.add("x_dbl", Role::In, DType::F32, 1, W, W, c.nonzero(0.05f, 1.f));
      const float ws = 1.f / std::sqrt(float(R));
      Arg& dtw = c.add("dt_proj", Role::In, s.w_dtype, C, R, R, c.nonzero(0.1f * ws, ws));
      Arg& delta = c.add("delta", Role::Out, DType::F32, 1, C, C, nullptr);
      Arg& u = c.add("u", Role::In, DType::F32, 1, C, C, c.nonzero(0.1f, 2.f));
      Arg& al = c.add("A_log", Role::In, s.w_dtype, C, N, N, c.uniform(0.f, 2.77f));
      Arg& Dv = c.add("D", Role::In, s.w_dtype, 1, C, C, c.nonzero(0.5f, 1.5f));
      Arg* z = s.z ? &c.add("z", Role::In, DType::F32, 1, C, C, c.nonzero(0.1f, 2.f)) : nullptr;
      Arg& db = c.add("dt_bias", Role::In, s.w_dtype, 1, C, C, c.uniform(-4.5f, -2.f));
      Arg& st = c.add("ssm_state", Role::InOut, DType::F32, C, N, N, c.nonzero(0.01f, 1.f));
      Arg& y = c.add("y", Role::Out, DType::F32, 1, C, C, nullptr);
      for (int rep = 0; rep < 2; ++rep) {
        Tensor zr, zd;
        if (z) zr = z->cpu(), zd = z->dev();
        const Tensor xr = x_dbl.cpu(), xd = x_dbl.dev();
        c.cpu().Backend::dt_proj_scan_step(xr.col_slice(0, R), dtw.cpu(), delta.cpu(), u.cpu(),
                                           al.cpu(), xr.col_slice(R, N), xr.col_slice(R + N, N),
                                           Dv.cpu(), z ? &zr : nullptr, db.cpu(), st.cpu(),
                                           y.cpu());
        c.dev().dt_proj_scan_step(xd.col_slice(0, R), dtw.dev(), delta.dev(), u.dev(), al.dev(),
                                  xd.col_slice(R, N), xd.col_slice(R + N, N), Dv.dev(),
                                  z ? &zd : nullptr, db.dev(), st.dev(), y.dev());
      }
      c.check(kTol);
    }
}

struct BlockCase {
  int64_t D, E, R, N;  // d_model, d_inner, dt_rank, d_state (d_conv 4)
  DType w_dtype;       // every weight
  bool has_x, biases;  // biases: in_proj and out_proj (conv bias always)
  bool alias;          // hidden written into x's buffer, as Executor::enqueue_step calls it
  int64_t lead;
};

// One block's tensors in a Case (mamba_block_step's arguments), random as the tests want them.
struct BlockArgs {
  BlockArgs(Case& c, const BlockCase& b) {
    c.set_lead(b.lead);
    const int64_t D = b.D, E = b.E, R = b.R, N = b.N, d = 4, W = R + 2 * N;
    const DType wt = b.w_dtype;
    x = b.has_x ? &c.add("x", b.alias ? Role::InOut : Role::In, DType::F32, 1, D, D,
                         c.nonzero(0.1f, 2.f))
                : nullptr;
    res = &c.add("residual", b.has_x ? Role::InOut : Role::In, DType::F32, 1, D, D,
                 c.nonzero(0.1f, 2.f));
    nw = &c.add("norm_weight", Role::In, wt, 1, D, D, c.nonzero(0.5f, 1.5f));
    normed = &c.add("normed", Role::Out, DType::F32, 1, D, D, nullptr);
    const float s_in = 1.7f / std::sqrt(float(D)), s_x = 1.f / std::sqrt(float(E)),
                s_dt = 1.f / std::sqrt(float(R));
    in_w = &c.add("in_proj", Role::In, wt, 2 * E, D, D, c.nonzero(0.1f * s_in, s_in));
    in_b = b.biases ? &c.add("in_proj_bias", Role::In, wt, 1, 2 * E, 2 * E, c.nonzero(0.1f, 1.f))
                    : nullptr;
    xz = &c.add("xz", Role::Out, DType::F32, 1, 2 * E, 2 * E, nullptr);
    cw = &c.add("conv_weight", Role::In, wt, E, d, d, c.nonzero(0.1f, 0.6f));
    cb = &c.add("conv_bias", Role::In, wt, 1, E, E, c.nonzero(0.1f, 0.5f));
    cs = &c.add("conv_state", Role::InOut, DType::F32, E, d, d, c.nonzero(0.1f, 1.f));
    xc = &c.add("xc", Role::Out, DType::F32, 1, E, E, nullptr);
    xp = &c.add("x_proj", Role::In, wt, W, E, E, c.nonzero(0.1f * s_x, s_x));
    x_dbl = &c.add("x_dbl", Role::Out, DType::F32, 1, W, W, nullptr);
    dtw = &c.add("dt_proj", Role::In, wt, E, R, R, c.nonzero(0.1f * s_dt, s_dt));
    delta = &c.add("dt", Role::Out, DType::F32, 1, E, E, nullptr);
    al = &c.add("A_log", Role::In, wt, E, N, N, c.uniform(0.f, 2.77f));
    Dv = &c.add("D", Role::In, wt, 1, E, E, c.nonzero(0.5f, 1.5f));
    db = &c.add("dt_bias", Role::In, wt, 1, E, E, c.uniform(-4.5f, -2.f));
    st = &c.add("ssm_state", Role::InOut, DType::F32, E, N, N, c.nonzero(0.01f, 1.f));
    y = &c.add("y", Role::Out, DType::F32, 1, E, E, nullptr);
    out_w = &c.add("out_proj", Role::In, wt, D, E, E, c.nonzero(0.1f * s_x, s_x));
    out_b = b.biases ? &c.add("out_proj_bias", Role::In, wt, 1, D, D, c.nonzero(0.1f, 1.f))
                     : nullptr;
    hidden = b.alias ? x : &c.add("hidden", Role::Out, DType::F32, 1, D, D, nullptr);
  }
  Arg *x, *res, *nw, *normed, *in_w, *in_b, *xz, *cw, *cb, *cs, *xc, *xp, *x_dbl, *dtw, *delta,
      *al, *Dv, *db, *st, *y, *out_w, *out_b, *hidden;
};

// BlockArgs' tensors on the CPU or the device side, as mamba_block_step's arguments (which
// point at the optional tensors held here).
struct BlockTensors {
  BlockTensors(const BlockArgs& g, bool cpu) {
    auto t = [cpu](const Arg* arg) { return arg ? (cpu ? arg->cpu() : arg->dev()) : Tensor{}; };
    xt = t(g.x), cbt = t(g.cb), in_bt = t(g.in_b), out_bt = t(g.out_b);
    a.x = g.x ? &xt : nullptr;
    a.residual = t(g.res), a.norm_weight = t(g.nw), a.eps = 1e-5f, a.normed = t(g.normed);
    a.in_proj = t(g.in_w), a.in_proj_bias = g.in_b ? &in_bt : nullptr, a.xz = t(g.xz);
    a.conv_weight = t(g.cw), a.conv_bias = &cbt, a.conv_state = t(g.cs), a.xc = t(g.xc);
    a.x_proj = t(g.xp), a.x_dbl = t(g.x_dbl), a.dt_proj = t(g.dtw), a.dt = t(g.delta);
    a.A_log = t(g.al), a.D = t(g.Dv), a.dt_bias = t(g.db), a.ssm_state = t(g.st), a.y = t(g.y);
    a.out_proj = t(g.out_w), a.out_proj_bias = g.out_b ? &out_bt : nullptr;
    a.hidden = t(g.hidden);
  }
  BlockTensors(const BlockTensors&) = delete;
  Tensor xt, cbt, in_bt, out_bt;
  MambaBlockStepArgs a;
};

// mamba_block_step against its composition; CUDA in its four forms (DM_CUDA_DECODE_FORM=1: one
// kernel, =3: x_proj folded into the kernels around it, =4: x_proj a GEMV of its own, =5: form 4
// with the norm folded into in_proj; a form that does not take the shapes steps aside:
// block_step_form must say =3 at the odd widths and, on sm_90, at 130m's, =5 for the other
// aligned d_state-16 cases, =4 elsewhere); Vulkan (the
// fused-shader entry) with its three-dispatch form (DM_VULKAN_BLOCK_STEP=3: x_proj's slices
// from the in_proj work groups, summed in the scan step) and its four-dispatch form (=4: x_proj
// a GEMV of its own), each of which must record exactly that many
// dispatches where it applies (16-byte aligned tensors, lead 0), and the composition (=0).
TEST(FusedStep, MambaBlockStep) {
  const std::vector<BlockCase> cases = {
      {768, 1536, 48, 16, DType::F16, true, false, true, 0},     // 130m, the executor's call
      {768, 1536, 48, 16, DType::F16, false, false, false, 0},   // 130m layer 0: no x
      {2560, 5120, 160, 16, DType::F16, true, false, true, 0},   // 2.8b: the composition (too wide for the one kernel)
      {2560, 5120, 160, 16, DType::BF16, true, true, false, 0},  // 2.8b BF16, biases
      {1024, 2048, 64, 16, DType::F32, true, true, true, 0},     // F32 weights, biases
      {264, 520, 20, 16, DType::F16, true, true, true, 0},       // odd widths (multiples of 8)
      {264, 520, 20, 16, DType::BF16, true, false, false, 3},    // unaligned: the composition
      {100, 200, 7, 8, DType::F32, true, true, false, 1},        // d_state 8, K % 8: composition
  };
  for (const std::string& entry : backends_under_test()) {
    const BackendEntry be(entry);
    const bool vk_block = be.name() == "vulkan" && entry == "vulkan:fused";
    const char* block_env = be.name() == "cuda" ? "DM_CUDA_DECODE_FORM" : "DM_VULKAN_BLOCK_STEP";
    const std::vector<const char*> settings =
        be.name() == "cuda" ? std::vector<const char*>{"1", "3", "4", "5"}
        : vk_block          ? std::vector<const char*>{"3", "4", "0"}
                            : std::vector<const char*>{nullptr};
    for (const char* block : settings)
      for (size_t i = 0; i < cases.size(); ++i) {
        const BlockCase& b = cases[i];
        if (small_only() && b.D > 1024) continue;
        if (block) setenv(block_env, block, 1);
        const int64_t D = b.D, E = b.E, R = b.R, N = b.N;
        std::ostringstream desc;
        desc << be.label() << "mamba_block_step" << (block ? std::string(" block=") + block : "")
             << " D=" << D << " E=" << E << " R=" << R << " N=" << N << " w=" << dt(b.w_dtype)
             << " x=" << b.has_x << " biases=" << b.biases << " alias=" << b.alias
             << " lead=" << b.lead;
        Case c(be.name(), desc.str(), 5000 + uint32_t(i));
        BlockArgs args(c, b);
        for (int rep = 0; rep < 2; ++rep) {
          for (const bool cpu : {true, false}) {
            const BlockTensors bt(args, cpu);
            const MambaBlockStepArgs& a = bt.a;
            if (cpu) {
              c.cpu().Backend::mamba_block_step(a);
              continue;
            }
            VulkanStats s0{}, s1{};
            const bool vk = vulkan_stats(c.dev(), &s0);
            c.dev().mamba_block_step(a);
#ifdef DM_HAVE_CUDA
            // The form each setting must take. Form 5 (the norm folded into in_proj) takes every
            // aligned d_state-16 case, 3 where its partials fit (setting 1 is not asserted here).
            if (auto* cb = dynamic_cast<CudaBackend*>(&c.dev()); cb && std::string(block) != "1") {
              const std::string f = block;
              const bool form5 = b.lead == 0 && b.N == 16;
              int major = 0;  // 130m's partials need sm_90's clusters to share the reduction
              cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
              const bool form3 = f == "3" && (b.D == 264 || (b.D == 768 && major >= 9));
              const int want = form3 ? 3 : (f != "4" && form5) ? 5 : 4;
              EXPECT_EQ(cb->block_step_form(a), want) << desc.str();
            }
#endif
            if (vk_block && b.lead == 0 && std::string(block) != "0") {
              ASSERT_TRUE(vk && vulkan_stats(c.dev(), &s1));
              EXPECT_EQ(s1.dispatches - s0.dispatches, uint64_t(std::atoi(block))) << desc.str();
            }
          }
        }
        c.check(kTol);
        if (block) unsetenv(block_env);
      }
  }
}

// The norm moved across the layer boundary (MambaBlockStepArgs::next_norm, normed_ready): a
// block with x that ends with the next norm, then a block that starts from that normed row
// and ends with another norm, twice, against the CPU's composition of the same calls. Vulkan
// runs next_norm inside out_proj's last work group (gemm.gemv_norm_tail: the counter it resets
// is checked by the second round) and, with its fused shaders on and aligned tensors, the two
// blocks in 5 and 4 dispatches; decode_norm_tail must say yes where gemm.gemv runs (not with the
// old decode kernels) with DM_VULKAN_NORM_TAIL=1, and no on the CPU and CUDA (whose in_proj
// folds the norm instead). The fused-shader Vulkan entry runs again with 2 and 4 rows of W per
// GEMV slot (DM_VULKAN_GEMV_RW: gemm.gemv_conv_rw*, gemm.gemv_rw*, gemm.gemv_norm_tail_rw*).
TEST(FusedStep, NormAcrossLayers) {
  const std::vector<BlockCase> cases = {
      {2560, 5120, 160, 16, DType::F16, true, false, true, 0},  // 2.8b, the executor's call
      {768, 1536, 48, 16, DType::BF16, true, true, false, 0},   // 130m widths, biases
      {264, 520, 20, 16, DType::F32, true, true, true, 3},      // unaligned: gemm + rms_norm
  };
  setenv("DM_VULKAN_NORM_TAIL", "1", 1);
  for (const std::string& entry : backends_under_test()) {
    // The fused-shader Vulkan entry also with 2 and 4 rows of W per GEMV slot (gemm.gemv*_rw*).
    const std::vector<const char*> rws = entry == "vulkan:fused"
                                             ? std::vector<const char*>{"1", "2", "4"}
                                             : std::vector<const char*>{"1"};
    for (const char* rw : rws) {
      setenv("DM_VULKAN_GEMV_RW", rw, 1);
      const BackendEntry be(entry);
      for (size_t i = 0; i < cases.size(); ++i) {
        const BlockCase& b = cases[i];
        if (small_only() && b.D > 1024) continue;
        std::ostringstream desc;
        desc << be.label() << "mamba_block_step next_norm rw=" << rw << " D=" << b.D << " E=" << b.E
             << " R=" << b.R << " N=" << b.N << " w=" << dt(b.w_dtype) << " biases=" << b.biases
             << " alias=" << b.alias << " lead=" << b.lead;
        Case c(be.name(), desc.str(), 6000 + uint32_t(i));
        BlockArgs args(c, b);
        Arg& nw2 = c.add("next_norm_a", Role::In, b.w_dtype, 1, b.D, b.D, c.nonzero(0.5f, 1.5f));
        Arg& nw3 = c.add("next_norm_b", Role::In, b.w_dtype, 1, b.D, b.D, c.nonzero(0.5f, 1.5f));
        const bool count = entry == "vulkan:fused" && b.lead == 0;
        for (int rep = 0; rep < 2; ++rep)
          for (const bool cpu : {true, false}) {
            Backend& dev = cpu ? c.cpu() : c.dev();
            for (const bool second : {false, true}) {
              BlockTensors bt(args, cpu);
              MambaBlockStepArgs& a = bt.a;
              if (second) a.x = nullptr, a.normed_ready = true;
              if (!cpu && !second && rep == 0) {
                const bool gemv = entry.find(":oldgemv") == std::string::npos;  // gemm.gemv's tail
                EXPECT_EQ(dev.decode_norm_tail(a), be.name() == "vulkan" && gemv && b.lead == 0)
                    << desc.str();
              }
              const Tensor next = cpu ? (second ? nw3 : nw2).cpu() : (second ? nw3 : nw2).dev();
              a.next_norm = &next;
              if (cpu) {
                dev.Backend::mamba_block_step(a);
                continue;
              }
              VulkanStats s0{}, s1{};
              const bool vk = vulkan_stats(dev, &s0);
              dev.mamba_block_step(a);
              if (count) {
                ASSERT_TRUE(vk && vulkan_stats(dev, &s1));
                EXPECT_EQ(s1.dispatches - s0.dispatches, second ? 4u : 5u) << desc.str();
              }
            }
          }
        c.check(kTol);
      }
      unsetenv("DM_VULKAN_GEMV_RW");
    }
  }
  unsetenv("DM_VULKAN_NORM_TAIL");
}

// Bad calls fail in the shared checks, the same way on every backend.
TEST(FusedStep, BadShapesThrow) {
  for (const std::string& entry : backends_under_test()) {
    const BackendEntry which(entry);
    const std::string& name = entry;
    Backend& be = test::cached_backend(which.name());
    auto buf = be.alloc(1 << 16);
    auto t = [&](int64_t rows, int64_t cols, DType d = DType::F32) { return make_tensor(*buf, d, rows, cols); };
    // y narrower than the conv's channels.
    EXPECT_THROW(be.rms_norm_gemm_conv_step(nullptr, t(1, 8), t(1, 8), 1e-5f, t(1, 8), t(4, 8),
                                            nullptr, t(1, 4), t(6, 4), nullptr, t(6, 4), t(1, 6)),
                 Error)
        << name;
    // w's K differs from D.
    EXPECT_THROW(be.rms_norm_gemm(nullptr, t(1, 8), t(1, 8), 1e-5f, t(1, 8), t(4, 9), nullptr,
                                  t(1, 4)),
                 Error)
        << name;
    // delta's width differs from dt_proj's rows.
    EXPECT_THROW(be.dt_proj_scan_step(t(1, 4), t(8, 4), t(1, 7), t(1, 8), t(8, 16), t(1, 16),
                                      t(1, 16), t(1, 8), nullptr, t(1, 8), t(8, 16), t(1, 8)),
                 Error)
        << name;
    // x_dbl narrower than R + 2N: fails before anything is enqueued.
    MambaBlockStepArgs m;
    m.residual = t(1, 8), m.norm_weight = t(1, 8), m.normed = t(1, 8), m.in_proj = t(32, 8);
    m.xz = t(1, 32), m.conv_weight = t(16, 4), m.conv_state = t(16, 4), m.xc = t(1, 16);
    m.x_proj = t(35, 16), m.x_dbl = t(1, 35), m.dt_proj = t(16, 4), m.dt = t(1, 16);
    m.A_log = t(16, 16), m.D = t(1, 16), m.dt_bias = t(1, 16), m.ssm_state = t(16, 16);
    m.y = t(1, 16), m.out_proj = t(8, 16), m.hidden = t(1, 8);
    EXPECT_THROW(be.mamba_block_step(m), Error) << name;
    // A well-formed block, but normed_ready with x set (x would be added twice), and a next_norm
    // narrower than d_model.
    m.x_proj = t(36, 16), m.x_dbl = t(1, 36);
    EXPECT_NO_THROW(make_mamba_block_step_params(m)) << name;  // the shapes themselves pass
    const Tensor x = t(1, 8), narrow = t(1, 7);
    m.x = &x, m.normed_ready = true;
    EXPECT_THROW(be.mamba_block_step(m), Error) << name;
    m.x = nullptr, m.normed_ready = false, m.next_norm = &narrow;
    EXPECT_THROW(be.mamba_block_step(m), Error) << name;
  }
}

}  // namespace
}  // namespace dm
