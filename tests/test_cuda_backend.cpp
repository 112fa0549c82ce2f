// The CUDA backend against the CPU backend (the oracle) on random inputs: every kernel, real
// Mamba widths and awkward edge shapes, strided views, F16/BF16 weights, non-zero incoming state,
// lengths around the scan's 64-token chunk. Every tensor sits between sentinel guard regions
// (and strided gaps) that must come back untouched, on both backends. A failure prints the case
// on one line. Also: graph record/replay of decode kernels, gather_rows' deferred bad-index error,
// and the no-device message. Skips, saying why, where no CUDA device is usable.
//
// Tolerances (NMSE, Σ(cuda-cpu)² / Σcpu²): fp32 kernels 1e-9 (both sides are fp32; the CUDA scan
// reassociates the sum over states and uses exp2; measured values are printed); GEMM with BF16
// weights 1e-8 (for M > 8 the activations reach the tensor cores as bf16 hi + lo: 16 significant
// bits); dt_importance 1e-12; topk_indices and gather_rows exact.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_graph.h"
#include "core/dtype.h"
#include "core/error.h"

namespace dm {
namespace {

constexpr size_t kGuard = 256;  // bytes before and after every tensor
constexpr uint8_t kSentinel = 0xA5;

std::string cuda_unavailable_reason() {
  for (const BackendInfo& b : list_backends())
    if (b.name == "cuda") return b.available ? "" : b.detail;
  return "not listed";
}

#define REQUIRE_CUDA()                                                         \
  do {                                                                         \
    const std::string why = cuda_unavailable_reason();                         \
    if (!why.empty()) GTEST_SKIP() << "cuda backend unavailable: " << why;     \
  } while (0)

// A tensor with the same contents on the CPU and the CUDA backend.
struct Dual {
  DType dt;
  int64_t rows, cols, stride;
  std::vector<uint8_t> init;  // guard + body + guard, as uploaded
  std::unique_ptr<Buffer> bc, bg;
  Tensor tc, tg;
  size_t span() const { return rows == 0 ? 0 : size_t((rows - 1) * stride + cols) * dtype_size(dt); }
};

struct Env {
  std::unique_ptr<Backend> cpu = create_backend("cpu");
  std::unique_ptr<Backend> gpu = create_backend("cuda");
  std::mt19937 rng{1234};

  // gen(r, c) gives the value (floats are stored in dt; I32 takes the float's integer value).
  template <typename Gen>
  Dual make(DType dt, int64_t rows, int64_t cols, int64_t stride, Gen gen) {
    Dual d{dt, rows, cols, stride, {}, nullptr, nullptr, {}, {}};
    const size_t es = dtype_size(dt);
    d.init.assign(kGuard + d.span() + kGuard, kSentinel);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        uint8_t* p = d.init.data() + kGuard + size_t(r * stride + c) * es;
        const float v = gen(r, c);
        if (dt == DType::F32) std::memcpy(p, &v, 4);
        if (dt == DType::I32) { const int32_t i = int32_t(v); std::memcpy(p, &i, 4); }
        if (dt == DType::F16) { const uint16_t h = f32_to_f16(v); std::memcpy(p, &h, 2); }
        if (dt == DType::BF16) { const uint16_t h = f32_to_bf16(v); std::memcpy(p, &h, 2); }
      }
    d.bc = cpu->alloc(d.init.size());
    d.bg = gpu->alloc(d.init.size());
    cpu->upload(*d.bc, 0, d.init.data(), d.init.size());
    gpu->upload(*d.bg, 0, d.init.data(), d.init.size());
    d.tc = Tensor{d.bc.get(), kGuard, dt, rows, cols, stride};
    d.tg = Tensor{d.bg.get(), kGuard, dt, rows, cols, stride};
    return d;
  }
  Dual randn(DType dt, int64_t rows, int64_t cols, int64_t stride = -1, float scale = 1.f,
             float shift = 0.f) {
    std::normal_distribution<float> n(0.f, 1.f);
    return make(dt, rows, cols, stride < 0 ? cols : stride,
                [&](int64_t, int64_t) { return shift + scale * n(rng); });
  }

  // Checks the guards and gaps of both copies and returns the body as floats (cpu, gpu).
  std::pair<std::vector<float>, std::vector<float>> read(const Dual& d, const std::string& what) {
    std::vector<uint8_t> hc(d.init.size()), hg(d.init.size());
    cpu->download(*d.bc, 0, hc.data(), hc.size());
    gpu->download(*d.bg, 0, hg.data(), hg.size());
    const size_t es = dtype_size(d.dt);
    std::vector<bool> body(d.init.size(), false);
    for (int64_t r = 0; r < d.rows; ++r)
      for (size_t b = 0; b < size_t(d.cols) * es; ++b) body[kGuard + size_t(r * d.stride) * es + b] = true;
    size_t bad = 0;
    for (size_t i = 0; i < hg.size(); ++i)
      if (!body[i] && (hg[i] != d.init[i] || hc[i] != d.init[i])) ++bad;
    EXPECT_EQ(bad, 0u) << what << ": bytes outside the tensor were written";
    std::vector<float> vc, vg;
    for (int64_t r = 0; r < d.rows; ++r)
      for (int64_t c = 0; c < d.cols; ++c) {
        const size_t o = kGuard + size_t(r * d.stride + c) * es;
        vc.push_back(d.dt == DType::I32 ? float(*reinterpret_cast<int32_t*>(&hc[o]))
                                        : load_as_f32(&hc[o], d.dt, 0));
        vg.push_back(d.dt == DType::I32 ? float(*reinterpret_cast<int32_t*>(&hg[o]))
                                        : load_as_f32(&hg[o], d.dt, 0));
      }
    return {vc, vg};
  }
  // NMSE of the gpu copy against the cpu copy; NaN if either has a non-finite value.
  double nmse(const Dual& d, const std::string& what) {
    auto [c, g] = read(d, what);
    double num = 0, den = 0;
    for (size_t i = 0; i < c.size(); ++i) {
      if (!std::isfinite(c[i]) || !std::isfinite(g[i])) return std::nan("");
      num += double(g[i] - c[i]) * double(g[i] - c[i]);
      den += double(c[i]) * double(c[i]);
    }
    return den == 0 ? (num == 0 ? 0 : std::nan("")) : num / den;
  }
  bool equal(const Dual& d, const std::string& what) {
    auto [c, g] = read(d, what);
    for (size_t i = 0; i < c.size(); ++i)
      if (!(c[i] == g[i]) && !(std::isnan(c[i]) && std::isnan(g[i]))) {
        ADD_FAILURE() << what << ": element " << i << " cpu " << c[i] << " cuda " << g[i];
        return false;
      }
    return true;
  }
};

#define EXPECT_NMSE(env, d, tol, what)                                  \
  do {                                                                  \
    const double e_ = (env).nmse((d), (what));                          \
    EXPECT_LE(e_, (tol)) << (what);                                     \
    if (e_ <= (tol)) std::printf("  %-90s nmse %.2e\n", std::string(what).c_str(), e_); \
  } while (0)

TEST(CudaBackend, NoDeviceMessageOrDeviceName) {
  const std::string why = cuda_unavailable_reason();
  if (why == "not listed") GTEST_SKIP() << "cuda is not in list_backends()";
  if (why.empty()) {
    auto be = create_backend("cuda");
    EXPECT_EQ(be->name(), "cuda");
    EXPECT_FALSE(be->device_name().empty());
    EXPECT_THROW(create_backend("cuda", 4096), Error);
  } else {
    try {
      create_backend("cuda");
      ADD_FAILURE() << "create_backend(cuda) succeeded though probe said: " << why;
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("cuda"), std::string::npos) << msg;
      if (why.find("not built") == std::string::npos) {
        EXPECT_NE(msg.find("no CUDA device"), std::string::npos) << msg;
      }
    }
  }
}

TEST(CudaBackend, Gemm) {
  REQUIRE_CUDA();
  Env env;
  struct Case { int64_t M, N, K, xpad; bool bias; };
  const Case cases[] = {{1, 1536, 768, 0, false},  {7, 33, 65, 3, true},   {128, 3072, 768, 0, false},
                        {300, 80, 1536, 0, false}, {64, 1536, 48, 32, true}, {1, 50280, 64, 0, false},
                        {513, 768, 1536, 0, false}};
  for (DType wt : {DType::F32, DType::F16, DType::BF16})
    for (const Case& c : cases) {
      std::ostringstream name;
      name << "gemm M=" << c.M << " N=" << c.N << " K=" << c.K << " x_stride=" << c.K + c.xpad
           << " w=" << dtype_name(wt) << " bias=" << c.bias;
      Dual x = env.randn(DType::F32, c.M, c.K, c.K + c.xpad);
      Dual w = env.randn(wt, c.N, c.K, c.K, 1.f / std::sqrt(float(c.K)));
      Dual b = env.randn(DType::F16, 1, c.N);
      Dual y = env.randn(DType::F32, c.M, c.N, c.N + 5);
      env.cpu->gemm(x.tc, w.tc, c.bias ? &b.tc : nullptr, y.tc);
      env.gpu->gemm(x.tg, w.tg, c.bias ? &b.tg : nullptr, y.tg);
      const double tol = wt == DType::BF16 ? 1e-8 : 1e-9;
      EXPECT_NMSE(env, y, tol, name.str());
      EXPECT_TRUE(env.equal(x, name.str() + " x unchanged"));
    }
}

// The model's weights come through upload_constant; the tensor-core GEMM then keeps a
// K-concatenated copy of each (rows W | W) and runs one GEMM over the operand's hi | lo rows
// (cuda_gemm.cpp). Against the CPU: the copy on (DM_CUDA_GEMM_KCAT=1) and off, at the shapes of
// DeciMamba's 2,000-row layers and a ragged one; a weight view inside a bigger constant buffer
// (offset, row stride); an upload into the buffer afterwards must be seen (the copy is derived
// from the old contents); a bad setting fails with its message.
// An environment variable set for a scope.
struct EnvSetting {
  EnvSetting(const char* k, const char* v) : key(k) { setenv(k, v, 1); }
  ~EnvSetting() { unsetenv(key); }
  const char* key;
};

// w's GPU image as a constant buffer (upload_constant: the model's weights; w's guard bytes
// put it at an offset there) and the tensor that views it.
struct ConstantWeight {
  std::unique_ptr<Buffer> buf;
  Tensor t;
};
ConstantWeight constant_weight(Env& env, const Dual& w) {
  ConstantWeight c{env.gpu->upload_constant(w.init.data(), w.init.size()), w.tg};
  c.t.buf = c.buf.get();
  return c;
}

// A tensor-core GEMM with constant (model) weights must fail with `message` (a bad setting).
void expect_constant_gemm_refused(Env& env, const std::string& message) {
  Dual x = env.randn(DType::F32, 16, 32);
  Dual w = env.randn(DType::F16, 8, 32);
  const ConstantWeight wc = constant_weight(env, w);
  Dual y = env.randn(DType::F32, 16, 8);
  try {
    env.gpu->gemm(x.tg, wc.t, nullptr, y.tg);
    ADD_FAILURE() << "accepted; wanted: " << message;
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
  }
}

TEST(CudaBackend, GemmConstantWeights) {
  REQUIRE_CUDA();
  Env env;
  struct Case { int64_t M, N, K, wpad; };
  const Case cases[] = {{2000, 80, 1536, 0}, {2000, 1536, 48, 0}, {2000, 768, 1536, 0},
                        {300, 200, 333, 5}, {9, 64, 40, 0}};
  for (const char* kcat : {"1", "0"})
    for (DType wt : {DType::F16, DType::BF16})
      for (const Case& c : cases) {
        const EnvSetting setting("DM_CUDA_GEMM_KCAT", kcat);
        std::ostringstream name;
        name << "gemm constant w M=" << c.M << " N=" << c.N << " K=" << c.K
             << " w_stride=" << c.K + c.wpad << " w=" << dtype_name(wt) << " kcat=" << kcat;
        Dual x = env.randn(DType::F32, c.M, c.K);
        Dual w = env.randn(wt, c.N, c.K, c.K + c.wpad, 1.f / std::sqrt(float(c.K)));
        const ConstantWeight wc = constant_weight(env, w);
        Dual y = env.randn(DType::F32, c.M, c.N);
        env.cpu->gemm(x.tc, w.tc, nullptr, y.tc);
        env.gpu->gemm(x.tg, wc.t, nullptr, y.tg);
        EXPECT_NMSE(env, y, wt == DType::BF16 ? 1e-8 : 1e-9, name.str());
        // New weights into both copies: the GPU's K-concatenated copy must not be reused.
        Dual w2 = env.randn(wt, c.N, c.K, c.K + c.wpad, 1.f / std::sqrt(float(c.K)));
        env.cpu->upload(*w.bc, 0, w2.init.data(), w2.init.size());
        env.gpu->upload(*wc.buf, 0, w2.init.data(), w2.init.size());
        env.cpu->gemm(x.tc, w.tc, nullptr, y.tc);
        env.gpu->gemm(x.tg, wc.t, nullptr, y.tg);
        EXPECT_NMSE(env, y, wt == DType::BF16 ? 1e-8 : 1e-9, name.str() + " after an upload");
      }
  const EnvSetting bad("DM_CUDA_GEMM_KCAT", "yes");
  expect_constant_gemm_refused(env, "DM_CUDA_GEMM_KCAT must be 0 or 1");
}

// The shapes of cuda_gemm_algo.cpp's tile exceptions (K-concatenated: the GEMM's K is 2K), with
// the table on and off, against the CPU; a bad DM_CUDA_GEMM_TABLE is refused.
TEST(CudaBackend, GemmAlgoTable) {
  REQUIRE_CUDA();
  Env env;
  struct Case { int64_t M, N, K, ypad; };
  const Case cases[] = {{4096, 3072, 768, 0}, {2000, 768, 1536, 0}, {2001, 768, 1536, 3},
                        {2000, 192, 5120, 0}, {4096, 5120, 160, 0}};
  const EnvSetting kcat("DM_CUDA_GEMM_KCAT", "1");
  for (const Case& c : cases) {
    Dual x = env.randn(DType::F32, c.M, c.K);
    Dual w = env.randn(DType::F16, c.N, c.K, c.K, 1.f / std::sqrt(float(c.K)));
    const ConstantWeight wc = constant_weight(env, w);
    Dual y = env.randn(DType::F32, c.M, c.N, c.N + c.ypad);
    env.cpu->gemm(x.tc, w.tc, nullptr, y.tc);
    for (const char* table : {"1", "0"}) {
      const EnvSetting on("DM_CUDA_GEMM_TABLE", table);
      std::ostringstream name;
      name << "gemm M=" << c.M << " N=" << c.N << " K=" << c.K << " y_stride=" << c.N + c.ypad
           << " table=" << table;
      env.gpu->gemm(x.tg, wc.t, nullptr, y.tg);
      EXPECT_NMSE(env, y, 1e-9, name.str());
    }
  }
  const EnvSetting bad("DM_CUDA_GEMM_TABLE", "yes");
  expect_constant_gemm_refused(env, "DM_CUDA_GEMM_TABLE must be 0 or 1");
}

// gemv_rows (one-row GEMVs, cuda/gemv_rows.cu) in every block shape (DM_CUDA_GEMV_SHAPE=KSxRW:
// KS warps per row, RW rows per warp) and its default, against the CPU: rows past N in the last
// block (N = 203, 515, 300), K whose chunks leave lanes idle or take several steps (1000: 125
// chunks of 8; 2560; 96), every weight dtype, bias; Dual's guard bytes catch stores past N. A
// malformed shape fails with its one line.
TEST(CudaBackend, GemvRowsShapes) {
  REQUIRE_CUDA();
  Env env;
  struct Case { int64_t N, K; DType wt; bool bias; };
  const Case cases[] = {{203, 1000, DType::F16, true}, {515, 2560, DType::BF16, false},
                        {300, 96, DType::F32, true}, {2048, 768, DType::F16, false}};
  const char* shapes[] = {"", "2x1", "2x2", "2x4", "4x1", "4x2", "4x4", "8x1", "8x2", "8x4"};
  for (const Case& c : cases) {
    Dual x = env.randn(DType::F32, 1, c.K);
    Dual w = env.randn(c.wt, c.N, c.K, c.K, 1.f / std::sqrt(float(c.K)));
    Dual b = env.randn(DType::F16, 1, c.N);
    for (const char* shape : shapes) {
      std::ostringstream name;
      name << "gemv_rows " << (*shape ? shape : "default") << " N=" << c.N << " K=" << c.K
           << " w=" << dtype_name(c.wt) << " bias=" << c.bias;
      if (*shape) setenv("DM_CUDA_GEMV_SHAPE", shape, 1);
      Dual y = env.randn(DType::F32, 1, c.N);
      env.cpu->gemm(x.tc, w.tc, c.bias ? &b.tc : nullptr, y.tc);
      env.gpu->gemm(x.tg, w.tg, c.bias ? &b.tg : nullptr, y.tg);
      unsetenv("DM_CUDA_GEMV_SHAPE");
      EXPECT_NMSE(env, y, c.wt == DType::BF16 ? 1e-8 : 1e-9, name.str());
    }
  }
  Dual x = env.randn(DType::F32, 1, 64), w = env.randn(DType::F16, 32, 64), y = env.randn(DType::F32, 1, 32);
  setenv("DM_CUDA_GEMV_SHAPE", "3x4", 1);
  try {
    env.gpu->gemm(x.tg, w.tg, nullptr, y.tg);
    ADD_FAILURE() << "DM_CUDA_GEMV_SHAPE=3x4 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("DM_CUDA_GEMV_SHAPE=3x4"), std::string::npos) << e.what();
  }
  unsetenv("DM_CUDA_GEMV_SHAPE");
}

// DM_CUDA_ARGMAX (grid | block; both forms run in BackendOps.Argmax): any other value is refused
// with one line naming it, not silently read as the default.
TEST(CudaBackend, ArgmaxSwitchError) {
  REQUIRE_CUDA();
  Env env;
  Dual x = env.randn(DType::F32, 1, 1000), idx = env.randn(DType::I32, 1, 1);
  setenv("DM_CUDA_ARGMAX", "fast", 1);
  try {
    env.gpu->argmax(x.tg, 1000, idx.tg);
    ADD_FAILURE() << "DM_CUDA_ARGMAX=fast was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("DM_CUDA_ARGMAX=fast"), std::string::npos) << e.what();
  }
  unsetenv("DM_CUDA_ARGMAX");
}

TEST(CudaBackend, RmsNorm) {
  REQUIRE_CUDA();
  Env env;
  for (int64_t L : {1, 17, 256})
    for (int64_t D : {1, 768, 2560})
      for (bool res : {false, true})
        for (DType wt : {DType::F32, DType::BF16}) {
          std::ostringstream name;
          name << "rms_norm L=" << L << " D=" << D << " residual=" << res << " w=" << dtype_name(wt);
          Dual x = env.randn(DType::F32, L, D, D + 3);
          Dual r = env.randn(DType::F32, L, D, D, 3.f);
          Dual w = env.randn(wt, 1, D, D, 0.3f, 1.f);
          Dual y = env.randn(DType::F32, L, D, D + 1);
          env.cpu->rms_norm(x.tc, res ? &r.tc : nullptr, w.tc, y.tc, 1e-5f);
          env.gpu->rms_norm(x.tg, res ? &r.tg : nullptr, w.tg, y.tg, 1e-5f);
          EXPECT_NMSE(env, y, 1e-9, name.str());
          if (res) EXPECT_NMSE(env, r, 1e-12, name.str() + " residual");
        }
}

TEST(CudaBackend, CausalConv1dAndStep) {
  REQUIRE_CUDA();
  Env env;
  for (int64_t L : {1, 2, 3, 5, 31, 32, 33, 1000})
    for (int64_t C : {37, 1536})
      for (int64_t d : {2, 4})
        for (bool bias : {false, true}) {
          std::ostringstream name;
          name << "causal_conv1d L=" << L << " C=" << C << " d_conv=" << d << " bias=" << bias;
          Dual xz = env.randn(DType::F32, L, 2 * C);  // x is the left half, as in the executor
          Dual w = env.randn(DType::BF16, C, d, d, 0.5f);
          Dual b = env.randn(DType::F32, 1, C);
          Dual st = env.randn(DType::F32, C, d);
          Dual y = env.randn(DType::F32, L, C);
          const Tensor xc = xz.tc.col_slice(0, C), xg = xz.tg.col_slice(0, C);
          env.cpu->causal_conv1d(xc, w.tc, bias ? &b.tc : nullptr, st.tc, y.tc);
          env.gpu->causal_conv1d(xg, w.tg, bias ? &b.tg : nullptr, st.tg, y.tg);
          EXPECT_NMSE(env, y, 1e-9, name.str());
          EXPECT_TRUE(env.equal(st, name.str() + " conv_state"));
        }
  for (int64_t batch : {1, 3})
    for (int64_t d : {1, 4}) {
      const int64_t C = 1536;
      std::ostringstream name;
      name << "causal_conv1d_step batch=" << batch << " C=" << C << " d_conv=" << d;
      Dual w = env.randn(DType::F16, C, d, d, 0.5f);
      Dual b = env.randn(DType::BF16, 1, C);
      Dual st = env.randn(DType::F32, batch * C, d);
      Dual y = env.randn(DType::F32, batch, C, C + 7);
      for (int step = 0; step < 5; ++step) {
        Dual x = env.randn(DType::F32, batch, 2 * C);
        env.cpu->causal_conv1d_step(x.tc.col_slice(0, C), w.tc, &b.tc, st.tc, y.tc);
        env.gpu->causal_conv1d_step(x.tg.col_slice(0, C), w.tg, &b.tg, st.tg, y.tg);
        EXPECT_NMSE(env, y, 1e-9, name.str() + " step " + std::to_string(step));
        EXPECT_TRUE(env.equal(st, name.str() + " conv_state"));
      }
    }
}

// The scan's inputs laid out as the executor makes them: z in xz, B and C in x_dbl.
struct ScanInputs {
  Dual xz, u, delta, x_dbl, A_log, D, dt_bias, state, y;
  int64_t R, N;
};

ScanInputs scan_inputs(Env& env, int64_t L, int64_t C, int64_t N, int64_t R, DType wt,
                       int64_t state_rows) {
  std::uniform_real_distribution<float> alog(0.f, 2.8f);
  ScanInputs s{env.randn(DType::F32, L, 2 * C),
               env.randn(DType::F32, L, C),
               env.randn(DType::F32, L, C, C, 1.f, -2.f),
               env.randn(DType::F32, L, R + 2 * N),
               env.make(wt, C, N, N, [&](int64_t, int64_t n) { return std::log(float(n + 1)) + 0.3f * alog(env.rng); }),
               env.randn(wt, 1, C),
               env.randn(wt, 1, C, C, 0.5f, -1.f),
               env.randn(DType::F32, state_rows, N, N, 0.5f),
               env.randn(DType::F32, L, C, C + 1),
               R, N};
  return s;
}

TEST(CudaBackend, SelectiveScan) {
  REQUIRE_CUDA();
  Env env;
  struct Case { int64_t L, C, N, R; bool z; DType wt; };
  const Case cases[] = {
      {1, 1536, 16, 48, true, DType::F32},   {63, 1536, 16, 48, true, DType::F32},
      {64, 1536, 16, 48, true, DType::F16},  {65, 13, 16, 48, true, DType::F32},
      {200, 37, 16, 5, false, DType::BF16},  {1000, 5120, 16, 160, true, DType::F32},
      {4096, 1536, 16, 48, true, DType::F32}, {129, 24, 8, 4, true, DType::F32},
      {7, 3, 1, 1, false, DType::F32},        {3000, 64, 16, 3, true, DType::F16},
      {20000, 64, 16, 16, true, DType::F32},  {777, 40, 16, 16, true, DType::F16},
      {300, 1536, 16, 48, false, DType::F32}, {200, 3072, 16, 96, true, DType::F32}};
  // C = 3072: the width where the default is v7x (selective_scan_v7.cu), 1536 u, 5120 m.
  // DM_CUDA_TEST_SMALL=1 keeps the small cases only (for compute-sanitizer's racecheck).
  const bool small = std::getenv("DM_CUDA_TEST_SMALL") != nullptr;
  for (const Case& c : cases) {
    if (small && c.L * c.C > 200000) continue;
    std::ostringstream name;
    name << "selective_scan L=" << c.L << " C=" << c.C << " N=" << c.N << " R=" << c.R
         << " z=" << c.z << " w=" << dtype_name(c.wt);
    ScanInputs s = scan_inputs(env, c.L, c.C, c.N, c.R, c.wt, c.C);
    const int64_t R = c.R, N = c.N;
    for (int half = 0; half < 2; ++half) {
      // Two calls over the two halves of the prompt: the state must carry over.
      const int64_t r0 = half == 0 ? 0 : c.L / 2, rn = half == 0 ? c.L / 2 : c.L - c.L / 2;
      if (rn == 0) continue;
      auto run = [&](Backend& be, bool gpu) {
        auto T = [&](const Dual& d) { return gpu ? d.tg : d.tc; };
        const Tensor z = T(s.xz).col_slice(c.C, c.C).row_slice(r0, rn);
        be.selective_scan(T(s.u).row_slice(r0, rn), T(s.delta).row_slice(r0, rn), T(s.A_log),
                          T(s.x_dbl).col_slice(R, N).row_slice(r0, rn),
                          T(s.x_dbl).col_slice(R + N, N).row_slice(r0, rn), T(s.D),
                          c.z ? &z : nullptr, T(s.dt_bias), T(s.state), T(s.y).row_slice(r0, rn));
      };
      run(*env.cpu, false);
      run(*env.gpu, true);
    }
    EXPECT_NMSE(env, s.y, 1e-9, name.str());
    EXPECT_NMSE(env, s.state, 1e-9, name.str() + " ssm_state");
  }
}

TEST(CudaBackend, SelectiveScanStep) {
  REQUIRE_CUDA();
  Env env;
  for (int64_t batch : {1, 3})
    for (int64_t N : {16, 5})
      for (bool z : {false, true}) {
        const int64_t C = 1536, R = 48;
        std::ostringstream name;
        name << "selective_scan_step batch=" << batch << " C=" << C << " N=" << N << " z=" << z;
        ScanInputs s = scan_inputs(env, batch, C, N, R, DType::F16, batch * C);
        for (int step = 0; step < 3; ++step) {
          auto run = [&](Backend& be, bool gpu) {
            auto T = [&](const Dual& d) { return gpu ? d.tg : d.tc; };
            const Tensor zt = T(s.xz).col_slice(C, C);
            be.selective_scan_step(T(s.u), T(s.delta), T(s.A_log), T(s.x_dbl).col_slice(R, N),
                                   T(s.x_dbl).col_slice(R + N, N), T(s.D), z ? &zt : nullptr,
                                   T(s.dt_bias), T(s.state), T(s.y));
          };
          run(*env.cpu, false);
          run(*env.gpu, true);
          EXPECT_NMSE(env, s.y, 1e-9, name.str() + " step " + std::to_string(step));
          EXPECT_NMSE(env, s.state, 1e-9, name.str() + " ssm_state");
        }
      }
}

TEST(CudaBackend, DtImportance) {
  REQUIRE_CUDA();
  Env env;
  for (int64_t L : {1, 100, 2000})
    for (int64_t C : {5, 1536, 5120}) {
      std::ostringstream name;
      name << "dt_importance L=" << L << " C=" << C;
      Dual dt = env.randn(DType::F32, L, C, C + 2, 2.f, -1.f);
      Dual b = env.randn(DType::BF16, 1, C);
      Dual sc = env.randn(DType::F32, L, 1, 1);
      env.cpu->dt_importance(dt.tc, b.tc, sc.tc);
      env.gpu->dt_importance(dt.tg, b.tg, sc.tg);
      EXPECT_NMSE(env, sc, 1e-12, name.str());
    }
}

TEST(CudaBackend, TopkIndices) {
  REQUIRE_CUDA();
  Env env;
  struct Case { int64_t L, n, k; int kind; };  // kind 0 random, 1 few distinct values, 2 specials
  const Case cases[] = {{1, 1, 1, 0},        {1, 0, 0, 0},          {10, 10, 0, 0},
                        {10, 10, 10, 1},     {100, 90, 37, 0},      {100, 90, 37, 1},
                        {1000, 999, 500, 2}, {5000, 4000, 2000, 1}, {32768, 32000, 2000, 0},
                        {100000, 99000, 51234, 1}, {3000, 3000, 1, 2}, {3000, 2990, 2989, 2}};
  for (const Case& c : cases) {
    std::ostringstream name;
    name << "topk_indices L=" << c.L << " n_candidates=" << c.n << " k=" << c.k << " kind=" << c.kind;
    std::uniform_int_distribution<int> pick(0, 5);
    std::normal_distribution<float> nd(0.f, 1.f);
    const float specials[] = {NAN, -0.f, 0.f, -INFINITY, INFINITY, 1.f};
    Dual s = env.make(DType::F32, c.L, 1, 1, [&](int64_t, int64_t) {
      if (c.kind == 1) return float(pick(env.rng));
      if (c.kind == 2) return pick(env.rng) < 3 ? specials[pick(env.rng)] : nd(env.rng);
      return nd(env.rng);
    });
    const int64_t out = c.k + c.L - c.n;
    Dual idx = env.make(DType::I32, out, 1, 1, [](int64_t, int64_t) { return -7.f; });
    env.cpu->topk_indices(s.tc, c.n, c.k, idx.tc);
    env.gpu->topk_indices(s.tg, c.n, c.k, idx.tg);
    EXPECT_TRUE(env.equal(idx, name.str()));
  }
}

TEST(CudaBackend, GatherRows) {
  REQUIRE_CUDA();
  Env env;
  for (DType dt : {DType::F32, DType::F16, DType::BF16})
    for (int64_t n : {1, 7, 2000}) {
      const int64_t R = 1000, C = 768;
      std::ostringstream name;
      name << "gather_rows src=" << R << "x" << C << " " << dtype_name(dt) << " n=" << n;
      Dual src = env.randn(dt, R, C, C + 4);
      std::uniform_int_distribution<int> pick(0, int(R - 1));
      Dual idx = env.make(DType::I32, n, 1, 1, [&](int64_t, int64_t) { return float(pick(env.rng)); });
      Dual dst = env.randn(DType::F32, n, C, C + 1);
      env.cpu->gather_rows(src.tc, idx.tc, dst.tc);
      env.gpu->gather_rows(src.tg, idx.tg, dst.tg);
      EXPECT_TRUE(env.equal(dst, name.str()));
    }
  // A bad index: the CPU throws at once, the CUDA backend at the next synchronize, naming it.
  Dual src = env.randn(DType::F32, 10, 4);
  Dual idx = env.make(DType::I32, 3, 1, 1, [](int64_t r, int64_t) { return r == 1 ? 10.f : 2.f; });
  Dual dst = env.randn(DType::F32, 3, 4);
  EXPECT_THROW(env.cpu->gather_rows(src.tc, idx.tc, dst.tc), Error);
  env.gpu->gather_rows(src.tg, idx.tg, dst.tg);
  try {
    env.gpu->synchronize();
    ADD_FAILURE() << "gather_rows with idx 10 of 10 rows did not report an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("idx[1] = 10"), std::string::npos) << e.what();
  }
  env.gpu->synchronize();  // reported once, then clear
}

// max |a-b| / max(max|b|, 1e-30); NaN anywhere gives infinity.
double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0, d = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return INFINITY;
    d = std::max(d, double(std::fabs(a[i] - b[i])));
    m = std::max(m, double(std::fabs(b[i])));
  }
  return d / std::max(m, 1e-30);
}

// Decode kernels recorded once into a CUDA graph and replayed must equal the same calls made
// eagerly (on a second copy of the state), replay after replay.
TEST(CudaBackend, GraphReplayEqualsEager) {
  REQUIRE_CUDA();
  Env env;
  Backend& be = *env.gpu;
  const int64_t C = 1536, D = 768, N = 16, R = 48, d = 4;
  ScanInputs s = scan_inputs(env, 1, C, N, R, DType::F16, C);
  Dual w_in = env.randn(DType::F16, 2 * C, D, D, 0.03f);
  Dual conv_w = env.randn(DType::F16, C, d, d, 0.5f);
  Dual x = env.randn(DType::F32, 1, D);
  Dual xz = env.randn(DType::F32, 1, 2 * C);
  Dual xc = env.randn(DType::F32, 1, C);
  Dual st_a = env.randn(DType::F32, C, d), st_b = env.make(DType::F32, C, d, d, [](int64_t, int64_t) { return 0.f; });
  Dual ssm_b = env.make(DType::F32, C, N, N, [](int64_t, int64_t) { return 0.f; });
  Dual y = env.randn(DType::F32, 1, C);
  // Copies of the states for the eager run.
  std::vector<float> h(size_t(C * d));
  be.download(*st_a.bg, kGuard, h.data(), h.size() * 4);
  be.upload(*st_b.bg, kGuard, h.data(), h.size() * 4);
  std::vector<float> hs(size_t(C * N));
  be.download(*s.state.bg, kGuard, hs.data(), hs.size() * 4);
  be.upload(*ssm_b.bg, kGuard, hs.data(), hs.size() * 4);

  auto step = [&](const Tensor& conv_state, const Tensor& ssm_state) {
    be.gemm(x.tg, w_in.tg, nullptr, xz.tg);
    be.causal_conv1d_step(xz.tg.col_slice(0, C), conv_w.tg, nullptr, conv_state, xc.tg);
    const Tensor z = xz.tg.col_slice(C, C);
    be.selective_scan_step(xc.tg, s.delta.tg, s.A_log.tg, s.x_dbl.tg.col_slice(R, N),
                           s.x_dbl.tg.col_slice(R + N, N), s.D.tg, &z, s.dt_bias.tg, ssm_state,
                           y.tg);
  };
  step(st_a.tg, s.state.tg);  // once eagerly first: sizes the GEMM's scratch
  step(st_b.tg, ssm_b.tg);
  cuda_graph_begin(be);
  EXPECT_THROW(be.synchronize(), Error);  // not while recording
  step(st_a.tg, s.state.tg);
  std::unique_ptr<CudaGraph> g = cuda_graph_end(be);
  std::vector<float> ya(static_cast<size_t>(C)), yb(static_cast<size_t>(C));
  for (int rep = 0; rep < 4; ++rep) {
    g->replay();
    be.download(*y.bg, kGuard, ya.data(), ya.size() * 4);
    step(st_b.tg, ssm_b.tg);
    be.download(*y.bg, kGuard, yb.data(), yb.size() * 4);
    EXPECT_LE(max_rel_diff(ya, yb), 1e-6) << "replay " << rep;
  }
  std::vector<float> sa(size_t(C * N)), sb(size_t(C * N));
  be.download(*s.state.bg, kGuard, sa.data(), sa.size() * 4);
  be.download(*ssm_b.bg, kGuard, sb.data(), sb.size() * 4);
  EXPECT_LE(max_rel_diff(sa, sb), 1e-6);
}

}  // namespace
}  // namespace dm
