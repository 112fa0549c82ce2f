// Every kernel of every non-CPU backend this binary has (vulkan today, cuda later) against the
// CPU backend, the oracle, on the same random inputs (never zeros) over a table of shapes: the
// real Mamba widths (1536, 2048, 4096, 5120), L = 1, L not a multiple of any work-group size,
// a long scan (L > 16K, small width so it stays fast on lavapipe), top-k with k = L, k = 20,
// ties and n_candidates < L, strided views, F16 / BF16 weights, unaligned offsets.
//
// The harness (tests/backend_ops_harness.h): every tensor in its own buffer, a few lead elements
// (offsets not 16-byte aligned unless a case asks), NaN padding in inputs and a sentinel in
// outputs, all of which must come back unchanged.
//
// Tolerances: normalised mean squared error Σ(dev − cpu)² / Σ cpu², per kernel, in kTol below
// with the reason for each. Indices are compared exactly. Each failure prints one line with
// every parameter of the case.
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include "backend_cache.h"
#include "backend_ops_harness.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/dtype.h"
#include "core/error.h"
#ifdef DM_HAVE_VULKAN
#include "backend/vulkan/vulkan_backend.h"
#endif

namespace dm {
namespace {

using test::Arg;
using test::Backends;
using test::Case;
using test::Gen;
using test::Role;

// NMSE tolerances against the fp32 CPU backend. Both sides compute in fp32; differences come
// from summation order (GEMM over K up to 5120, norm and importance reductions), from device
// exp/log (Vulkan allows a few ulp; drivers use approximations) and from the chunked scan's
// reassociation (exp(A·ΣΔ) for a product of exp(A·Δ)). The worst measured on lavapipe is
// 1.5e-12 (gemm K=5120; scans ≤ 1.1e-12; DM_BACKEND_OPS_VERBOSE=1 prints each). 1e-8 leaves
// room for faster, less exact GPU exp while a single wrong element among the 1e4..1e6 of an
// output still costs > 1e-6.
constexpr double kTolGemm = 1e-8;
constexpr double kTolNorm = 1e-8;
constexpr double kTolConv = 1e-8;
constexpr double kTolScan = 1e-8;
constexpr double kTolScore = 1e-8;

std::string skip_reason() {
  std::string r = "no non-CPU backend available:";
  for (const BackendInfo& b : list_backends())
    if (b.name != "cpu") r += " " + b.name + " (" + b.detail + ")";
  return r;
}

#define DM_REQUIRE_DEVICE_BACKENDS()                                  \
  const std::vector<std::string> kBackends = test::device_backends(); \
  if (kBackends.empty()) GTEST_SKIP() << skip_reason()

std::string dt(DType t) { return std::string(dtype_name(t)); }

// ---------------------------------------------------------------------------------------------

struct GemmCase {
  int64_t M, N, K;
  DType w_dtype;
  bool bias;
  int64_t x_pad, y_pad;  // extra row stride
  bool aligned = false;  // tensors 16-byte aligned (else 3 elements into their buffers)
};

TEST(BackendOps, Gemm) {
  DM_REQUIRE_DEVICE_BACKENDS();
  const std::vector<GemmCase> cases = {
      {1, 1, 1, DType::F32, false, 0, 0},
      {1, 3072, 768, DType::F16, false, 0, 0},      // 130m in_proj, decode
      {5, 768, 1536, DType::BF16, true, 0, 0},      // out_proj
      {7, 80, 5120, DType::F16, true, 0, 0},        // 2.8b x_proj width
      {3, 4096, 2048, DType::F32, false, 0, 0},     // 1.4b in_proj, few rows
      {64, 64, 64, DType::F32, true, 0, 0},         // exactly one tile
      {65, 129, 17, DType::F32, true, 5, 3},        // one past a tile, strided
      {130, 96, 2048, DType::BF16, true, 2048, 7},  // x a column slice of a wider matrix
      {200, 48, 1536, DType::F16, false, 1536, 0},  // dt_rank-wide output of a strided x
      {33, 1536, 48, DType::F32, true, 0, 1536},    // dt_proj: K = dt_rank, y inside a wider row
      {4, 200, 333, DType::BF16, true, 5, 7},       // the largest M of the decode path, strided
      {2, 1536, 48, DType::F16, true, 48, 0},       // decode dt_proj of a batch of 2
      // Decode GEMVs on 16-byte aligned rows (Vulkan gemm.small_m_vec; several rows-per-group
      // choices, every weight dtype, ragged N):
      {1, 3072, 768, DType::F16, false, 0, 0, true},    // 130m in_proj
      {1, 192, 5120, DType::F16, false, 0, 0, true},    // 2.8b x_proj: one row per work group
      {1, 5120, 160, DType::BF16, true, 0, 0, true},    // 2.8b dt_proj
      {2, 643, 2560, DType::BF16, true, 0, 0, true},    // BF16 pieces, two rows of x
      {4, 520, 1024, DType::F32, true, 4, 3, true},     // F32 pieces, strided x and y
      {1, 50280, 256, DType::F16, false, 0, 0, true},   // lm_head-like N
      {3, 100, 1000, DType::F16, false, 2, 0, true},    // x rows not 16-byte aligned: scalar path
      {1, 50280, 64, DType::F16, false, 0, 0},      // lm_head-like N, many work groups
      {128, 128, 64, DType::F32, true, 0, 0},       // exactly one 128×128 tile
      {300, 1536, 768, DType::F16, false, 3, 1536}, // prefill in_proj (x half), ragged 128 tiles
      {257, 768, 1536, DType::BF16, true, 0, 0},    // prefill out_proj
      // The tensor-core path (Vulkan with cooperative matrix: M ≥ 16, F16/BF16 weights), each
      // of its weight-load modes and ragged edges in m, n and k:
      {160, 256, 2560, DType::F16, true, 0, 0},     // K a multiple of its 32-wide k steps
      {150, 200, 333, DType::F16, true, 5, 7},      // K odd: element-wise weight loads
      {140, 130, 100, DType::BF16, false, 1, 0},    // K even, not a multiple of 32
      {16, 1536, 48, DType::F16, true, 0, 0},       // smallest M it takes, K = dt_rank
      // ... and its 16-byte paths (aligned rows): 128×128 and 128×256 tiles, direct stores
      // (no bias), BF16 converted while staging, ragged edges in every dimension.
      {160, 256, 2560, DType::F16, false, 0, 0, true},
      {1024, 2048, 256, DType::F16, false, 0, 0, true},
      {1040, 2100, 264, DType::BF16, true, 0, 4, true},
  };
  // Each case with the weight uploaded, and where a GPU may use tensor cores (F16 / BF16, M > 8)
  // also as the model's weights are (upload_constant: CUDA's K-concatenated copy, cuda_gemm.cpp).
  for (const std::string& name : kBackends)
    for (size_t i = 0; i < 2 * cases.size(); ++i) {
      const GemmCase& g = cases[i / 2];
      const Role w_role = i % 2 ? Role::Weight : Role::In;
      if (w_role == Role::Weight && (g.M <= 8 || g.w_dtype == DType::F32)) continue;
      std::ostringstream d;
      d << "gemm M=" << g.M << " N=" << g.N << " K=" << g.K << " w=" << dt(g.w_dtype)
        << " bias=" << g.bias << " x_stride=" << g.K + g.x_pad << " y_stride=" << g.N + g.y_pad
        << (g.aligned ? " 16-byte aligned" : "") << (i % 2 ? " constant w" : "");
      Case c(name, d.str(), 1000 + uint32_t(i / 2));
      if (g.aligned) c.align16();
      test::run_gemm_case(c, g.M, g.N, g.K, g.w_dtype, g.bias, g.x_pad, g.y_pad, w_role, kTolGemm);
    }
}

struct NormCase {
  int64_t L, D;
  bool residual;
  DType w_dtype;
  int64_t x_pad;
  bool in_place;  // y is x
};

TEST(BackendOps, RmsNorm) {
  DM_REQUIRE_DEVICE_BACKENDS();
  const std::vector<NormCase> cases = {
      {1, 768, true, DType::F32, 0, false},    {3, 1536, false, DType::F16, 0, false},
      {33, 2048, true, DType::BF16, 5, false}, {2, 4096, true, DType::F32, 0, false},
      {5, 5120, false, DType::F32, 0, true},   {300, 7, true, DType::F16, 1, false},
      {1, 1, false, DType::F32, 0, false},
  };
  for (const std::string& name : kBackends)
    for (size_t i = 0; i < cases.size(); ++i) {
      const NormCase& n = cases[i];
      std::ostringstream d;
      d << "rms_norm L=" << n.L << " D=" << n.D << " residual=" << n.residual << " w=" << dt(n.w_dtype)
        << " x_stride=" << n.D + n.x_pad << " in_place=" << n.in_place;
      Case c(name, d.str(), 2000 + uint32_t(i));
      Arg& x = c.add("x", n.in_place ? Role::InOut : Role::In, DType::F32, n.L, n.D, n.D + n.x_pad,
                     c.nonzero(0.1f, 2.f));
      Arg* r = n.residual ? &c.add("residual", Role::InOut, DType::F32, n.L, n.D, n.D, c.nonzero(0.1f, 2.f)) : nullptr;
      Arg& w = c.add("weight", Role::In, n.w_dtype, 1, n.D, n.D, c.nonzero(0.5f, 1.5f));
      Arg* y = n.in_place ? &x : &c.add("y", Role::Out, DType::F32, n.L, n.D, n.D, nullptr);
      Tensor rc, rd;
      if (r) { rc = r->cpu(); rd = r->dev(); }
      c.cpu().rms_norm(x.cpu(), r ? &rc : nullptr, w.cpu(), y->cpu(), 1e-5f);
      c.dev().rms_norm(x.dev(), r ? &rd : nullptr, w.dev(), y->dev(), 1e-5f);
      c.check(kTolNorm);
    }
}

struct ConvCase {
  int64_t L, C, d_conv;
  bool bias;
  DType w_dtype;
  int64_t x_pad;
};

TEST(BackendOps, CausalConv1d) {
  DM_REQUIRE_DEVICE_BACKENDS();
  const std::vector<ConvCase> cases = {
      {1, 1536, 4, true, DType::F32, 1536},  // x inside xz: stride 2·d_inner
      {2, 2048, 4, true, DType::F16, 0},     // L < d_conv - 1: the new state keeps old entries
      {3, 4096, 4, false, DType::BF16, 0},   // L = d_conv - 1
      {100, 5120, 4, true, DType::F32, 5120},
      {17, 3, 4, true, DType::F16, 2},
      {1000, 64, 2, true, DType::F32, 0},
      {50, 70, 1, false, DType::F32, 0},
      {7, 33, 5, true, DType::BF16, 0},
  };
  for (const std::string& name : kBackends)
    for (size_t i = 0; i < cases.size(); ++i) {
      const ConvCase& k = cases[i];
      std::ostringstream d;
      d << "causal_conv1d L=" << k.L << " C=" << k.C << " d_conv=" << k.d_conv << " bias=" << k.bias
        << " w=" << dt(k.w_dtype) << " x_stride=" << k.C + k.x_pad;
      Case c(name, d.str(), 3000 + uint32_t(i));
      Arg& x = c.add("x", Role::In, DType::F32, k.L, k.C, k.C + k.x_pad, c.nonzero(0.1f, 2.f));
      Arg& w = c.add("weight", Role::In, k.w_dtype, k.C, k.d_conv, k.d_conv, c.nonzero(0.05f, 0.5f));
      Arg* b = k.bias ? &c.add("bias", Role::In, k.w_dtype, 1, k.C, k.C, c.nonzero(0.05f, 0.5f)) : nullptr;
      Arg& s = c.add("conv_state", Role::InOut, DType::F32, k.C, k.d_conv, k.d_conv, c.nonzero(0.1f, 2.f));
      Arg& y = c.add("y", Role::Out, DType::F32, k.L, k.C, k.C, nullptr);
      Tensor bc, bd;
      if (b) { bc = b->cpu(); bd = b->dev(); }
      c.cpu().causal_conv1d(x.cpu(), w.cpu(), b ? &bc : nullptr, s.cpu(), y.cpu());
      c.dev().causal_conv1d(x.dev(), w.dev(), b ? &bd : nullptr, s.dev(), y.dev());
      c.check(kTolConv);
    }
}

struct ScanCase {
  int64_t L, C, N;
  bool z;
  DType w_dtype;      // A_log, D, dt_bias
  bool strided;       // u, z in xz (stride 2C), delta / B / C in x_dbl-like rows
};

// Mamba-like magnitudes: A = -exp(A_log) in [-16, -1], Δ = softplus(delta + dt_bias) around
// 1e-3..1e-1 with some larger, so states both decay and carry over long ranges.
void scan_inputs(Case& c, const ScanCase& s, bool step, Arg** out) {
  const int64_t rows = step ? s.L : s.L;  // step: rows = batch
  const int64_t us = s.strided ? 2 * s.C : s.C;
  const int64_t ds = s.strided ? s.C + 3 : s.C;
  const int64_t bs = s.strided ? 2 * s.N + 48 : s.N;
  out[0] = &c.add("u", Role::In, DType::F32, rows, s.C, us, c.nonzero(0.1f, 2.f));
  out[1] = &c.add("delta", Role::In, DType::F32, rows, s.C, ds, c.uniform(-3.f, 1.5f));
  out[2] = &c.add("A_log", Role::In, s.w_dtype, s.C, s.N, s.N, c.uniform(0.f, 2.77f));
  out[3] = &c.add("B", Role::In, DType::F32, rows, s.N, bs, c.nonzero(0.1f, 1.f));
  out[4] = &c.add("C", Role::In, DType::F32, rows, s.N, bs, c.nonzero(0.1f, 1.f));
  out[5] = &c.add("D", Role::In, s.w_dtype, 1, s.C, s.C, c.nonzero(0.5f, 1.5f));
  out[6] = s.z ? &c.add("z", Role::In, DType::F32, rows, s.C, us, c.nonzero(0.1f, 3.f)) : nullptr;
  out[7] = &c.add("dt_bias", Role::In, s.w_dtype, 1, s.C, s.C, c.uniform(-4.5f, -2.f));
  out[8] = &c.add("ssm_state", Role::InOut, DType::F32, (step ? s.L : 1) * s.C, s.N, s.N,
                  c.nonzero(0.01f, 1.f));
  out[9] = &c.add("y", Role::Out, DType::F32, rows, s.C, s.C, nullptr);
}

// The prefill scan of scan_inputs' arguments on the CPU oracle and on the device under test.
void run_scan_both(Case& c, Arg** a) {
  Tensor zc, zd;
  if (a[6]) {
    zc = a[6]->cpu();
    zd = a[6]->dev();
  }
  c.cpu().selective_scan(a[0]->cpu(), a[1]->cpu(), a[2]->cpu(), a[3]->cpu(), a[4]->cpu(), a[5]->cpu(),
                         a[6] ? &zc : nullptr, a[7]->cpu(), a[8]->cpu(), a[9]->cpu());
  c.dev().selective_scan(a[0]->dev(), a[1]->dev(), a[2]->dev(), a[3]->dev(), a[4]->dev(), a[5]->dev(),
                         a[6] ? &zd : nullptr, a[7]->dev(), a[8]->dev(), a[9]->dev());
}

TEST(BackendOps, SelectiveScan) {
  DM_REQUIRE_DEVICE_BACKENDS();
  const std::vector<ScanCase> cases = {
      {1, 4096, 16, true, DType::F32, true},     // L = 1: a prefill of one token
      {7, 2048, 16, true, DType::F16, false},
      {40, 1536, 16, true, DType::F32, true},
      {65, 5120, 16, false, DType::BF16, false},  // one past the minimum chunk: two chunks
      {1000, 64, 16, true, DType::F32, true},    // many chunks, a ragged last one
      {16411, 16, 16, true, DType::F16, false},  // long L: hundreds of chunks
      {16384, 24, 16, false, DType::F32, true},
      {300, 33, 4, true, DType::F32, false},     // d_state other than 16
      {129, 100, 1, true, DType::BF16, true},
  };
  for (const std::string& name : kBackends)
    for (size_t i = 0; i < cases.size(); ++i) {
      const ScanCase& s = cases[i];
      std::ostringstream d;
      d << "selective_scan L=" << s.L << " C=" << s.C << " N=" << s.N << " z=" << s.z
        << " w=" << dt(s.w_dtype) << " strided=" << s.strided;
      Case c(name, d.str(), 4000 + uint32_t(i));
      Arg* a[10];
      scan_inputs(c, s, false, a);
      run_scan_both(c, a);
      c.check(kTolScan);
    }
}

TEST(BackendOps, DtImportance) {
  DM_REQUIRE_DEVICE_BACKENDS();
  // aligned: delta's rows on 16 bytes (CUDA's float4 path: C and the stride multiples of 4).
  struct K { int64_t L, C; DType b_dtype; int64_t pad; bool aligned; };
  const std::vector<K> cases = {{1, 1536, DType::F32, 0, false}, {300, 2048, DType::F16, 3, false},
                                {2049, 5120, DType::BF16, 0, false}, {5, 4096, DType::F32, 4096, false},
                                {1000, 3, DType::F32, 0, false},  {2049, 1536, DType::F32, 0, true},
                                {300, 1000, DType::F16, 4, true}, {7, 4, DType::BF16, 0, true},
                                {9, 5120, DType::F32, 8, true},
                                // past 8192 channels CUDA reads dt_bias per element
                                {33, 8200, DType::F16, 0, true}, {5, 9001, DType::BF16, 1, false}};
  for (const std::string& name : kBackends)
    for (size_t i = 0; i < cases.size(); ++i) {
      const K& k = cases[i];
      std::ostringstream d;
      d << "dt_importance L=" << k.L << " C=" << k.C << " dt_bias=" << dt(k.b_dtype)
        << " delta_stride=" << k.C + k.pad << " aligned=" << k.aligned;
      Case c(name, d.str(), 5000 + uint32_t(i));
      if (k.aligned) c.align16();
      Arg& delta = c.add("delta", Role::In, DType::F32, k.L, k.C, k.C + k.pad, c.uniform(-3.f, 1.5f));
      Arg& bias = c.add("dt_bias", Role::In, k.b_dtype, 1, k.C, k.C, c.uniform(-4.5f, -2.f));
      Arg& sc = c.add("scores", Role::Out, DType::F32, k.L, 1, 1, nullptr);
      c.cpu().dt_importance(delta.cpu(), bias.cpu(), sc.cpu());
      c.dev().dt_importance(delta.dev(), bias.dev(), sc.dev());
      c.check(kTolScore);
    }
}

// Scores with special values in turn: NaN (below every number), ±0 (equal), ±inf, negatives.
float topk_special_score(int64_t r) {
  const float v[] = {std::nanf(""), -0.f, 0.f, -1.f, INFINITY, -INFINITY, 1.5f, 0.f, -1.f};
  return v[r % 9];
}

TEST(BackendOps, TopkIndices) {
  DM_REQUIRE_DEVICE_BACKENDS();
  // levels > 0: scores from that many values (ties); -m: 2 at every m-th position, else 1 (k =
  // the 2s: every key of the selected prefix is kept); kSpecial: topk_special_score.
  constexpr int kSpecial = -1000;
  struct K { int64_t L, n_cand, k; int levels; };
  const std::vector<K> cases = {
      {1, 1, 1, 0},          {1, 0, 0, 0},        {20, 20, 20, 0},      {1000, 1000, 20, 0},
      {1000, 997, 997, 0},   {1000, 600, 0, 0},   {5000, 4000, 2000, 3}, {5000, 5000, 20, 2},
      {70001, 69000, 2000, 0}, {70001, 70001, 70001, 5}, {65536, 60000, 20, 1}, {4097, 4097, 4096, 0},
      // CUDA keeps up to ~48K keys in shared memory (the 32K prefill), more are re-read per pass;
      // k = 1, k = n - 1, n not a multiple of the 1024-thread block or its 8192-position tile,
      // ties straddling the threshold in both forms, and prefixes kept whole (early stop).
      {33000, 32768, 2000, 0}, {40000, 39999, 1, 0}, {9000, 8999, 8998, 0}, {30001, 30001, 15000, 4},
      {100003, 100000, 50000, 2}, {12289, 12289, 4097, -3}, {80000, 80000, 16000, -5},
      {20000, 19999, 9000, kSpecial}, {70000, 70000, 31111, kSpecial}, {1025, 1023, 500, 1},
  };
  for (const std::string& name : kBackends)
    for (size_t i = 0; i < cases.size(); ++i) {
      const K& k = cases[i];
      std::ostringstream d;
      d << "topk_indices L=" << k.L << " n_candidates=" << k.n_cand << " k=" << k.k
        << " tie_levels=" << k.levels;
      Case c(name, d.str(), 6000 + uint32_t(i));
      Gen g = c.uniform(0.001f, 3.f);
      if (k.levels > 0)
        g = [&c, lv = k.levels](int64_t, int64_t) {
          return 0.5f + float(std::uniform_int_distribution<int>(0, lv - 1)(c.rng())) * 0.25f;
        };
      else if (k.levels == kSpecial)
        g = [](int64_t r, int64_t) { return topk_special_score(r); };
      else if (k.levels < 0)
        g = [m = -k.levels](int64_t r, int64_t) { return r % m == 0 ? 2.f : 1.f; };
      Arg& sc = c.add("scores", Role::In, DType::F32, k.L, 1, 1, g);
      const int64_t n_out = k.k + k.L - k.n_cand;
      Arg& idx = c.add("idx", Role::Out, DType::I32, n_out, 1, 1, nullptr);
      c.cpu().topk_indices(sc.cpu(), k.n_cand, k.k, idx.cpu());
      c.dev().topk_indices(sc.dev(), k.n_cand, k.k, idx.dev());
      c.check(-1);
    }
}

// The harness itself (on the CPU backend, as both sides): check() reports an input element, an
// input's padding and an output's padding that the device side changed, each once, and passes
// a case nobody touched. (Inputs are compared as whole buffers first: the element-wise count
// runs only where they differ.)
TEST(BackendOps, HarnessReportsChanges) {
  enum What { kNothing, kInputElement, kInputPadding, kOutputPadding };
  for (What what : {kNothing, kInputElement, kInputPadding, kOutputPadding}) {
    test::Case c("cpu", "harness case " + std::to_string(int(what)), 11);
    Arg& x = c.add("x", Role::In, DType::F32, 2, 5, 7, c.nonzero(0.1f, 1.f));
    Arg& y = c.add("y", Role::Out, DType::F32, 1, 4, 4, nullptr);
    const float v = 42.f;
    switch (what) {
      case kNothing: break;
      case kInputElement: c.dev().upload(*x.dev_buf, x.elem_pos(1, 2) * 4, &v, 4); break;
      case kInputPadding: c.dev().upload(*x.dev_buf, x.elem_pos(0, 6) * 4, &v, 4); break;
      case kOutputPadding: c.dev().upload(*y.dev_buf, y.elem_pos(0, 4) * 4, &v, 4); break;
    }
    if (what == kNothing) {
      c.check(1e-8);
    } else {
      EXPECT_NONFATAL_FAILURE(c.check(1e-8), what == kOutputPadding
                                                 ? "y: 1 padding elements changed"
                                                 : "x: 1 input or padding elements changed");
    }
  }
}

// Greedy decoding's pick (Backend::argmax) over a row of logits: the largest of the first n
// (ties: the lower index; NaN below every number, -0 == +0), exactly the CPU's. Lengths around
// the 1024- / 256-wide work groups, the 130m vocabulary with n < len (the padding rows' logits,
// larger, must be ignored), ties, special values, all NaN, the maximum first and last. Vulkan
// runs its scalar and its vec4 shader (DM_VULKAN_ARGMAX; vec4 on the aligned cases, whose n % 4
// leftovers take its float view), CUDA its grid and its one-block kernel (DM_CUDA_ARGMAX; the
// grid's last block reduces 13 blocks' maxima at the 50,280 cases, ties across blocks among them).
TEST(BackendOps, Argmax) {
  DM_REQUIRE_DEVICE_BACKENDS();
  enum Pattern { kRandom, kTies, kSpecial, kAllNan, kMaxFirst, kMaxLast, kPaddingLarger,
                 kTiesInPiece };
  // aligned: x starts on 16 bytes (CUDA then reads whole float4s, the rest one by one).
  struct K { int64_t len, n; Pattern pat; bool aligned; };
  const std::vector<K> cases = {
      {1, 1, kRandom, false},          {7, 7, kRandom, false},         {1000, 1000, kRandom, false},
      {1025, 1023, kRandom, false},    {50280, 50280, kRandom, false}, {50280, 50277, kPaddingLarger, false},
      {100003, 100003, kRandom, false}, {5000, 5000, kTies, false},    {50280, 50280, kTies, false},
      {20000, 19999, kSpecial, false}, {999, 999, kAllNan, false},     {4096, 4096, kMaxFirst, false},
      {4097, 4097, kMaxLast, false},   {256, 256, kSpecial, false},
      {50280, 50280, kRandom, true},   {50280, 50277, kPaddingLarger, true}, {50283, 50283, kTies, true},
      {4099, 4099, kMaxLast, true},    {3, 3, kRandom, true},          {20000, 19998, kSpecial, true},
      {50280, 50280, kTiesInPiece, true}, {50280, 50280, kTiesInPiece, false},
  };
  for (const std::string& name : kBackends) {
    // Vulkan's two shaders (DM_VULKAN_ARGMAX), CUDA's two kernels (DM_CUDA_ARGMAX); the CPU its
    // one.
    const char* var = name == "cuda" ? "DM_CUDA_ARGMAX" : "DM_VULKAN_ARGMAX";
    const std::vector<const char*> modes =
        name == "vulkan" ? std::vector<const char*>{"scalar", "vec4"}
        : name == "cuda" ? std::vector<const char*>{"grid", "block"}
                         : std::vector<const char*>{"scalar"};
    for (const char* mode : modes)
      for (size_t i = 0; i < cases.size(); ++i) {
        setenv(var, mode, 1);
        const K& k = cases[i];
        std::ostringstream d;
        d << "argmax[" << mode << "] len=" << k.len << " n=" << k.n << " pattern=" << int(k.pat)
          << " aligned=" << k.aligned;
        Case c(name, d.str(), 7000 + uint32_t(i));
        if (k.aligned) c.align16();
        const Gen u = c.uniform(-8.f, 8.f);
        Gen g = u;
        switch (k.pat) {
          case kRandom: break;
          case kTies:  // few levels: the maximum recurs at many positions
            g = [&c](int64_t, int64_t) {
              return float(std::uniform_int_distribution<int>(0, 3)(c.rng())) * 0.5f;
            };
            break;
          case kSpecial:  // NaN, ±0, ±inf, negatives; +inf at several positions
            g = [](int64_t, int64_t col) { return topk_special_score(col); };
            break;
          case kAllNan: g = [](int64_t, int64_t) { return std::nanf(""); }; break;
          case kMaxFirst:
            g = [u](int64_t r, int64_t col) { return col == 0 ? 9.f : u(r, col); };
            break;
          case kMaxLast:
            g = [u, n = k.n](int64_t r, int64_t col) { return col == n - 1 ? 9.f : u(r, col); };
            break;
          case kPaddingLarger:
            g = [u, n = k.n](int64_t r, int64_t col) { return col >= n ? 100.f : u(r, col); };
            break;
          case kTiesInPiece:  // the maximum twice inside one 16-byte piece, and once much later
            g = [u](int64_t r, int64_t col) {
              return col == 4 * 777 + 1 || col == 4 * 777 + 2 || col == 4 * 9000 ? 9.f : u(r, col);
            };
            break;
        }
        Arg& x = c.add("x", Role::In, DType::F32, 1, k.len, k.len, g);
        Arg& idx = c.add("idx", Role::Out, DType::I32, 1, 1, 1, nullptr);
        c.cpu().argmax(x.cpu(), k.n, idx.cpu());
        c.dev().argmax(x.dev(), k.n, idx.dev());
        c.check(-1);  // the index exactly
        unsetenv(var);
      }
  }
}

// DeciMamba's selection as a prefill makes it, on each backend from its own scores: a 32K-token
// 130m layer's delta (per-token offsets give the scores a spread), dt_importance, then the top
// 2000. The kept set and its order must be the CPU's exactly.
TEST(BackendOps, DtImportanceTopkSelection) {
  DM_REQUIRE_DEVICE_BACKENDS();
  constexpr int64_t L = 32768, C = 1536, n_cand = L - 64, k = 2000;
  for (const std::string& name : kBackends) {
    Case c(name, "dt_importance + topk_indices L=32768 C=1536 k=2000", 7500);
    c.align16();
    std::vector<float> offset(L);
    for (float& o : offset) o = std::uniform_real_distribution<float>(-1.f, 1.f)(c.rng());
    const Gen u = c.uniform(-3.f, 1.5f);
    Arg& delta = c.add("delta", Role::In, DType::F32, L, C, C,
                       [&](int64_t r, int64_t col) { return u(r, col) + offset[size_t(r)]; });
    Arg& bias = c.add("dt_bias", Role::In, DType::F16, 1, C, C, c.uniform(-4.5f, -2.f));
    Arg& sc = c.add("scores", Role::Out, DType::F32, L, 1, 1, nullptr);
    Arg& idx = c.add("idx", Role::Out, DType::I32, k + L - n_cand, 1, 1, nullptr);
    c.cpu().dt_importance(delta.cpu(), bias.cpu(), sc.cpu());
    c.cpu().topk_indices(sc.cpu(), n_cand, k, idx.cpu());
    c.dev().dt_importance(delta.dev(), bias.dev(), sc.dev());
    c.dev().topk_indices(sc.dev(), n_cand, k, idx.dev());
    c.check(kTolScore);  // idx (I32) exactly
  }
}

TEST(BackendOps, GatherRows) {
  DM_REQUIRE_DEVICE_BACKENDS();
  // aligned: tensors 16-byte aligned (CUDA's 16-byte path where the strides keep every row so:
  // fp32 rows of a multiple of 4, 16-bit source rows of a multiple of 8 elements; columns past
  // the last whole vector element by element).
  struct K { int64_t R, cols, n; DType src_dtype; int64_t src_pad, dst_pad; bool aligned = false; };
  const std::vector<K> cases = {
      {1000, 768, 1, DType::F16, 0, 0},   {50, 2048, 300, DType::F32, 5, 2048},
      {700, 1536, 257, DType::BF16, 0, 0}, {3, 5, 9, DType::F32, 1, 1},
      {20000, 4096, 2, DType::F16, 0, 0},  // 164 MB: more than lavapipe binds at once
      {1000, 768, 2000, DType::F16, 0, 0, true},     // the embedding lookup
      {3000, 1536, 2001, DType::F32, 1536, 0, true},  // z, a column half of xz
      {500, 1000, 300, DType::BF16, 8, 4, true},     {300, 38, 100, DType::F32, 2, 2, true},
      {200, 27, 50, DType::F16, 5, 1, true},          {200, 27, 50, DType::F16, 4, 1, true},
      {100, 64, 9, DType::F32, 1, 0, true},
  };
  for (const std::string& name : kBackends)
    for (size_t i = 0; i < cases.size(); ++i) {
      const K& k = cases[i];
      std::ostringstream d;
      d << "gather_rows R=" << k.R << " cols=" << k.cols << " n=" << k.n << " src=" << dt(k.src_dtype)
        << " src_stride=" << k.cols + k.src_pad << " dst_stride=" << k.cols + k.dst_pad
        << " aligned=" << k.aligned;
      Case c(name, d.str(), 7000 + uint32_t(i));
      if (k.aligned) c.align16();
      Arg& src = c.add("src", Role::In, k.src_dtype, k.R, k.cols, k.cols + k.src_pad, c.nonzero(0.01f, 4.f));
      Arg& idx = c.add("idx", Role::In, DType::I32, k.n, 1, 1, [&c, R = k.R](int64_t, int64_t) {
        return float(std::uniform_int_distribution<int64_t>(0, R - 1)(c.rng()));
      });
      Arg& dst = c.add("dst", Role::Out, DType::F32, k.n, k.cols, k.cols + k.dst_pad, nullptr);
      c.cpu().gather_rows(src.cpu(), idx.cpu(), dst.cpu());
      c.dev().gather_rows(src.dev(), idx.dev(), dst.dev());
      c.check(-1);  // a copy: bit-exact
    }
}

TEST(BackendOps, CausalConv1dStep) {
  DM_REQUIRE_DEVICE_BACKENDS();
  struct K { int64_t batch, C, d_conv; bool bias; DType w_dtype; int64_t x_pad; };
  const std::vector<K> cases = {{1, 1536, 4, true, DType::F32, 1536}, {3, 5120, 4, true, DType::F16, 0},
                                {2, 2048, 4, false, DType::BF16, 0}, {5, 7, 3, true, DType::F32, 2},
                                {1, 4096, 1, true, DType::F32, 0}};
  for (const std::string& name : kBackends)
    for (size_t i = 0; i < cases.size(); ++i) {
      const K& k = cases[i];
      std::ostringstream d;
      d << "causal_conv1d_step batch=" << k.batch << " C=" << k.C << " d_conv=" << k.d_conv
        << " bias=" << k.bias << " w=" << dt(k.w_dtype) << " x_stride=" << k.C + k.x_pad;
      Case c(name, d.str(), 8000 + uint32_t(i));
      Arg& x = c.add("x", Role::In, DType::F32, k.batch, k.C, k.C + k.x_pad, c.nonzero(0.1f, 2.f));
      Arg& w = c.add("weight", Role::In, k.w_dtype, k.C, k.d_conv, k.d_conv, c.nonzero(0.05f, 0.5f));
      Arg* b = k.bias ? &c.add("bias", Role::In, k.w_dtype, 1, k.C, k.C, c.nonzero(0.05f, 0.5f)) : nullptr;
      Arg& s = c.add("conv_state", Role::InOut, DType::F32, k.batch * k.C, k.d_conv, k.d_conv, c.nonzero(0.1f, 2.f));
      Arg& y = c.add("y", Role::Out, DType::F32, k.batch, k.C, k.C, nullptr);
      Tensor bc, bd;
      if (b) { bc = b->cpu(); bd = b->dev(); }
      c.cpu().causal_conv1d_step(x.cpu(), w.cpu(), b ? &bc : nullptr, s.cpu(), y.cpu());
      c.dev().causal_conv1d_step(x.dev(), w.dev(), b ? &bd : nullptr, s.dev(), y.dev());
      c.check(kTolConv);
    }
}

// Every Vulkan selective_scan path on the same shapes: the chunked three-pass scan, the
// one-pass look-back scan in several shapes (tiny chunks and channel groups make long
// look-back chains and many work groups waiting on each other), and the warp scan (warp2, the
// NVIDIA default at 1536-3072 channels, including its 12,8 default and R > CB), and the segment
// scan (seg: default shape, vec4 and scalar, segments spanning subgroups and segments sharing a
// subgroup, R = 4 .. 16; plus long L and ragged chunks).
TEST(BackendOpsVulkan, SelectiveScanPaths) {
  if (!test::backend_available("vulkan")) GTEST_SKIP() << skip_reason();
  struct Mode {
    const char* scan;
    const char* lb;  // the shape (DM_VULKAN_SCAN_LB, DM_VULKAN_SCAN_WARP for warp,
                     // DM_VULKAN_SCAN_SEG for seg) or nullptr
    bool align16 = false;  // tensors 16-byte aligned (the warp scan's vec4 variant where rows allow)
  };
  const Mode modes[] = {{"chunked", nullptr},      {"lookback", nullptr},    {"lookback", "8,2,4"},
                        {"lookback", "32,4,8"},    {"lookback", "16,8,4"},   {"warp", nullptr},
                        {"warp", nullptr, true},   {"warp", "4,4", true},    {"warp", "8,4", true},
                        {"warp", "4,4"},           {"warp", "12,8", true},   {"warp", "4,8", true},
                        // The prep's token map (CB,R,PREP2): the former one (0), the default
                        // one (1) at Q = R / 4 = 3 (9 shuffles a lane), vec4 and scalar rows.
                        {"warp", "12,8,0", true},  {"warp", "8,8,0"},       {"warp", "4,12,1", true},
                        {"warp", "4,12,1"},
                        // CB,S,R: the default shape (12,4,8: segments across subgroups),
                        // segments sharing a subgroup (4,8,*), 4,4,16 (four B / C pieces per
                        // invocation), 8,4,8, 16,2,8.
                        {"seg", nullptr},          {"seg", nullptr, true},   {"seg", "4,8,8", true},
                        {"seg", "4,8,4"},          {"seg", "12,2,8", true},  {"seg", "4,4,16", true},
                        {"seg", "8,4,8"},          {"seg", "16,2,8", true}};
  // The warp scan: unaligned tensors or strided cases (delta stride C + 3) take its scalar
  // variant, aligned unstrided ones its vec4 variant; C = 40 and 20 leave a partial work group.
  const std::vector<ScanCase> cases = {
      {40, 1536, 16, true, DType::F32, true},
      {65, 5120, 16, false, DType::BF16, false},
      {1000, 64, 16, true, DType::F32, true},
      {3001, 40, 16, true, DType::F16, false},
      {1, 64, 16, true, DType::F32, false},
      {777, 20, 16, false, DType::F32, false},
  };
  // The segment scan also on long L (hundreds of chunks, none a multiple of the chunk) and a
  // real width over many chunks.
  const std::vector<ScanCase> seg_cases = {
      {16411, 40, 16, true, DType::F16, false},
      {16500, 64, 16, true, DType::F32, true},
      {2049, 1536, 16, true, DType::BF16, false},
  };
  const char* old_scan = std::getenv("DM_VULKAN_SCAN");
  const char* old_lb = std::getenv("DM_VULKAN_SCAN_LB");
  const char* old_warp = std::getenv("DM_VULKAN_SCAN_WARP");
  const char* old_seg = std::getenv("DM_VULKAN_SCAN_SEG");
  const std::string keep_scan = old_scan ? old_scan : "", keep_lb = old_lb ? old_lb : "",
                    keep_warp = old_warp ? old_warp : "", keep_seg = old_seg ? old_seg : "";
  for (const Mode& m : modes) {
    const bool seg = std::string(m.scan) == "seg";
    std::vector<ScanCase> mode_cases = cases;
    if (seg) mode_cases.insert(mode_cases.end(), seg_cases.begin(), seg_cases.end());
    for (size_t i = 0; i < mode_cases.size(); ++i) {
      setenv("DM_VULKAN_SCAN", m.scan, 1);
      const char* shape_var = std::string(m.scan).rfind("warp", 0) == 0 ? "DM_VULKAN_SCAN_WARP"
                              : seg                                     ? "DM_VULKAN_SCAN_SEG"
                                                                        : "DM_VULKAN_SCAN_LB";
      unsetenv("DM_VULKAN_SCAN_LB");
      unsetenv("DM_VULKAN_SCAN_WARP");
      unsetenv("DM_VULKAN_SCAN_SEG");
      if (m.lb) setenv(shape_var, m.lb, 1);
      const ScanCase& s = mode_cases[i];
      std::ostringstream d;
      d << "selective_scan[" << m.scan << (m.lb ? std::string(" ") + m.lb : std::string())
        << (m.align16 ? " a16" : "") << "] L=" << s.L
        << " C=" << s.C << " N=" << s.N << " z=" << s.z << " w=" << dt(s.w_dtype) << " strided=" << s.strided;
      Case c("vulkan", d.str(), 4100 + uint32_t(i));
      if (m.align16) c.align16();
      Arg* a[10];
      scan_inputs(c, s, false, a);
      // Twice in a row on the device: the second dispatch reuses the look-back counters.
      run_scan_both(c, a);
      run_scan_both(c, a);
      c.check(kTolScan);
    }
  }
  if (old_scan) setenv("DM_VULKAN_SCAN", keep_scan.c_str(), 1);
  else unsetenv("DM_VULKAN_SCAN");
  if (old_lb) setenv("DM_VULKAN_SCAN_LB", keep_lb.c_str(), 1);
  else unsetenv("DM_VULKAN_SCAN_LB");
  if (old_warp) setenv("DM_VULKAN_SCAN_WARP", keep_warp.c_str(), 1);
  else unsetenv("DM_VULKAN_SCAN_WARP");
  if (old_seg) setenv("DM_VULKAN_SCAN_SEG", keep_seg.c_str(), 1);
  else unsetenv("DM_VULKAN_SCAN_SEG");
}

// One Vulkan GEMM path's case: y = x · wᵀ (+ bias), rows 16-byte aligned (Case::align16).
struct GemmShape {
  int64_t M, N, K;
  DType w_dtype;
  bool bias;
};
struct GemmArgs {
  Arg *x, *w, *bias;
};
// x, w (as `w_role`) and the bias if any, on the CPU and the device, with nonzero values.
GemmArgs add_gemm_inputs(Case& c, const GemmShape& g, Role w_role) {
  c.align16();
  GemmArgs a{};
  a.x = &c.add("x", Role::In, DType::F32, g.M, g.K, g.K, c.nonzero(0.1f, 1.f));
  a.w = &c.add("w", w_role, g.w_dtype, g.N, g.K, g.K, c.nonzero(0.01f, 0.1f));
  a.bias = g.bias ? &c.add("bias", Role::In, g.w_dtype, 1, g.N, g.N, c.nonzero(0.1f, 1.f)) : nullptr;
  return a;
}
// gemm(x, w, bias) into y on the device (Arg::dev) or the CPU.
void run_gemm(Backend& be, const GemmArgs& a, const Tensor& y, bool dev) {
  Tensor b;
  if (a.bias) b = dev ? a.bias->dev() : a.bias->cpu();
  be.gemm(dev ? a.x->dev() : a.x->cpu(), dev ? a.w->dev() : a.w->cpu(), a.bias ? &b : nullptr, y);
}

// Every work split of the Vulkan decode GEMV (gemm.gemv, DM_VULKAN_GEMV=T,PIPE) and the old
// gemm.small_m_vec ("old"): rows reduced inside part of a subgroup (T below the subgroup size),
// by whole subgroups, across several subgroups through shared memory (T = 256), one invocation
// per row (T = 1), several batches of PIPE pieces per invocation, pieces past the row's end
// (K not a multiple of T · 8), a partial last work group, M = 1 (one accumulator) and M = 3;
// with RW = 2 or 4 rows of W per slot (T,PIPE,RW: gemm.gemv_rw2 / _rw4 at M = 1, a slot whose
// last rows are past N; M = 3 runs one row per slot).
TEST(BackendOpsVulkan, GemvPaths) {
  if (!test::backend_available("vulkan")) GTEST_SKIP() << skip_reason();
  const char* modes[] = {"old",   "1,16",  "1,3",    "4,3",     "8,1",     "16,2",   "32,4",
                         "64,2",  "256,1", "256,3",  "1,3,2",   "4,3,4",   "8,16,2", "32,2,2",
                         "64,2,4", "256,1,4"};
  const GemmShape cases[] = {{1, 203, 1000, DType::F16, false},  // 125 pieces: ragged for every T
                     {3, 77, 520, DType::BF16, true},   // M = 3, bias
                     {1, 300, 96, DType::F32, true},    // F32 pieces (4 weights)
                     {1, 515, 2560, DType::F16, false}}; // a 2.8b-width row, several batches
  const char* old_env = std::getenv("DM_VULKAN_GEMV");
  const std::string keep = old_env ? old_env : "";
  for (const char* m : modes)
    for (size_t i = 0; i < std::size(cases); ++i) {
      setenv("DM_VULKAN_GEMV", m, 1);
      const GemmShape& g = cases[i];
      std::ostringstream d;
      d << "gemv[" << m << "] M=" << g.M << " N=" << g.N << " K=" << g.K << " w=" << dt(g.w_dtype)
        << " bias=" << g.bias;
      Case c("vulkan", d.str(), 5100 + uint32_t(i));
      const GemmArgs a = add_gemm_inputs(c, g, Role::In);
      Arg& y = c.add("y", Role::Out, DType::F32, g.M, g.N, g.N, nullptr);
      run_gemm(c.cpu(), a, y.cpu(), false);
      run_gemm(c.dev(), a, y.dev(), true);
      c.check(kTolGemm);
    }
  if (old_env) setenv("DM_VULKAN_GEMV", keep.c_str(), 1);
  else unsetenv("DM_VULKAN_GEMV");
}

// The decode switches of sessions 17-19 reject a malformed value with one line naming it, before
// anything is enqueued: DM_VULKAN_GEMV=T,PIPE,RW (RW 1, 2 or 4), DM_VULKAN_GEMV_RW,
// DM_VULKAN_NORM_TAIL, DM_VULKAN_ARGMAX, DM_VULKAN_REPLAY_COPIES (1 to 4) and
// DM_VULKAN_REPLAY_FOLD (0 or 1; both read by record()).
TEST(BackendOpsVulkan, DecodeSwitchErrors) {
  if (!test::backend_available("vulkan")) GTEST_SKIP() << skip_reason();
  Backend& be = test::cached_backend("vulkan");
  auto xb = be.alloc(4096), wb = be.alloc(64 * 256 * 2), yb = be.alloc(4096);
  const Tensor x = make_tensor(*xb, DType::F32, 1, 256), w = make_tensor(*wb, DType::F16, 64, 256);
  const Tensor y = make_tensor(*yb, DType::F32, 1, 64), idx = make_tensor(*yb, DType::I32, 1, 1);
  struct Bad {
    const char* var;
    const char* value;
    std::function<void()> call;
  };
  const std::vector<Bad> cases = {
      {"DM_VULKAN_GEMV", "64,2,3", [&] { be.gemm(x, w, nullptr, y); }},
      {"DM_VULKAN_GEMV_RW", "3", [&] { be.gemm(x, w, nullptr, y); }},
      {"DM_VULKAN_NORM_TAIL", "yes", [&] { be.decode_norm_tail(MambaBlockStepArgs{}); }},
      {"DM_VULKAN_ARGMAX", "fast", [&] { be.argmax(x, 256, idx); }},
      {"DM_VULKAN_REPLAY_COPIES", "5", [&] { be.record([&] { be.gemm(x, w, nullptr, y); }); }},
      {"DM_VULKAN_REPLAY_COPIES", "2x", [&] { be.record([&] { be.gemm(x, w, nullptr, y); }); }},
      {"DM_VULKAN_REPLAY_FOLD", "yes", [&] { be.record([&] { be.gemm(x, w, nullptr, y); }); }},
  };
  for (const Bad& b : cases) {
    setenv(b.var, b.value, 1);
    const std::string want = std::string(b.var) + "=" + b.value;
    try {
      b.call();
      ADD_FAILURE() << want << " was accepted";
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(want), std::string::npos) << m;
      EXPECT_EQ(m.find('\n'), std::string::npos) << "not one line: " << m;
    }
    unsetenv(b.var);
  }
  be.synchronize();  // nothing was enqueued that could fail later
}

// gemm.vec128 (shaders/gemm_vec.comp: the 128×128 SIMT GEMM with 16-byte loads, where rows
// are 16-byte aligned): against the CPU as the default runs it (K split where the grid is small:
// two dispatches, the GEMM and gemm.splitk_sum), and unsplit (DM_VULKAN_GEMM_SPLITK=1) bit for
// bit against gemm.tile128 / the 64×64 gemm (DM_VULKAN_GEMM_VEC=0: the same fma chain per
// output), over partial tiles, K with a partial step of 16, thin N (x_proj's 80), every weight
// dtype, with and without bias. Cooperative matrices (where present) take 16-bit weights at
// M ≥ 16, so there only the F32 cases reach the SIMT GEMMs.
TEST(BackendOpsVulkan, GemmVecPaths) {
  if (!test::backend_available("vulkan")) GTEST_SKIP() << skip_reason();
  struct VecCase {
    GemmShape g;
    uint32_t splits;  // what the default picks (simt_splits, both rules: grids under one wave)
  };
  const VecCase cases[] = {{{130, 200, 72, DType::F16, true}, 1},     // partial tiles, K = 4.5 steps
                           {{256, 384, 768, DType::BF16, false}, 4},  // 130m's d_model: 4 splits
                           {{129, 131, 20, DType::F32, true}, 1},     // F32 pieces (4 weights)
                           {{300, 128, 40, DType::F16, false}, 1},
                           {{200, 80, 1536, DType::F16, true}, 8},    // x_proj-thin, 8 splits, bias
                           {{160, 40, 520, DType::F32, false}, 4}};   // thin F32, a short last split
  const std::vector<VulkanDeviceInfo> devs = list_vulkan_devices();
  const bool coopmat = !devs.empty() && devs[0].caps.find("tensor-core gemm yes") != std::string::npos;
  for (size_t i = 0; i < std::size(cases); ++i) {
    const GemmShape& g = cases[i].g;
    std::ostringstream d;
    d << "gemm.vec128 M=" << g.M << " N=" << g.N << " K=" << g.K << " w=" << dt(g.w_dtype)
      << " bias=" << g.bias;
    Case c("vulkan", d.str(), 5200 + uint32_t(i));
    const GemmArgs a = add_gemm_inputs(c, g, Role::Weight);
    // y's rows padded to 16 bytes (the vec4 stores' condition): N = 131 ends inside a vec4.
    const int64_t ys = (g.N + 3) / 4 * 4;
    Arg& y = c.add("y", Role::Out, DType::F32, g.M, g.N, ys, nullptr);
    Arg& y_one = c.add("y_unsplit", Role::Scratch, DType::F32, g.M, g.N, ys, nullptr);
    Arg& y_tile = c.add("y_tile", Role::Scratch, DType::F32, g.M, g.N, ys, nullptr);
    run_gemm(c.cpu(), a, y.cpu(), false);
    setenv("DM_VULKAN_GEMM_VEC", "0", 1);
    run_gemm(c.dev(), a, y_tile.dev(), true);
    unsetenv("DM_VULKAN_GEMM_VEC");
    setenv("DM_VULKAN_GEMM_SPLITK", "1", 1);
    run_gemm(c.dev(), a, y_one.dev(), true);
    unsetenv("DM_VULKAN_GEMM_SPLITK");
    VulkanStats s0{}, s1{};
    ASSERT_TRUE(vulkan_stats(c.dev(), &s0));
    run_gemm(c.dev(), a, y.dev(), true);
    ASSERT_TRUE(vulkan_stats(c.dev(), &s1));
    c.check(kTolGemm);
    // Where the tensor-core GEMM takes the case (16-bit weights), what follows is about another
    // kernel (GemmCoopmatVariants tests that one).
    if (coopmat && g.w_dtype != DType::F32) continue;
    EXPECT_EQ(s1.dispatches - s0.dispatches, cases[i].splits > 1 ? 2u : 1u)
        << c.desc() << ": the default should split K " << cases[i].splits << " ways";
    std::vector<float> one(size_t(g.M * ys)), tile(one.size());
    c.dev().download(*y_one.dev_buf, 16, one.data(), one.size() * 4);
    c.dev().download(*y_tile.dev_buf, 16, tile.data(), tile.size() * 4);
    for (int64_t r = 0; r < g.M; ++r)  // the rows' N columns (the padding is the harness's)
      ASSERT_EQ(std::memcmp(&one[size_t(r * ys)], &tile[size_t(r * ys)], size_t(g.N) * 4), 0)
          << c.desc() << ": unsplit gemm.vec128 and the tiled gemm differ in row " << r;
  }
}

TEST(BackendOps, SelectiveScanStep) {
  DM_REQUIRE_DEVICE_BACKENDS();
  // L here is the batch.
  const std::vector<ScanCase> cases = {
      {1, 1536, 16, true, DType::F32, true}, {2, 4096, 16, true, DType::F16, false},
      {3, 5120, 16, false, DType::BF16, true}, {4, 7, 16, true, DType::F32, false},
      {2, 33, 5, true, DType::F32, true},
  };
  for (const std::string& name : kBackends)
    for (size_t i = 0; i < cases.size(); ++i) {
      const ScanCase& s = cases[i];
      std::ostringstream d;
      d << "selective_scan_step batch=" << s.L << " C=" << s.C << " N=" << s.N << " z=" << s.z
        << " w=" << dt(s.w_dtype) << " strided=" << s.strided;
      Case c(name, d.str(), 9000 + uint32_t(i));
      Arg* a[10];
      scan_inputs(c, s, true, a);
      Tensor zc, zd;
      if (a[6]) { zc = a[6]->cpu(); zd = a[6]->dev(); }
      c.cpu().selective_scan_step(a[0]->cpu(), a[1]->cpu(), a[2]->cpu(), a[3]->cpu(), a[4]->cpu(), a[5]->cpu(),
                                  a[6] ? &zc : nullptr, a[7]->cpu(), a[8]->cpu(), a[9]->cpu());
      c.dev().selective_scan_step(a[0]->dev(), a[1]->dev(), a[2]->dev(), a[3]->dev(), a[4]->dev(), a[5]->dev(),
                                  a[6] ? &zd : nullptr, a[7]->dev(), a[8]->dev(), a[9]->dev());
      c.check(kTolScan);
    }
}

// Tensors larger than one binding may address (Vulkan: maxStorageBufferRange, 128 MiB on
// lavapipe, less than a tied fp32 130m embedding) are split by the backend: GEMM over M and N,
// row-wise kernels over rows, conv and scan over time with the state carried, gather over
// windows of source rows. Here the device backend is created with bindings clamped to 64 KiB
// (DM_VULKAN_MAX_BINDING_BYTES; backends without such a limit ignore it) so every split path
// runs on small data.
TEST(BackendOps, SplitOversizedTensors) {
  DM_REQUIRE_DEVICE_BACKENDS();
  for (const std::string& name : kBackends) {
    setenv("DM_VULKAN_MAX_BINDING_BYTES", "65536", 1);
    std::unique_ptr<Backend> clamped;  // its own instance: the cached one has no clamp
    try {
      clamped = create_backend(name);
    } catch (...) {
      unsetenv("DM_VULKAN_MAX_BINDING_BYTES");
      throw;
    }
    unsetenv("DM_VULKAN_MAX_BINDING_BYTES");
    Backends be{&test::cached_backend("cpu"), clamped.get()};
    {
      Case c(be, name, "split gemm M=300 N=700 K=96 (x 112 KiB, w 262 KiB F32, y 820 KiB)", 12000);
      Arg& x = c.add("x", Role::In, DType::F32, 300, 96, 96, c.nonzero(0.1f, 1.f));
      Arg& w = c.add("w", Role::In, DType::F32, 700, 96, 96, c.nonzero(0.01f, 0.1f));
      Arg& b = c.add("bias", Role::In, DType::BF16, 700, 1, 1, c.nonzero(0.1f, 1.f));
      Arg& y = c.add("y", Role::Out, DType::F32, 300, 700, 700, nullptr);
      Tensor bc = b.cpu(), bd = b.dev();
      c.cpu().gemm(x.cpu(), w.cpu(), &bc, y.cpu());
      c.dev().gemm(x.dev(), w.dev(), &bd, y.dev());
      c.check(kTolGemm);
    }
    {
      Case c(be, name, "split rms_norm L=100 D=700 residual", 12001);
      Arg& x = c.add("x", Role::In, DType::F32, 100, 700, 700, c.nonzero(0.1f, 1.f));
      Arg& r = c.add("residual", Role::InOut, DType::F32, 100, 700, 700, c.nonzero(0.1f, 1.f));
      Arg& w = c.add("weight", Role::In, DType::F16, 1, 700, 700, c.nonzero(0.5f, 1.5f));
      Arg& y = c.add("y", Role::Out, DType::F32, 100, 700, 700, nullptr);
      Tensor rc = r.cpu(), rd = r.dev();
      c.cpu().rms_norm(x.cpu(), &rc, w.cpu(), y.cpu(), 1e-5f);
      c.dev().rms_norm(x.dev(), &rd, w.dev(), y.dev(), 1e-5f);
      c.check(kTolNorm);
    }
    {
      Case c(be, name, "split causal_conv1d + selective_scan + dt_importance L=1500 C=40", 12002);
      const int64_t L = 1500, C = 40, N = 16;
      Arg& x = c.add("x", Role::In, DType::F32, L, C, 2 * C, c.nonzero(0.1f, 1.f));
      Arg& cw = c.add("conv_w", Role::In, DType::F32, C, 4, 4, c.nonzero(0.05f, 0.5f));
      Arg& cs = c.add("conv_state", Role::InOut, DType::F32, C, 4, 4, c.nonzero(0.1f, 1.f));
      Arg& xc = c.add("x_conv", Role::Out, DType::F32, L, C, C, nullptr);
      Arg& dl = c.add("delta", Role::In, DType::F32, L, C, C, c.uniform(-3.f, 1.f));
      Arg& al = c.add("A_log", Role::In, DType::F32, C, N, N, c.uniform(0.f, 2.7f));
      Arg& bc = c.add("BC", Role::In, DType::F32, L, 2 * N, 2 * N, c.nonzero(0.1f, 1.f));
      Arg& dd = c.add("D", Role::In, DType::F32, 1, C, C, c.nonzero(0.5f, 1.5f));
      Arg& db = c.add("dt_bias", Role::In, DType::F32, 1, C, C, c.uniform(-4.f, -2.f));
      Arg& ss = c.add("ssm_state", Role::InOut, DType::F32, C, N, N, c.nonzero(0.01f, 1.f));
      Arg& y = c.add("y", Role::Out, DType::F32, L, C, C, nullptr);
      Arg& sc = c.add("scores", Role::Out, DType::F32, L, 1, 1, nullptr);
      for (Backend* b : {&c.cpu(), &c.dev()}) {
        const bool dev = b == &c.dev();
        auto T = [dev](Arg& a) { return dev ? a.dev() : a.cpu(); };
        Tensor xt = T(x), bct = T(bc);
        Tensor z = xt.col_slice(0, C);  // x doubles as the gate
        b->causal_conv1d(xt, T(cw), nullptr, T(cs), T(xc));
        b->selective_scan(T(xc), T(dl), T(al), bct.col_slice(0, N), bct.col_slice(N, N), T(dd), &z,
                          T(db), T(ss), T(y));
        b->dt_importance(T(dl), T(db), T(sc));
      }
      c.check(kTolScan);
    }
    {
      Case c(be, name, "split gather_rows R=3000 cols=40 n=900 F16 (src 234 KiB)", 12003);
      Arg& src = c.add("src", Role::In, DType::F16, 3000, 40, 40, c.nonzero(0.01f, 4.f));
      Arg& idx = c.add("idx", Role::In, DType::I32, 900, 1, 1, [&c](int64_t, int64_t) {
        return float(std::uniform_int_distribution<int>(0, 2999)(c.rng()));
      });
      Arg& dst = c.add("dst", Role::Out, DType::F32, 900, 40, 40, nullptr);
      c.cpu().gather_rows(src.cpu(), idx.cpu(), dst.cpu());
      c.dev().gather_rows(src.dev(), idx.dev(), dst.dev());
      c.check(-1);
    }
  }
}

// A chain of dependent kernels enqueued without any synchronize between them (one batch):
// each reads what the previous wrote, and one buffer is overwritten while a later kernel of
// the batch reads an earlier value of it. Wrong or missing barriers show as a mismatch on a
// real GPU, and as a message under DM_VULKAN_VALIDATION=1 (synchronization validation).
TEST(BackendOps, DependentChainInOneBatch) {
  DM_REQUIRE_DEVICE_BACKENDS();
  const int64_t L = 77, D = 256, C = 512, N = 16;
  for (const std::string& name : kBackends) {
    Case c(name, "chain L=77 D=256 C=512", 11000);
    Arg& h = c.add("hidden", Role::InOut, DType::F32, L, D, D, c.nonzero(0.1f, 1.f));
    Arg& res = c.add("residual", Role::InOut, DType::F32, L, D, D, c.nonzero(0.1f, 1.f));
    Arg& nw = c.add("norm_w", Role::In, DType::F16, 1, D, D, c.nonzero(0.5f, 1.5f));
    Arg& w_in = c.add("in_proj", Role::In, DType::BF16, 2 * C, D, D, c.nonzero(0.01f, 0.1f));
    Arg& xz = c.add("xz", Role::InOut, DType::F32, L, 2 * C, 2 * C, c.nonzero(0.1f, 1.f));
    Arg& cw = c.add("conv_w", Role::In, DType::F32, C, 4, 4, c.nonzero(0.05f, 0.5f));
    Arg& cs = c.add("conv_state", Role::InOut, DType::F32, C, 4, 4, c.nonzero(0.1f, 1.f));
    Arg& xc = c.add("x_conv", Role::InOut, DType::F32, L, C, C, c.nonzero(0.1f, 1.f));
    Arg& dlt = c.add("delta", Role::In, DType::F32, L, C, C, c.uniform(-3.f, 1.f));
    Arg& al = c.add("A_log", Role::In, DType::F32, C, N, N, c.uniform(0.f, 2.7f));
    Arg& bc = c.add("BC", Role::In, DType::F32, L, 2 * N, 2 * N, c.nonzero(0.1f, 1.f));
    Arg& dd = c.add("D", Role::In, DType::F32, 1, C, C, c.nonzero(0.5f, 1.5f));
    Arg& db = c.add("dt_bias", Role::In, DType::F32, 1, C, C, c.uniform(-4.f, -2.f));
    Arg& ss = c.add("ssm_state", Role::InOut, DType::F32, C, N, N, c.nonzero(0.01f, 1.f));
    Arg& y = c.add("y", Role::InOut, DType::F32, L, C, C, c.nonzero(0.1f, 1.f));
    Arg& w_out = c.add("out_proj", Role::In, DType::F16, D, C, C, c.nonzero(0.01f, 0.1f));
    for (Backend* be : {&c.cpu(), &c.dev()}) {
      const bool dev = be == &c.dev();
      auto T = [dev](Arg& a) { return dev ? a.dev() : a.cpu(); };
      for (int layer = 0; layer < 2; ++layer) {
        Tensor r = T(res), xzt = T(xz), bct = T(bc);
        be->rms_norm(T(h), &r, T(nw), T(h), 1e-5f);                 // in place on hidden
        be->gemm(T(h), T(w_in), nullptr, xzt);                       // (L, 2C)
        be->causal_conv1d(xzt.col_slice(0, C), T(cw), nullptr, T(cs), T(xc));
        Tensor z = xzt.col_slice(C, C);
        be->selective_scan(T(xc), T(dlt), T(al), bct.col_slice(0, N), bct.col_slice(N, N), T(dd), &z,
                           T(db), T(ss), T(y));
        be->gemm(T(y), T(w_out), nullptr, T(h));                     // overwrites hidden
      }
    }
    c.check(1e-8);
  }
}

#ifdef DM_HAVE_VULKAN
// The recorder derives barriers from declared accesses: dispatches that touch disjoint data
// (here: two halves of one buffer, the x and z halves of an xz-like matrix) share a batch with
// no barrier; a read of what an earlier dispatch wrote gets exactly one. Nothing is submitted
// until a download, and a whole chain goes in one submit.
TEST(BackendOpsVulkan, RecorderDerivesBarriersAndBatches) {
  if (!test::backend_available("vulkan")) GTEST_SKIP() << skip_reason();
  std::unique_ptr<Backend> be = create_vulkan_backend(0);
  const int64_t L = 64, C = 256;
  auto buf = be->alloc(size_t(L * 2 * C * 4));
  auto wbuf = be->alloc(size_t(C * 4));
  auto out = be->alloc(size_t(L * 2 * C * 4));
  std::vector<float> host(size_t(L * 2 * C), 0.5f), two(size_t(C), 2.f);
  be->upload(*buf, 0, host.data(), host.size() * 4);
  be->upload(*wbuf, 0, two.data(), size_t(C * 4));
  be->synchronize();
  const Tensor xz = make_tensor(*buf, DType::F32, L, 2 * C), w = make_tensor(*wbuf, DType::F32, 1, C);
  const Tensor o = make_tensor(*out, DType::F32, L, 2 * C);
  VulkanStats s0, s1, s2, s3;
  ASSERT_TRUE(vulkan_stats(*be, &s0));
  be->rms_norm(xz.col_slice(0, C), nullptr, w, o.col_slice(0, C), 1e-5f);  // reads x, writes o.x
  be->rms_norm(xz.col_slice(C, C), nullptr, w, o.col_slice(C, C), 1e-5f);  // reads z, writes o.z
  ASSERT_TRUE(vulkan_stats(*be, &s1));
  EXPECT_EQ(s1.dispatches - s0.dispatches, 2u);
  // One barrier: the first dispatch reads what the uploads wrote (tracking spans submits).
  // Under the validation layer column slices are tracked by their hulls (it sees no finer).
  const bool hulls = std::getenv("DM_VULKAN_VALIDATION") != nullptr;
  EXPECT_EQ(s1.barriers - s0.barriers, hulls ? 2u : 1u) << "independent dispatches were serialised";
  be->rms_norm(o.col_slice(0, C), nullptr, w, xz.col_slice(0, C), 1e-5f);  // reads o.x: RAW
  ASSERT_TRUE(vulkan_stats(*be, &s2));
  EXPECT_EQ(s2.barriers - s1.barriers, 1u) << "read-after-write without exactly one barrier";
  be->rms_norm(xz.col_slice(C, C), nullptr, w, o.col_slice(C, C), 1e-5f);  // o.z again: WAW
  ASSERT_TRUE(vulkan_stats(*be, &s3));
  EXPECT_EQ(s3.barriers - s2.barriers, hulls ? 1u : 0u)
      << "o.z's write was already ordered by the last barrier";
  EXPECT_EQ(s3.submits, s0.submits) << "work was submitted before anything waited on it";
  std::vector<float> back(size_t(L * 2 * C));
  be->download(*buf, 0, back.data(), back.size() * 4);
  VulkanStats s4;
  ASSERT_TRUE(vulkan_stats(*be, &s4));
  EXPECT_EQ(s4.submits - s3.submits, 1u) << "a chain plus its download should be one submit";
  // A constant row c normalises to 1 · w = 2: x became 2 (twice normalised), z stayed 0.5.
  for (int64_t t = 0; t < L; ++t) {
    EXPECT_NEAR(back[size_t(t * 2 * C)], 2.f, 1e-5f);
    EXPECT_EQ(back[size_t(t * 2 * C + C)], 0.5f) << "z must be untouched";
  }
}

// The recorder's overlap test decides where barriers go: against brute force on random strided
// views it must never say "disjoint" when bytes are shared (and be exact for equal strides).
TEST(BackendOpsVulkan, StridedOverlapIsExact) {
  std::mt19937 rng(77);
  auto rnd = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  for (int iter = 0; iter < 20000; ++iter) {
    struct View { uint64_t begin, end, rows, row_bytes, stride; } a, b;
    const uint64_t S = uint64_t(rnd(1, 12)) * 4;
    for (View* u : {&a, &b}) {
      u->stride = rnd(0, 4) == 0 ? uint64_t(rnd(1, 12)) * 4 : S;
      u->rows = uint64_t(rnd(1, 6));
      u->row_bytes = uint64_t(rnd(1, int(u->stride)));
      u->begin = uint64_t(rnd(0, 60));
      u->end = u->begin + (u->rows - 1) * u->stride + u->row_bytes;
    }
    std::vector<int> mark(512, 0);
    for (uint64_t r = 0; r < a.rows; ++r)
      for (uint64_t x = 0; x < a.row_bytes; ++x) mark[a.begin + r * a.stride + x] = 1;
    bool truth = false;
    for (uint64_t r = 0; r < b.rows; ++r)
      for (uint64_t x = 0; x < b.row_bytes; ++x) truth |= mark[b.begin + r * b.stride + x] == 1;
    const bool got = vulkan_strided_overlap(a.begin, a.rows, a.row_bytes, a.stride, b.begin, b.rows,
                                            b.row_bytes, b.stride);
    if (truth) {
      ASSERT_TRUE(got) << "missed overlap: a " << a.begin << "+" << a.rows << "x" << a.row_bytes << "/"
                       << a.stride << " b " << b.begin << "+" << b.rows << "x" << b.row_bytes << "/" << b.stride;
    }
    if (a.stride == b.stride) {
      ASSERT_EQ(got, truth) << "equal strides must be exact";
    }
  }
}

// --profile: timestamps per dispatch, summed per kernel (pass) name.
TEST(BackendOpsVulkan, ProfileTable) {
  if (!test::backend_available("vulkan")) GTEST_SKIP() << skip_reason();
  std::unique_ptr<Backend> be = create_vulkan_backend(0);
  ASSERT_TRUE(vulkan_set_profiling(*be, true));
  const int64_t L = 300, C = 64, N = 16;
  std::vector<float> host(size_t(L * C), 0.25f);
  auto u = be->alloc(host.size() * 4), y = be->alloc(host.size() * 4), a = be->alloc(size_t(C * N * 4)),
       bc = be->alloc(size_t(L * 2 * N * 4)), v = be->alloc(size_t(C * 4)), st = be->alloc(size_t(C * N * 4));
  for (Buffer* b : {u.get(), y.get()}) be->upload(*b, 0, host.data(), host.size() * 4);
  for (Buffer* b : {a.get(), v.get(), st.get()}) be->upload(*b, 0, host.data(), b->bytes());
  be->upload(*bc, 0, host.data(), bc->bytes());
  const Tensor tu = make_tensor(*u, DType::F32, L, C), ty = make_tensor(*y, DType::F32, L, C);
  const Tensor tb = make_tensor(*bc, DType::F32, L, 2 * N), tv = make_tensor(*v, DType::F32, 1, C);
  be->selective_scan(tu, tu, make_tensor(*a, DType::F32, C, N), tb.col_slice(0, N), tb.col_slice(N, N), tv,
                     nullptr, tv, make_tensor(*st, DType::F32, C, N), ty);
  be->rms_norm(tu, nullptr, tv, ty, 1e-5f);
  const auto rows = vulkan_profile(*be);
  std::vector<std::string> names;
  for (const auto& r : rows) {
    names.push_back(r.kernel);
    EXPECT_GT(r.dispatches, 0u);
    EXPECT_GE(r.total_us, 0.0);
  }
  // The scan is one look-back pass by default, the chunked scan's three passes where that is
  // selected (DM_VULKAN_SCAN=chunked, or d_state other than 16).
  const bool lookback = std::find(names.begin(), names.end(), "selective_scan.lookback") != names.end();
  std::vector<const char*> wants = {"rms_norm"};
  if (lookback) wants.push_back("selective_scan.lookback");
  else wants.insert(wants.end(), {"selective_scan", "selective_scan.chunk_state", "selective_scan.combine"});
  for (const char* want : wants)
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << "no profile row for " << want;
  const std::string table = vulkan_profile_table(*be);
  EXPECT_NE(table.find(lookback ? "selective_scan.lookback" : "selective_scan.combine"), std::string::npos) << table;
  EXPECT_TRUE(vulkan_set_profiling(*be, false));
}

// Out of device memory is one clear line, and the backend stays usable.
TEST(BackendOpsVulkan, OutOfMemoryIsAClearError) {
  if (!test::backend_available("vulkan")) GTEST_SKIP() << skip_reason();
  std::unique_ptr<Backend> be = create_vulkan_backend(0);
  try {
    be->alloc(size_t(1) << 50);  // 1 PiB
    ADD_FAILURE() << "a 1 PiB allocation succeeded";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.rfind("[vulkan] ", 0), 0u) << m;
    EXPECT_NE(m.find("MEMORY"), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
  auto buf = be->alloc(64);
  const float v[4] = {1, 2, 3, 4};
  float back[4] = {};
  be->upload(*buf, 0, v, sizeof v);
  be->download(*buf, 0, back, sizeof back);
  EXPECT_EQ(back[3], 4.f);
}

// Device selection: indices follow list_vulkan_devices(); one past the end fails with a clear
// one-line message naming how many devices exist.
TEST(BackendOpsVulkan, DeviceSelection) {
  std::string why;
  const auto devs = list_vulkan_devices(&why);
  if (devs.empty()) GTEST_SKIP() << "no Vulkan device: " << why;
  for (const auto& d : devs) {
    EXPECT_FALSE(d.name.empty());
    EXPECT_NE(d.caps.find("subgroup"), std::string::npos) << d.caps;
  }
  auto be = create_vulkan_backend(int(devs.size()) - 1);
  EXPECT_EQ(be->device_name(), devs.back().name);
  try {
    create_vulkan_backend(int(devs.size()));
    ADD_FAILURE() << "device " << devs.size() << " should not exist";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[vulkan] device"), std::string::npos) << e.what();
  }
}
#endif

}  // namespace
}  // namespace dm
