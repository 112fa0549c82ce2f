// Every CPU kernel against the double-precision oracle of kernel_oracle.h, on random inputs
// (fixed seed per case) over a table of shapes: real Mamba widths, awkward lengths, strided
// views, F16/BF16 weights, optional residual / gate / bias, non-zero incoming state. Outputs sit
// between sentinel-filled guard regions (and, when strided, gaps) that must stay untouched;
// inputs must come back unchanged. Every failure prints the case's parameters on one line.
//
// Tolerances (normalised mean squared error, Σ(got-want)² / Σwant²):
//   kNmse = 1e-9 for gemm, rms_norm, conv, scan: fp32 arithmetic against a double oracle
//   rounds to ~1e-12 at these sizes (the measured worst is printed by the tests), while one
//   wrong element among the ~1e6 of the largest output already costs > 1e-7.
//   dt_importance: 1e-12: one fp32 softplus per term, summed in double, so only ~1e-7 relative
//   error per score remains; a wrong term moves a score by far more.
//   topk_indices and gather_rows are exact.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/params.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "kernel_oracle.h"

namespace dm {
namespace {

constexpr double kNmse = 1e-9;
constexpr double kNmseScore = 1e-12;
constexpr size_t kGuardBytes = 64;  // sentinel bytes before and after every tensor
constexpr uint8_t kSentinel = 0xA5;

std::vector<CpuIsa> isas() {
  std::vector<CpuIsa> v{CpuIsa::generic};
  if (cpu_supports(CpuIsa::avx2)) v.push_back(CpuIsa::avx2);
  return v;
}

// Stores v in dtype dt at p; returns the value the kernel will read back.
float store_as(DType dt, void* p, float v) {
  switch (dt) {
    case DType::F32: std::memcpy(p, &v, 4); return v;
    case DType::F16: {
      const uint16_t h = f32_to_f16(v);
      std::memcpy(p, &h, 2);
      return f16_to_f32(h);
    }
    case DType::BF16: {
      const uint16_t h = f32_to_bf16(v);
      std::memcpy(p, &h, 2);
      return bf16_to_f32(h);
    }
    case DType::I32: {
      const int32_t i = int32_t(v);
      std::memcpy(p, &i, 4);
      return float(i);
    }
  }
  return 0.f;
}

// A rows × cols matrix in its own backend buffer, row stride cols + pad, with kGuardBytes of
// sentinel before and after and sentinel in the gaps between rows. `values` holds what the
// kernel sees (after rounding to dtype), dense, for the oracle.
class Guarded {
 public:
  Guarded(Backend& be, DType dt, int64_t rows, int64_t cols, int64_t pad, const std::vector<float>& v)
      : be_(&be) {
    const size_t es = dtype_size(dt);
    t_ = Tensor{nullptr, kGuardBytes, dt, rows, cols, cols + pad};
    image_.assign(kGuardBytes * 2 + t_.span_bytes(), kSentinel);
    values.resize(size_t(rows * cols));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        values[size_t(r * cols + c)] =
            store_as(dt, &image_[kGuardBytes + size_t(r * t_.row_stride + c) * es], v[size_t(r * cols + c)]);
    buf_ = be.alloc(image_.size());
    be.upload(*buf_, 0, image_.data(), image_.size());
    t_.buf = buf_.get();
  }

  const Tensor& t() const { return t_; }

  // The tensor's elements as fp32, dense.
  std::vector<float> read() const {
    const std::vector<uint8_t> now = download();
    std::vector<float> out(size_t(t_.rows * t_.cols));
    const size_t es = dtype_size(t_.dtype);
    for (int64_t r = 0; r < t_.rows; ++r)
      for (int64_t c = 0; c < t_.cols; ++c)
        out[size_t(r * t_.cols + c)] =
            load_as_f32(&now[kGuardBytes + size_t(r * t_.row_stride + c) * es], t_.dtype, 0);
    return out;
  }
  std::vector<int32_t> read_i32() const {
    const std::vector<uint8_t> now = download();
    std::vector<int32_t> out(size_t(t_.rows * t_.cols));
    for (int64_t r = 0; r < t_.rows; ++r)
      for (int64_t c = 0; c < t_.cols; ++c)
        std::memcpy(&out[size_t(r * t_.cols + c)], &now[kGuardBytes + size_t(r * t_.row_stride + c) * 4], 4);
    return out;
  }

  // Every byte that is not an element of the view is as uploaded (guards and row gaps).
  ::testing::AssertionResult guards_intact() const {
    const std::vector<uint8_t> now = download();
    std::vector<bool> element(now.size(), false);
    const size_t es = dtype_size(t_.dtype);
    for (int64_t r = 0; r < t_.rows; ++r)
      for (size_t b = 0; b < size_t(t_.cols) * es; ++b)
        element[kGuardBytes + size_t(r * t_.row_stride) * es + b] = true;
    for (size_t i = 0; i < now.size(); ++i)
      if (!element[i] && now[i] != image_[i])
        return ::testing::AssertionFailure() << "byte " << i << " outside the tensor " << t_.describe()
                                             << " was overwritten (guard " << kGuardBytes << " bytes)";
    return ::testing::AssertionSuccess();
  }
  // An input: the whole buffer is as uploaded.
  ::testing::AssertionResult unchanged() const {
    if (download() == image_) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "input " << t_.describe() << " was modified";
  }

  std::vector<float> values;

 private:
  std::vector<uint8_t> download() const {
    std::vector<uint8_t> now(image_.size());
    be_->download(*buf_, 0, now.data(), now.size());
    return now;
  }
  Backend* be_;
  std::unique_ptr<Buffer> buf_;
  std::vector<uint8_t> image_;
  Tensor t_;
};

std::vector<float> uniform(std::mt19937& rng, size_t n, float lo, float hi) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// Columns [c0, c0 + n) of a dense rows × cols array.
std::vector<float> columns(const std::vector<float>& v, int64_t rows, int64_t cols, int64_t c0, int64_t n) {
  std::vector<float> out(size_t(rows * n));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < n; ++c) out[size_t(r * n + c)] = v[size_t(r * cols + c0 + c)];
  return out;
}

template <typename T>
double nmse(const std::vector<float>& got, const std::vector<T>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double d = double(got[i]) - double(want[i]);
    num += d * d;
    den += double(want[i]) * double(want[i]);
  }
  if (got.size() != want.size()) return INFINITY;
  return den == 0 ? num : num / den;
}

bool all_finite(const std::vector<float>& v) {
  return std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); });
}

std::string dt_str(DType t) { return std::string(dtype_name(t)); }

// ---------------------------------------------------------------------------------------------
// Thread pool, registry, constants.

TEST(CpuKernelThreadPool, CoversTheRangeOnceNestsAndPropagates) {
  ASSERT_GE(thread_count(), 1);
  for (int64_t n : {1, 2, 7, 1000, 100003}) {
    std::vector<int> hits(size_t(n), 0);
    // With one piece (n ≤ 3 here) the outer call runs inline on the caller, outside any job,
    // so a call nested in it may use the pool; inside a job a nested call runs inline.
    const bool outer_is_job = thread_count() > 1 && (n + 2) / 3 > 1;
    parallel_for(n, 3, [&](int64_t b, int64_t e) {
      ASSERT_LE(0, b);
      ASSERT_LE(b, e);
      ASSERT_LE(e, n);
      for (int64_t i = b; i < e; ++i) ++hits[size_t(i)];
      // A nested call covers its own range, on this thread alone when this is a pool job.
      std::atomic<int64_t> inner{0};
      std::atomic<bool> elsewhere{false};
      const std::thread::id me = std::this_thread::get_id();
      parallel_for(10, 1, [&](int64_t ib, int64_t ie) {
        inner += ie - ib;
        if (std::this_thread::get_id() != me) elsewhere = true;
      });
      ASSERT_EQ(inner.load(), 10);
      if (outer_is_job) {
        ASSERT_FALSE(elsewhere.load()) << "n=" << n << ": a nested call left its job's thread";
      }
    });
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[size_t(i)], 1) << "n=" << n << " i=" << i;
  }
  // Whichever thread runs index 500 throws (with one thread, the caller itself).
  EXPECT_THROW(parallel_for(1000, 1,
                            [](int64_t b, int64_t e) {
                              if (b <= 500 && 500 < e) fail("[test] worker failure");
                            }),
               Error);
  // The pool still works after an exception.
  std::atomic<int64_t> sum{0};
  parallel_for(100, 1, [&](int64_t b, int64_t e) { sum += e - b; });
  EXPECT_EQ(sum.load(), 100);
}

TEST(CpuKernelRegistry, ListsAndCreates) {
  const std::vector<BackendInfo> all = list_backends();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].name, "cuda");
  EXPECT_EQ(all[1].name, "vulkan");
  EXPECT_EQ(all[2].name, "cpu");
  EXPECT_TRUE(all[2].available);
  for (const BackendInfo& info : all) {
    EXPECT_FALSE(info.detail.empty()) << info.name;
    if (info.available) continue;
    try {
      create_backend(info.name);
      ADD_FAILURE() << info.name << " is listed unavailable but was created";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(info.detail), std::string::npos) << e.what();
    }
  }
  std::string first_available;
  for (const BackendInfo& info : all)
    if (info.available && !info.software && first_available.empty()) first_available = info.name;
  // auto: the first available backend that is not a GPU API emulated on the CPU (lavapipe).
  EXPECT_EQ(create_backend("auto")->name(), first_available);
  EXPECT_EQ(create_backend("cpu")->name(), "cpu");
  EXPECT_THROW(create_backend("cpu", 1), Error);
  try {
    create_backend("metal");
    ADD_FAILURE() << "unknown backend accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    for (const char* name : {"auto", "cpu", "vulkan", "cuda", "metal"})
      EXPECT_NE(m.find(name), std::string::npos) << m;
  }
}

TEST(CpuKernelBuffers, UploadConstantIsAViewAndReadOnly) {
  CpuBackend be;
  std::vector<float> host = {1.f, 2.f, 3.f, 4.f};
  std::unique_ptr<Buffer> view = be.upload_constant(host.data(), 16);
  host[2] = 30.f;  // a view sees the caller's memory
  float got[4];
  be.download(*view, 0, got, 16);
  EXPECT_EQ(got[2], 30.f);
  EXPECT_THROW(be.upload(*view, 0, got, 4), Error);
  // Used as a kernel output it is refused, not written.
  std::unique_ptr<Buffer> x = be.alloc(16), w = be.alloc(16);
  EXPECT_THROW(be.gemm(make_tensor(*x, DType::F32, 1, 4), make_tensor(*w, DType::F32, 1, 4), nullptr,
                       make_tensor(*view, DType::F32, 1, 1)),
               Error);
  // The base-class default copies.
  std::unique_ptr<Buffer> copy = be.Backend::upload_constant(host.data(), 16);
  host[2] = 300.f;
  be.download(*copy, 0, got, 16);
  EXPECT_EQ(got[2], 30.f);
  EXPECT_THROW(be.download(*copy, 8, got, 16), Error);  // past the end
}

// ---------------------------------------------------------------------------------------------
// gemm

struct GemmCase {
  int64_t M, N, K;
  DType wdt;
  bool bias;
  DType bias_dt;
  int64_t x_pad, y_pad;  // extra row stride (x as a column slice, y with gaps)
  uint32_t seed;
  std::string str(CpuIsa isa) const {
    std::ostringstream os;
    os << "gemm M=" << M << " N=" << N << " K=" << K << " w=" << dt_str(wdt) << " bias=" << bias
       << " bias_dtype=" << dt_str(bias_dt) << " x_pad=" << x_pad << " y_pad=" << y_pad
       << " seed=" << seed << " isa=" << cpu_isa_name(isa);
    return os.str();
  }
};

TEST(CpuKernelGemm, MatchesOracle) {
  const std::vector<GemmCase> cases = {
      {1, 3072, 768, DType::F16, false, DType::F32, 0, 0, 1},    // decode in_proj
      {1, 80, 1536, DType::F32, false, DType::F32, 1536, 0, 2},  // decode x_proj, x strided
      {2, 50, 37, DType::BF16, true, DType::BF16, 3, 5, 3},
      {3, 1536, 48, DType::F32, true, DType::F32, 0, 0, 4},      // dt_proj, batched decode
      {4, 17, 9, DType::F32, true, DType::F16, 0, 1, 5},
      {5, 33, 300, DType::F16, true, DType::F32, 0, 0, 6},       // first blocked size, 5-row tile
      {6, 16, 256, DType::F32, false, DType::F32, 0, 0, 7},
      {7, 31, 257, DType::BF16, false, DType::F32, 2, 3, 8},
      {37, 130, 1000, DType::BF16, true, DType::F32, 11, 7, 9},
      {130, 3072, 768, DType::F16, false, DType::F32, 0, 0, 10},  // prefill in_proj
      {257, 80, 1536, DType::F32, false, DType::F32, 1536, 0, 11},  // prefill x_proj, x = xz slice
      {100, 1536, 48, DType::F32, true, DType::F32, 32, 0, 12},  // dt_proj reading x_dbl's dt part
      {61, 768, 1536, DType::BF16, false, DType::F32, 0, 0, 13},  // out_proj
      {9, 300, 4096, DType::F32, false, DType::F32, 0, 0, 14},   // many K blocks
      {3, 5, 0, DType::F32, true, DType::F32, 0, 0, 15},         // K = 0: y = bias
  };
  for (CpuIsa isa : isas()) {
    CpuBackend be(isa);
    double worst = 0;
    for (const GemmCase& c : cases) {
      std::mt19937 rng(c.seed);
      Guarded x(be, DType::F32, c.M, c.K, c.x_pad, uniform(rng, size_t(c.M * c.K), -1, 1));
      Guarded w(be, c.wdt, c.N, c.K, 0, uniform(rng, size_t(c.N * c.K), -1, 1));
      Guarded b(be, c.bias_dt, 1, c.N, 0, uniform(rng, size_t(c.N), -1, 1));
      Guarded y(be, DType::F32, c.M, c.N, c.y_pad, uniform(rng, size_t(c.M * c.N), -1, 1));
      be.gemm(x.t(), w.t(), c.bias ? &b.t() : nullptr, y.t());
      const oracle::DVec want =
          oracle::gemm(c.M, c.N, c.K, x.values, w.values, c.bias ? b.values : std::vector<float>{});
      const std::vector<float> got = y.read();
      const double e = nmse(got, want);
      worst = std::max(worst, e);
      EXPECT_LE(e, kNmse) << c.str(isa);
      EXPECT_TRUE(all_finite(got)) << c.str(isa);
      EXPECT_TRUE(y.guards_intact()) << c.str(isa);
      EXPECT_TRUE(x.unchanged()) << c.str(isa);
      EXPECT_TRUE(w.unchanged()) << c.str(isa);
    }
    std::printf("[ info ] gemm %s worst NMSE %.3g\n", cpu_isa_name(isa).c_str(), worst);
  }
}

// ---------------------------------------------------------------------------------------------
// rms_norm

struct RmsNormCase {
  int64_t L, D;
  DType wdt;
  bool residual;
  int64_t pad;  // x, residual and y strided by D + pad
  uint32_t seed;
  std::string str() const {
    std::ostringstream os;
    os << "rms_norm L=" << L << " D=" << D << " weight=" << dt_str(wdt) << " residual=" << residual
       << " pad=" << pad << " seed=" << seed;
    return os.str();
  }
};

TEST(CpuKernelRmsNorm, MatchesOracle) {
  const std::vector<RmsNormCase> cases = {
      {1, 768, DType::F32, true, 0, 21},    {37, 2560, DType::BF16, true, 0, 22},
      {1000, 768, DType::F16, true, 5, 23}, {3, 5120, DType::F32, false, 0, 24},
      {17, 1024, DType::F16, false, 9, 25}, {2, 1, DType::F32, true, 0, 26},
  };
  CpuBackend be;
  double worst = 0;
  for (const RmsNormCase& c : cases) {
    std::mt19937 rng(c.seed);
    const float eps = 1e-5f;
    Guarded x(be, DType::F32, c.L, c.D, c.pad, uniform(rng, size_t(c.L * c.D), -2, 2));
    Guarded r(be, DType::F32, c.L, c.D, c.pad, uniform(rng, size_t(c.L * c.D), -2, 2));
    Guarded w(be, c.wdt, 1, c.D, 0, uniform(rng, size_t(c.D), 0.5f, 1.5f));
    Guarded y(be, DType::F32, c.L, c.D, c.pad, uniform(rng, size_t(c.L * c.D), -1, 1));
    be.rms_norm(x.t(), c.residual ? &r.t() : nullptr, w.t(), y.t(), eps);
    const oracle::RmsNormOut want = oracle::rms_norm(
        c.L, c.D, x.values, c.residual ? r.values : std::vector<float>{}, w.values, eps);
    const double e = nmse(y.read(), want.y);
    worst = std::max(worst, e);
    EXPECT_LE(e, kNmse) << c.str();
    if (c.residual) {
      // The double sum of two floats is exact, and fp32 addition is that sum rounded once.
      const std::vector<float> want_r(want.residual.begin(), want.residual.end());
      EXPECT_EQ(r.read(), want_r) << c.str() << " residual";
      EXPECT_TRUE(r.guards_intact()) << c.str();
    } else {
      EXPECT_TRUE(r.unchanged()) << c.str();
    }
    EXPECT_TRUE(y.guards_intact()) << c.str();
    EXPECT_TRUE(x.unchanged()) << c.str();
  }
  std::printf("[ info ] rms_norm worst NMSE %.3g\n", worst);
}

// ---------------------------------------------------------------------------------------------
// causal_conv1d

struct ConvCase {
  int64_t L, C, d_conv;
  DType wdt;
  bool bias;
  bool strided;  // x as the first half of an (L, 2C) xz buffer; y with gaps
  bool fresh;    // zero incoming state (a new sequence), else random
  uint32_t seed;
  std::string str(CpuIsa isa) const {
    std::ostringstream os;
    os << "isa=" << cpu_isa_name(isa) << " causal_conv1d L=" << L << " C=" << C << " d_conv=" << d_conv << " weight=" << dt_str(wdt)
       << " bias=" << bias << " strided=" << strided << " fresh_state=" << fresh << " seed=" << seed;
    return os.str();
  }
};

TEST(CpuKernelCausalConv1d, MatchesOracle) {
  const std::vector<ConvCase> cases = {
      {1, 1536, 4, DType::F32, true, false, false, 31},
      {37, 2048, 4, DType::F16, true, true, false, 32},
      {1000, 64, 4, DType::BF16, true, false, false, 33},
      {5, 4096, 4, DType::F32, false, false, false, 34},
      {2, 5120, 4, DType::BF16, true, true, false, 35},
      {2, 100, 4, DType::F32, true, false, true, 36},  // L < d_conv, fresh: HF's zero-padded state
      {50, 7, 2, DType::F16, true, true, false, 37},
      {9, 65, 1, DType::F32, true, false, false, 38},
  };
  for (CpuIsa isa : isas()) {
  CpuBackend be(isa);
  double worst = 0;
  for (const ConvCase& c : cases) {
    std::mt19937 rng(c.seed);
    const int64_t xcols = c.strided ? 2 * c.C : c.C;
    Guarded xz(be, DType::F32, c.L, xcols, 0, uniform(rng, size_t(c.L * xcols), -2, 2));
    const Tensor x = xz.t().col_slice(0, c.C);
    const std::vector<float> xv = columns(xz.values, c.L, xcols, 0, c.C);
    Guarded w(be, c.wdt, c.C, c.d_conv, 0, uniform(rng, size_t(c.C * c.d_conv), -1, 1));
    Guarded b(be, c.wdt, 1, c.C, 0, uniform(rng, size_t(c.C), -0.5f, 0.5f));
    std::vector<float> s0 = uniform(rng, size_t(c.C * c.d_conv), -2, 2);
    if (c.fresh) std::fill(s0.begin(), s0.end(), 0.f);
    Guarded state(be, DType::F32, c.C, c.d_conv, 0, s0);
    Guarded y(be, DType::F32, c.L, c.C, c.strided ? 3 : 0, uniform(rng, size_t(c.L * c.C), -1, 1));
    be.causal_conv1d(x, w.t(), c.bias ? &b.t() : nullptr, state.t(), y.t());
    const oracle::ConvOut want = oracle::causal_conv1d(c.L, c.C, c.d_conv, xv, w.values,
                                                       c.bias ? b.values : std::vector<float>{}, s0);
    const double e = nmse(y.read(), want.y);
    worst = std::max(worst, e);
    EXPECT_LE(e, kNmse) << c.str(isa);
    // The new state is a copy of inputs: exact.
    EXPECT_EQ(nmse(state.read(), want.state), 0.0) << c.str(isa) << " conv_state";
    EXPECT_TRUE(y.guards_intact()) << c.str(isa);
    EXPECT_TRUE(state.guards_intact()) << c.str(isa);
    EXPECT_TRUE(xz.unchanged()) << c.str(isa);
    EXPECT_TRUE(w.unchanged()) << c.str(isa);
  }
  std::printf("[ info ] causal_conv1d %s worst NMSE %.3g\n", cpu_isa_name(isa).c_str(), worst);
  }
}

// ---------------------------------------------------------------------------------------------
// selective_scan

struct ScanCase {
  int64_t L, C, N;
  DType wdt;     // A_log, D, dt_bias
  bool z;
  bool strided;  // z = second half of an (L, 2C) xz buffer; B, C slices of x_dbl; y with gaps
  int dt_range;  // 0: typical; 1: delta + dt_bias straddles softplus's threshold of 20;
                 // 2: wide, [-44, 29], softplus from ~e^-44 to the threshold
  uint32_t seed;
  std::string str(CpuIsa isa) const {
    std::ostringstream os;
    os << "isa=" << cpu_isa_name(isa) << " selective_scan L=" << L << " channels=" << C << " d_state=" << N << " weights=" << dt_str(wdt)
       << " z=" << z << " strided=" << strided << " dt_range=" << dt_range << " seed=" << seed;
    return os.str();
  }
};

struct ScanInputs {
  std::vector<float> u, delta, A_log, B, C, D, z, dt_bias, state;
};

ScanInputs scan_inputs(std::mt19937& rng, int64_t L, int64_t Ch, int64_t N, int dt_range) {
  ScanInputs in;
  in.u = uniform(rng, size_t(L * Ch), -1, 1);
  const float lo[] = {-3, 18, -40}, hi[] = {3, 26, 30};
  in.delta = uniform(rng, size_t(L * Ch), lo[dt_range], hi[dt_range]);
  in.A_log = uniform(rng, size_t(Ch * N), 0, std::log(16.f));  // A in [-16, -1] as Mamba's init
  in.B = uniform(rng, size_t(L * N), -1, 1);
  in.C = uniform(rng, size_t(L * N), -1, 1);
  in.D = uniform(rng, size_t(Ch), 0.5f, 1.5f);
  in.z = uniform(rng, size_t(L * Ch), -3, 3);
  in.dt_bias = uniform(rng, size_t(Ch), -4, -1);  // softplus⁻¹ of Mamba's dt range
  in.state = uniform(rng, size_t(Ch * N), -1, 1);
  return in;
}

TEST(CpuKernelSelectiveScan, MatchesOracle) {
  const std::vector<ScanCase> cases = {
      {1, 1536, 16, DType::F32, true, false, 0, 41},
      {4, 2048, 16, DType::F16, true, true, 0, 42},
      {3, 4096, 16, DType::BF16, false, false, 0, 43},
      {2, 5120, 16, DType::F32, true, true, 0, 44},
      {1000, 32, 16, DType::F32, true, true, 0, 45},
      {37, 48, 16, DType::BF16, true, false, 1, 46},
      {300, 17, 4, DType::F32, false, true, 0, 47},
      {2048, 3, 16, DType::F16, true, false, 0, 48},
      {200, 64, 16, DType::F32, true, true, 2, 49},
  };
  for (CpuIsa isa : isas()) {
  CpuBackend be(isa);
  double worst = 0;
  for (const ScanCase& c : cases) {
    std::mt19937 rng(c.seed);
    const ScanInputs in = scan_inputs(rng, c.L, c.C, c.N, c.dt_range);
    // Strided: xz holds [junk | z] and x_dbl holds [dt_low (8) | B | C].
    std::vector<float> xz_v(size_t(c.L * 2 * c.C)), xdbl_v(size_t(c.L * (8 + 2 * c.N)));
    for (float& v : xz_v) v = 0.25f;
    for (float& v : xdbl_v) v = 0.5f;
    for (int64_t t = 0; t < c.L; ++t) {
      for (int64_t i = 0; i < c.C; ++i) xz_v[size_t(t * 2 * c.C + c.C + i)] = in.z[size_t(t * c.C + i)];
      for (int64_t n = 0; n < c.N; ++n) {
        xdbl_v[size_t(t * (8 + 2 * c.N) + 8 + n)] = in.B[size_t(t * c.N + n)];
        xdbl_v[size_t(t * (8 + 2 * c.N) + 8 + c.N + n)] = in.C[size_t(t * c.N + n)];
      }
    }
    Guarded u(be, DType::F32, c.L, c.C, c.strided ? 4 : 0, in.u);
    Guarded delta(be, DType::F32, c.L, c.C, 0, in.delta);
    Guarded A_log(be, c.wdt, c.C, c.N, 0, in.A_log);
    Guarded D(be, c.wdt, 1, c.C, 0, in.D);
    Guarded dt_bias(be, c.wdt, 1, c.C, 0, in.dt_bias);
    Guarded state(be, DType::F32, c.C, c.N, 0, in.state);
    Guarded zd(be, DType::F32, c.L, c.C, 0, in.z);
    Guarded Bd(be, DType::F32, c.L, c.N, 0, in.B);
    Guarded Cd(be, DType::F32, c.L, c.N, 0, in.C);
    Guarded xz(be, DType::F32, c.L, 2 * c.C, 0, xz_v);
    Guarded xdbl(be, DType::F32, c.L, 8 + 2 * c.N, 0, xdbl_v);
    Guarded y(be, DType::F32, c.L, c.C, c.strided ? 5 : 0, uniform(rng, size_t(c.L * c.C), -1, 1));
    const Tensor z = c.strided ? xz.t().col_slice(c.C, c.C) : zd.t();
    const Tensor B = c.strided ? xdbl.t().col_slice(8, c.N) : Bd.t();
    const Tensor C = c.strided ? xdbl.t().col_slice(8 + c.N, c.N) : Cd.t();
    be.selective_scan(u.t(), delta.t(), A_log.t(), B, C, D.t(), c.z ? &z : nullptr, dt_bias.t(),
                      state.t(), y.t());
    const oracle::ScanOut want = oracle::selective_scan(
        c.L, c.C, c.N, u.values, delta.values, A_log.values, c.strided ? in.B : Bd.values,
        c.strided ? in.C : Cd.values, D.values, c.z ? in.z : std::vector<float>{}, dt_bias.values,
        in.state);
    const std::vector<float> got = y.read();
    const double e = nmse(got, want.y), es = nmse(state.read(), want.state);
    worst = std::max({worst, e, es});
    EXPECT_LE(e, kNmse) << c.str(isa) << " y";
    EXPECT_LE(es, kNmse) << c.str(isa) << " ssm_state";
    EXPECT_TRUE(all_finite(got)) << c.str(isa);
    EXPECT_TRUE(y.guards_intact()) << c.str(isa);
    EXPECT_TRUE(state.guards_intact()) << c.str(isa);
    for (const Guarded* g : {&u, &delta, &A_log, &D, &dt_bias, &zd, &Bd, &Cd, &xz, &xdbl})
      EXPECT_TRUE(g->unchanged()) << c.str(isa);
  }
  std::printf("[ info ] selective_scan %s worst NMSE %.3g\n", cpu_isa_name(isa).c_str(), worst);
  }
}

// ---------------------------------------------------------------------------------------------
// dt_importance, topk_indices, gather_rows

TEST(CpuKernelDtImportance, MatchesOracle) {
  struct Case {
    int64_t L, C;
    DType dt;
    int64_t pad;
    bool big;
    uint32_t seed;
  };
  const std::vector<Case> cases = {{1, 1536, DType::F32, 0, false, 51},
                                   {37, 2048, DType::F16, 7, false, 52},
                                   {1000, 64, DType::BF16, 0, false, 53},
                                   {5, 5120, DType::F32, 3, false, 54},
                                   {20, 33, DType::F32, 0, true, 55},
                                   {20, 1531, DType::F32, 0, false, 56}};
  for (CpuIsa isa : isas()) {
  CpuBackend be(isa);
  double worst = 0;
  for (const Case& c : cases) {
    std::ostringstream os;
    os << "isa=" << cpu_isa_name(isa) << " dt_importance L=" << c.L << " channels=" << c.C << " dt_bias=" << dt_str(c.dt)
       << " pad=" << c.pad << " big_dt=" << c.big << " seed=" << c.seed;
    std::mt19937 rng(c.seed);
    Guarded delta(be, DType::F32, c.L, c.C, c.pad,
                  c.big ? uniform(rng, size_t(c.L * c.C), 18, 26) : uniform(rng, size_t(c.L * c.C), -3, 3));
    Guarded bias(be, c.dt, 1, c.C, 0, uniform(rng, size_t(c.C), -4, -1));
    Guarded scores(be, DType::F32, c.L, 1, 0, uniform(rng, size_t(c.L), -1, 1));
    be.dt_importance(delta.t(), bias.t(), scores.t());
    const double e = nmse(scores.read(), oracle::dt_importance(c.L, c.C, delta.values, bias.values));
    worst = std::max(worst, e);
    EXPECT_LE(e, kNmseScore) << os.str();
    EXPECT_TRUE(scores.guards_intact()) << os.str();
    EXPECT_TRUE(delta.unchanged()) << os.str();
  }
  std::printf("[ info ] dt_importance %s worst NMSE %.3g\n", cpu_isa_name(isa).c_str(), worst);
  }
}

struct TopkCase {
  int64_t L, n_candidates, k;
  int levels;  // > 0: scores drawn from this many distinct values (ties); 0: continuous
  int nans;    // this many candidate scores set to NaN
  uint32_t seed;
  std::string str() const {
    std::ostringstream os;
    os << "topk_indices L=" << L << " n_candidates=" << n_candidates << " k=" << k
       << " levels=" << levels << " nans=" << nans << " seed=" << seed;
    return os.str();
  }
};

TEST(CpuKernelTopkIndices, MatchesOracle) {
  const std::vector<TopkCase> cases = {
      {1000, 1000, 1000, 0, 0, 61},  // k = L keeps everything
      {1000, 999, 500, 0, 0, 62},    // generate(): the last token protected
      {37, 36, 20, 0, 0, 63},        // k = min_seq_len
      {2048, 1947, 20, 0, 0, 64},    // PG-19 style: 101 protected
      {200, 190, 50, 4, 0, 65},      // heavy ties: the lower index wins
      {64, 64, 10, 1, 0, 66},        // all equal: the first k
      {100, 90, 85, 0, 10, 67},      // NaNs rank last: some kept only because k needs them
      {100, 90, 30, 0, 10, 68},
      {10, 0, 0, 0, 0, 69},          // no candidates: the tail only
      {10, 5, 0, 0, 0, 70},          // k = 0
      {1, 1, 1, 0, 0, 71},
  };
  CpuBackend be;
  for (const TopkCase& c : cases) {
    std::mt19937 rng(c.seed);
    std::vector<float> s = uniform(rng, size_t(c.L), 0.1f, 10.f);
    if (c.levels > 0)
      for (float& v : s) v = std::floor(v * float(c.levels) / 10.f);
    for (int i = 0; i < c.nans; ++i) s[size_t(rng() % uint32_t(c.n_candidates))] = NAN;
    Guarded scores(be, DType::F32, c.L, 1, 0, s);
    const int64_t out = c.k + c.L - c.n_candidates;
    std::vector<float> junk(size_t(out), -7.f);
    Guarded idx(be, DType::I32, out, 1, 0, junk);
    be.topk_indices(scores.t(), c.n_candidates, c.k, idx.t());
    EXPECT_EQ(idx.read_i32(), oracle::topk_indices(s, c.n_candidates, c.k)) << c.str();
    EXPECT_TRUE(idx.guards_intact()) << c.str();
    EXPECT_TRUE(scores.unchanged()) << c.str();
  }
}

TEST(CpuKernelTopkIndices, TiesGoToTheLowerIndex) {
  CpuBackend be;
  // Equal scores at 1, 3, 4 and 6: after position 5, the two slots left go to 1 and 3.
  // Position 7 is the protected tail (score 5 would otherwise win a slot).
  const std::vector<float> s = {0.f, 2.f, 1.f, 2.f, 2.f, 9.f, 2.f, 5.f};
  Guarded scores(be, DType::F32, 8, 1, 0, s);
  Guarded idx(be, DType::I32, 3 + 1, 1, 0, std::vector<float>(4, 0.f));
  be.topk_indices(scores.t(), 7, 3, idx.t());
  EXPECT_EQ(idx.read_i32(), (std::vector<int32_t>{1, 3, 5, 7}));
}

TEST(CpuKernelGatherRows, MatchesOracleAndRejectsBadIndices) {
  struct Case {
    int64_t n, rows, cols;
    DType dt;
    int64_t src_pad, dst_pad;
    uint32_t seed;
  };
  const std::vector<Case> cases = {{5, 1000, 768, DType::F16, 0, 0, 81},
                                   {2000, 2048, 768, DType::F32, 0, 0, 82},
                                   {37, 50, 130, DType::BF16, 3, 5, 83},
                                   {1, 1, 1, DType::F32, 0, 0, 84},
                                   {0, 4, 8, DType::F32, 0, 0, 85}};
  CpuBackend be;
  for (const Case& c : cases) {
    std::ostringstream os;
    os << "gather_rows n=" << c.n << " src_rows=" << c.rows << " cols=" << c.cols
       << " src=" << dt_str(c.dt) << " src_pad=" << c.src_pad << " dst_pad=" << c.dst_pad
       << " seed=" << c.seed;
    std::mt19937 rng(c.seed);
    Guarded src(be, c.dt, c.rows, c.cols, c.src_pad, uniform(rng, size_t(c.rows * c.cols), -3, 3));
    std::vector<float> iv(size_t(c.n));
    for (float& v : iv) v = float(rng() % uint32_t(c.rows));
    Guarded idx(be, DType::I32, c.n, 1, 0, iv);
    Guarded dst(be, DType::F32, c.n, c.cols, c.dst_pad, uniform(rng, size_t(c.n * c.cols), -1, 1));
    be.gather_rows(src.t(), idx.t(), dst.t());
    std::vector<float> want(size_t(c.n * c.cols));
    for (int64_t i = 0; i < c.n; ++i)
      for (int64_t j = 0; j < c.cols; ++j)
        want[size_t(i * c.cols + j)] = src.values[size_t(int64_t(iv[size_t(i)]) * c.cols + j)];
    EXPECT_EQ(dst.read(), want) << os.str();
    EXPECT_TRUE(dst.guards_intact()) << os.str();
    EXPECT_TRUE(src.unchanged()) << os.str();
  }
  for (float bad : {-1.f, 50.f}) {
    Guarded src(be, DType::F32, 50, 4, 0, std::vector<float>(200, 1.f));
    Guarded idx(be, DType::I32, 3, 1, 0, {0.f, bad, 2.f});
    Guarded dst(be, DType::F32, 3, 4, 0, std::vector<float>(12, 5.f));
    EXPECT_THROW(be.gather_rows(src.t(), idx.t(), dst.t()), Error) << "idx " << bad;
    EXPECT_TRUE(dst.unchanged()) << "a rejected gather wrote its output, idx " << bad;
  }
}

// ---------------------------------------------------------------------------------------------
// Decode steps: equal to the prefill kernels with L = 1, per sequence of a batch, and a run of
// steps equals one prefill. The CPU computes both with the same per-token code, so equality
// is exact.

TEST(CpuKernelCausalConv1dStep, EqualsPrefill) {
  for (CpuIsa isa : isas())
  for (DType wdt : {DType::F32, DType::BF16}) {
    CpuBackend be(isa);
    const int64_t batch = 3, C = 1533, d = 4, steps = 20;  // 1533: a partial vector of 8
    std::mt19937 rng(91);
    Guarded w(be, wdt, C, d, 0, uniform(rng, size_t(C * d), -1, 1));
    Guarded b(be, wdt, 1, C, 0, uniform(rng, size_t(C), -0.5f, 0.5f));
    const std::vector<float> s0 = uniform(rng, size_t(batch * C * d), -2, 2);
    const std::vector<float> xs = uniform(rng, size_t(steps * batch * 2 * C), -2, 2);
    // Decode: `steps` tokens for `batch` sequences; x rows are slices of an xz buffer.
    Guarded state(be, DType::F32, batch * C, d, 0, s0);
    std::vector<std::vector<float>> step_y;
    for (int64_t s = 0; s < steps; ++s) {
      Guarded xz(be, DType::F32, batch, 2 * C, 0,
                 std::vector<float>(xs.begin() + s * batch * 2 * C, xs.begin() + (s + 1) * batch * 2 * C));
      Guarded y(be, DType::F32, batch, C, 2, std::vector<float>(size_t(batch * C), 9.f));
      be.causal_conv1d_step(xz.t().col_slice(0, C), w.t(), &b.t(), state.t(), y.t());
      EXPECT_TRUE(y.guards_intact());
      step_y.push_back(y.read());
    }
    EXPECT_TRUE(state.guards_intact());
    const std::vector<float> step_state = state.read();
    for (int64_t q = 0; q < batch; ++q) {
      const std::string where = "causal_conv1d_step isa=" + cpu_isa_name(isa) + " weight=" + dt_str(wdt) +
                                " sequence " + std::to_string(q);
      const std::vector<float> sq(s0.begin() + q * C * d, s0.begin() + (q + 1) * C * d);
      // One prefill over the same `steps` tokens.
      std::vector<float> xq(size_t(steps * C));
      for (int64_t s = 0; s < steps; ++s)
        for (int64_t c = 0; c < C; ++c) xq[size_t(s * C + c)] = xs[size_t((s * batch + q) * 2 * C + c)];
      Guarded x(be, DType::F32, steps, C, 0, xq);
      Guarded st(be, DType::F32, C, d, 0, sq);
      Guarded y(be, DType::F32, steps, C, 0, std::vector<float>(size_t(steps * C), 0.f));
      be.causal_conv1d(x.t(), w.t(), &b.t(), st.t(), y.t());
      const std::vector<float> py = y.read();
      for (int64_t s = 0; s < steps; ++s)
        for (int64_t c = 0; c < C; ++c)
          ASSERT_EQ(step_y[size_t(s)][size_t(q * C + c)], py[size_t(s * C + c)]) << where << " step " << s << " channel " << c;
      EXPECT_EQ(std::vector<float>(step_state.begin() + q * C * d, step_state.begin() + (q + 1) * C * d), st.read()) << where;
      // And the first step alone equals a prefill of L = 1.
      Guarded x1(be, DType::F32, 1, C, 0, std::vector<float>(xq.begin(), xq.begin() + C));
      Guarded st1(be, DType::F32, C, d, 0, sq);
      Guarded y1(be, DType::F32, 1, C, 0, std::vector<float>(size_t(C), 0.f));
      be.causal_conv1d(x1.t(), w.t(), &b.t(), st1.t(), y1.t());
      EXPECT_EQ(y1.read(), std::vector<float>(step_y[0].begin() + q * C, step_y[0].begin() + (q + 1) * C)) << where;
    }
  }
}

TEST(CpuKernelSelectiveScanStep, EqualsPrefill) {
  for (CpuIsa isa : isas())
  for (bool with_z : {true, false}) {
    CpuBackend be(isa);
    const int64_t batch = 2, Ch = 2045, N = 16, steps = 12;  // 2045: a partial group of 8
    std::mt19937 rng(with_z ? 92 : 93);
    ScanInputs in = scan_inputs(rng, steps * batch, Ch, N, 0);
    Guarded A_log(be, DType::BF16, Ch, N, 0, in.A_log);
    Guarded D(be, DType::F16, 1, Ch, 0, in.D);
    Guarded dt_bias(be, DType::F32, 1, Ch, 0, in.dt_bias);
    const std::vector<float> s0 = uniform(rng, size_t(batch * Ch * N), -1, 1);
    Guarded state(be, DType::F32, batch * Ch, N, 0, s0);
    // Token s of sequence q is row s * batch + q of the inputs.
    std::vector<std::vector<float>> step_y;
    for (int64_t s = 0; s < steps; ++s) {
      auto rows = [&](const std::vector<float>& v, int64_t w) {
        return std::vector<float>(v.begin() + s * batch * w, v.begin() + (s + 1) * batch * w);
      };
      Guarded u(be, DType::F32, batch, Ch, 0, rows(in.u, Ch));
      Guarded delta(be, DType::F32, batch, Ch, 0, rows(in.delta, Ch));
      Guarded z(be, DType::F32, batch, Ch, 3, rows(in.z, Ch));
      Guarded B(be, DType::F32, batch, N, 1, rows(in.B, N));
      Guarded C(be, DType::F32, batch, N, 0, rows(in.C, N));
      Guarded y(be, DType::F32, batch, Ch, 1, std::vector<float>(size_t(batch * Ch), 9.f));
      be.selective_scan_step(u.t(), delta.t(), A_log.t(), B.t(), C.t(), D.t(), with_z ? &z.t() : nullptr,
                             dt_bias.t(), state.t(), y.t());
      EXPECT_TRUE(y.guards_intact());
      step_y.push_back(y.read());
    }
    const std::vector<float> step_state = state.read();
    for (int64_t q = 0; q < batch; ++q) {
      const std::string where = "selective_scan_step isa=" + cpu_isa_name(isa) + " z=" + std::to_string(with_z) +
                                " sequence " + std::to_string(q);
      auto seq = [&](const std::vector<float>& v, int64_t w, int64_t n_steps) {
        std::vector<float> out;
        for (int64_t s = 0; s < n_steps; ++s)
          out.insert(out.end(), v.begin() + (s * batch + q) * w, v.begin() + (s * batch + q + 1) * w);
        return out;
      };
      const std::vector<float> sq(s0.begin() + q * Ch * N, s0.begin() + (q + 1) * Ch * N);
      for (int64_t L : {int64_t(1), steps}) {
        Guarded u(be, DType::F32, L, Ch, 0, seq(in.u, Ch, L));
        Guarded delta(be, DType::F32, L, Ch, 0, seq(in.delta, Ch, L));
        Guarded z(be, DType::F32, L, Ch, 0, seq(in.z, Ch, L));
        Guarded B(be, DType::F32, L, N, 0, seq(in.B, N, L));
        Guarded C(be, DType::F32, L, N, 0, seq(in.C, N, L));
        Guarded st(be, DType::F32, Ch, N, 0, sq);
        Guarded y(be, DType::F32, L, Ch, 0, std::vector<float>(size_t(L * Ch), 0.f));
        be.selective_scan(u.t(), delta.t(), A_log.t(), B.t(), C.t(), D.t(), with_z ? &z.t() : nullptr,
                          dt_bias.t(), st.t(), y.t());
        const std::vector<float> py = y.read();
        for (int64_t s = 0; s < L; ++s)
          for (int64_t c = 0; c < Ch; ++c)
            ASSERT_EQ(step_y[size_t(s)][size_t(q * Ch + c)], py[size_t(s * Ch + c)])
                << where << " prefill L=" << L << " step " << s << " channel " << c;
        if (L == steps) {
          EXPECT_EQ(std::vector<float>(step_state.begin() + q * Ch * N, step_state.begin() + (q + 1) * Ch * N),
                    st.read())
              << where;
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// make_*_params reject mismatched calls with a dm::Error naming the kernel and the tensor.

// A buffer that is never dereferenced: params only look at sizes.
class FakeBuffer : public Buffer {
 public:
  explicit FakeBuffer(size_t bytes) : Buffer(bytes) {}
};

template <typename F>
void expect_error(F&& f, const std::string& kernel, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "[" << kernel << "] accepted a call that should fail with '" << fragment << "'";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.rfind("[" + kernel + "]", 0), 0u) << m;
    EXPECT_NE(m.find(fragment), std::string::npos) << "expected '" << fragment << "' in: " << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
}

TEST(CpuKernelParams, RejectMismatchedCalls) {
  FakeBuffer big(size_t(1) << 40);
  auto T = [&](DType dt, int64_t r, int64_t c) { return make_tensor(big, dt, r, c); };
  const Tensor x = T(DType::F32, 10, 768), w = T(DType::F16, 3072, 768), y = T(DType::F32, 10, 3072);
  EXPECT_NO_THROW(make_gemm_params(x, w, nullptr, y));
  expect_error([&] { make_gemm_params(x, T(DType::F16, 3072, 700), nullptr, y); }, "gemm",
               "(3072 x 700, stride 700, F16)");
  expect_error([&] { make_gemm_params(x, w, nullptr, T(DType::F32, 10, 3000)); }, "gemm", "(10 x 3000");
  expect_error([&] { make_gemm_params(T(DType::F16, 10, 768), w, nullptr, y); }, "gemm", "expected dtype F32");
  expect_error([&] { make_gemm_params(x, T(DType::I32, 3072, 768), nullptr, y); }, "gemm", "float dtype");
  const Tensor bad_bias = T(DType::F32, 1, 3071);
  expect_error([&] { make_gemm_params(x, w, &bad_bias, y); }, "gemm", "bias");
  Tensor narrow = x;
  narrow.row_stride = 700;
  expect_error([&] { make_gemm_params(narrow, w, nullptr, y); }, "gemm", "row stride is smaller");
  FakeBuffer small(100);
  expect_error([&] { make_gemm_params(make_tensor(small, DType::F32, 10, 768), w, nullptr, y); }, "gemm",
               "past the end");
  expect_error([&] { make_gemm_params(T(DType::F32, int64_t(5) << 30, 1), T(DType::F32, 1, 1), nullptr,
                                      T(DType::F32, int64_t(5) << 30, 1)); },
               "gemm", "uint32");
  Tensor unaligned = x;
  unaligned.offset = 2;
  expect_error([&] { make_gemm_params(unaligned, w, nullptr, y); }, "gemm", "offset");
  Tensor no_buf = x;
  no_buf.buf = nullptr;
  expect_error([&] { make_gemm_params(no_buf, w, nullptr, y); }, "gemm", "no buffer");

  const Tensor h = T(DType::F32, 10, 768), nw = T(DType::F32, 1, 768);
  EXPECT_NO_THROW(make_rms_norm_params(h, &h, nw, h, 1e-5f));
  expect_error([&] { make_rms_norm_params(h, nullptr, T(DType::F32, 1, 767), h, 1e-5f); }, "rms_norm", "weight");
  const Tensor short_res = T(DType::F32, 9, 768);
  expect_error([&] { make_rms_norm_params(h, &short_res, nw, h, 1e-5f); }, "rms_norm", "residual");

  const Tensor cx = T(DType::F32, 20, 1536), cw = T(DType::F32, 1536, 4), cs = T(DType::F32, 1536, 4);
  EXPECT_NO_THROW(make_causal_conv1d_params(cx, cw, nullptr, cs, cx));
  expect_error([&] { make_causal_conv1d_params(cx, cw, nullptr, T(DType::F32, 1536, 3), cx); },
               "causal_conv1d", "conv_state");
  expect_error([&] { make_causal_conv1d_params(cx, cw, nullptr, T(DType::F16, 1536, 4), cx); },
               "causal_conv1d", "conv_state (1536 x 4, stride 4, F16)");
  Tensor strided_state = cs;
  strided_state.row_stride = 8;
  expect_error([&] { make_causal_conv1d_params(cx, cw, nullptr, strided_state, cx); }, "causal_conv1d",
               "contiguous");
  expect_error([&] { make_causal_conv1d_step_params(T(DType::F32, 2, 1536), cw, nullptr, cs, T(DType::F32, 2, 1536)); },
               "causal_conv1d_step", "conv_state");

  const int64_t L = 20, Ch = 1536, N = 16;
  const Tensor u = T(DType::F32, L, Ch), A = T(DType::F32, Ch, N), B = T(DType::F32, L, N),
               vec = T(DType::F32, 1, Ch), st = T(DType::F32, Ch, N);
  EXPECT_NO_THROW(make_selective_scan_params(u, u, A, B, B, vec, &u, vec, st, u));
  expect_error([&] { make_selective_scan_params(u, u, A, B, B, vec, &u, vec, T(DType::F32, Ch, 8), u); },
               "selective_scan", "ssm_state");
  expect_error([&] { make_selective_scan_params(u, u, A, B, B, vec, &u, vec, T(DType::BF16, Ch, N), u); },
               "selective_scan", "ssm_state");
  expect_error([&] { make_selective_scan_params(u, u, A, T(DType::F32, L - 1, N), B, vec, &u, vec, st, u); },
               "selective_scan", "B (19 x 16");
  const Tensor short_z = T(DType::F32, L, Ch - 1);
  expect_error([&] { make_selective_scan_params(u, u, A, B, B, vec, &short_z, vec, st, u); },
               "selective_scan", "z");
  expect_error([&] { make_selective_scan_params(u, u, A, B, B, T(DType::F32, 1, 10), nullptr, vec, st, u); },
               "selective_scan", "D");
  expect_error([&] { make_selective_scan_step_params(T(DType::F32, 2, Ch), T(DType::F32, 2, Ch), A, T(DType::F32, 2, N),
                                                     T(DType::F32, 2, N), vec, nullptr, vec, st, T(DType::F32, 2, Ch)); },
               "selective_scan_step", "ssm_state");

  expect_error([&] { make_dt_importance_params(u, vec, T(DType::F32, L - 1, 1)); }, "dt_importance", "scores");

  const Tensor sc = T(DType::F32, 100, 1);
  EXPECT_NO_THROW(make_topk_indices_params(sc, 99, 20, T(DType::I32, 21, 1)));
  expect_error([&] { make_topk_indices_params(sc, 99, 20, T(DType::F32, 21, 1)); }, "topk_indices", "I32");
  expect_error([&] { make_topk_indices_params(sc, 50, 51, T(DType::I32, 101, 1)); }, "topk_indices", "k = 51");
  expect_error([&] { make_topk_indices_params(sc, 101, 20, T(DType::I32, 19, 1)); }, "topk_indices",
               "n_candidates = 101");
  expect_error([&] { make_topk_indices_params(sc, 99, 20, T(DType::I32, 20, 1)); }, "topk_indices", "idx");

  expect_error([&] { make_gather_rows_params(w, T(DType::F32, 5, 1), T(DType::F32, 5, 768)); }, "gather_rows", "I32");
  expect_error([&] { make_gather_rows_params(w, T(DType::I32, 5, 1), T(DType::F32, 5, 767)); }, "gather_rows", "dst");

  // A buffer from elsewhere is refused by the cpu backend itself.
  CpuBackend be;
  try {
    be.gemm(x, w, nullptr, y);
    ADD_FAILURE() << "cpu backend accepted a foreign buffer";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[cpu]"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dm
