// Vulkan benchmarks, all on random data (timing only; the weights are noise):
//   1. kernels: each Backend kernel at the 130m and 2.8b widths (d_inner 1536, 5120) and
//      L = 4K, 16K, 64K: device time from timestamp queries (median of the repetitions; the
//      selective scan's passes summed), GB/s of the fewest bytes the kernel must move
//      (docs/performance.md), and the floor time at the card's copy bandwidth as a percentage
//      of the measured time (the target for selective_scan is ≥ 70%);
//   2. decode and prefill end to end (Executor) on random fp16 models of the 130m and 2.8b
//      shapes, decimation off and on: tokens per second;
//   3. decode (not in the default sections): Executor::step at batch 1, the fused decode shaders
//      (DM_VULKAN_FUSED_STEP) off and on, µs per token against the weight-read floor (weight
//      bytes / floor bandwidth), then one profiled run per shape: the per-kernel device times of
//      a step (timestamp queries; the profiled steps run eagerly, so only their kernel times count).
//      --decode-settings "LABEL:ENV=V ENV=V;LABEL2:..." times the replayed step once per setting
//      instead (environment variables set while it is recorded and replayed; --decode-rounds N
//      runs the settings in turn N times, single runs differing by up to ~5%; --decode-profile:
//      each setting's kernel profile too): A/B runs of decode switches on one random model.
//   4. gemv (not in the default sections): each decode GEMV of the --shapes models alone (in_proj,
//      x_proj, dt_proj, out_proj, lm_head; M = 1, fp16 weights), once per DM_VULKAN_GEMV value
//      ("old": gemm.small_m_vec, "default": gemm.gemv's own choice, "T,PIPE": a forced shape;
//      --gemv-variants, default: old, default and a sweep of T): device µs (median), GB/s of the
//      weights + x + y, % of the floor. L2 is flushed (a 128 MiB copy) before every timed call,
//      as decode streams weights far larger than the L2.
//   5. unroll (not in the default sections): per --shapes model, a recording of k decode steps
//      (Executor::enqueue_step_kernels k times; k = 1, 2, 4) replayed back to back, µs a step on
//      the host clock (after a synchronize): what the boundary between two recorded units (the
//      submit, the fence, the host) costs beside a step's own dispatches; also one-step
//      recordings two at a time in turn (a command buffer still pending when it is submitted
//      again may cost the driver something) and the first row again last.
// Floor bandwidth: --floor-gbs, else 3000 GB/s on an H100 and 4300 on an H200 (measured
// device-to-device copies, docs/performance.md), else a gather_rows copy measured here.
//
// Usage: bench_vulkan [--device N] [--quick] [--sections kernels,e2e,decode,gemv,unroll]
//                     [--widths 1536,5120]
//                     [--lengths 4096,16384,65536] [--shapes 130m,2.8b] [--reps 10]
//                     [--floor-gbs G] [--prefill-len 2048] [--kernels selective_scan,...]
//                     [--scan-modes "default;chunked;warp;warp:4,4;lookback:32,8,4"]
//                     [--gemm-variants default,n256,t32,n128] [--gemv-variants "old;default;32,10"]
//                     [--decode-settings "off:DM_VULKAN_BLOCK_STEP=0;four:DM_VULKAN_BLOCK_STEP=4"]
//                     [--decode-rounds 2] [--decode-profile]
// --kernels: only these kernels (names as in the table; gemm is "gemm"). --scan-modes: time
// selective_scan once per mode, ';'-separated: DM_VULKAN_SCAN=mode, and for "lookback:CW,S,TOK"
// also DM_VULKAN_SCAN_LB=CW,S,TOK, for "warp:CB,R" DM_VULKAN_SCAN_WARP=CB,R (rows labelled
// selective_scan[mode]). --gemm-variants: time
// the prefill GEMMs (in_proj, x_proj, dt_proj, out_proj) once per DM_VULKAN_GEMM_COOPMAT value.
// Prints markdown tables, and one JSON object per row on stderr. --quick: small sizes for a
// CPU Vulkan (lavapipe), to check that the benchmark runs.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/vulkan/vulkan_backend.h"
#include "core/dtype.h"
#include "core/error.h"
#include "model/decimation.h"
#include "model/executor.h"
#include "model/random_model.h"

using namespace dm;

namespace {

struct Options {
  int device = 0;
  bool quick = false;
  std::vector<std::string> sections{"kernels", "e2e"};
  std::vector<int64_t> widths{1536, 5120};
  std::vector<int64_t> lengths{4096, 16384, 65536};
  std::vector<std::string> shapes{"130m", "2.8b"};
  int reps = 10;
  double floor_gbs = 0;
  int64_t prefill_len = 2048;
  int decode_tokens = 64;
  std::vector<std::string> kernels;     // empty: all
  std::vector<std::string> scan_modes;  // empty: the default only
  std::vector<std::string> gemm_variants;  // empty: the default only
  std::vector<std::string> gemv_variants;  // empty: old, default and a sweep of T
  std::vector<std::string> decode_settings;  // empty: fused shaders 0 and 1, each profiled
  int decode_rounds = 1;
  bool decode_profile = false;  // --decode-profile: each setting's kernel times (round 1)
};

template <typename T>
std::vector<T> split_list(const std::string& s) {
  std::vector<T> out;
  std::stringstream ss(s);
  for (std::string part; std::getline(ss, part, ',');) {
    if constexpr (std::is_same_v<T, std::string>) out.push_back(part);
    else out.push_back(T(std::stoll(part)));
  }
  return out;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) fail("[bench_vulkan] ", a, " needs a value");
      return argv[++i];
    };
    if (a == "--device") o.device = std::stoi(next());
    else if (a == "--quick") o.quick = true;
    else if (a == "--sections") o.sections = split_list<std::string>(next());
    else if (a == "--widths") o.widths = split_list<int64_t>(next());
    else if (a == "--lengths") o.lengths = split_list<int64_t>(next());
    else if (a == "--shapes") o.shapes = split_list<std::string>(next());
    else if (a == "--reps") o.reps = std::stoi(next());
    else if (a == "--floor-gbs") o.floor_gbs = std::stod(next());
    else if (a == "--prefill-len") o.prefill_len = std::stoll(next());
    else if (a == "--kernels") o.kernels = split_list<std::string>(next());
    else if (a == "--scan-modes") {
      std::stringstream ss(next());
      for (std::string part; std::getline(ss, part, ';');) o.scan_modes.push_back(part);
    }
    else if (a == "--gemm-variants") o.gemm_variants = split_list<std::string>(next());
    else if (a == "--gemv-variants") {
      std::stringstream ss(next());
      for (std::string part; std::getline(ss, part, ';');) o.gemv_variants.push_back(part);
    }
    else if (a == "--decode-settings") {
      std::stringstream ss(next());
      for (std::string part; std::getline(ss, part, ';');) o.decode_settings.push_back(part);
    }
    else if (a == "--decode-rounds") o.decode_rounds = std::stoi(next());
    else if (a == "--decode-profile") o.decode_profile = true;
    else fail("[bench_vulkan] unknown argument ", a, " (see the comment at the top of bench_vulkan.cpp)");
  }
  if (o.quick) {
    o.widths = {1536};
    o.lengths = {1024};
    o.shapes = {"tiny"};
    o.reps = 3;
    o.prefill_len = 256;
    o.decode_tokens = 8;
  }
  return o;
}

bool has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}
bool want(const Options& o, const std::string& kernel) { return o.kernels.empty() || has(o.kernels, kernel); }

class Bench {
 public:
  Bench(Backend& be, int reps) : be_(be), reps_(reps) { vulkan_set_profiling(be_, true); }

  Tensor tensor(DType dt, int64_t rows, int64_t cols, float lo, float hi) {
    const size_t n = size_t(rows * cols), es = dtype_size(dt);
    owned_.push_back(be_.alloc(std::max<size_t>(n * es, 4)));
    // A pool of 1M random values, repeated: filling gigabytes value by value takes too long.
    const size_t pool = std::min<size_t>(n, size_t(1) << 20);
    std::vector<uint8_t> host(pool * es);
    std::uniform_real_distribution<float> dist(lo, hi);
    for (size_t i = 0; i < pool; ++i) {
      const float v = dist(rng_);
      if (dt == DType::F32) std::memcpy(&host[i * 4], &v, 4);
      else if (dt == DType::I32) { const int32_t k = int32_t(i % size_t(std::max<int64_t>(rows, 1))); std::memcpy(&host[i * 4], &k, 4); }
      else { const uint16_t h = dt == DType::F16 ? f32_to_f16(v) : f32_to_bf16(v); std::memcpy(&host[i * 2], &h, 2); }
    }
    for (size_t off = 0; off < n * es; off += host.size())
      be_.upload(*owned_.back(), off, host.data(), std::min(host.size(), n * es - off));
    return make_tensor(*owned_.back(), dt, rows, cols);
  }
  void release() {
    be_.synchronize();
    owned_.clear();
  }

  // Median device time of one call in µs (timestamps; the sum over the call's dispatches).
  double time_us(const std::function<void()>& call) { return time_us_cold("", nullptr, call); }
  // The same, counting only the kernels whose label starts with `prefix`, with `before` (an L2
  // flush), where given, run and waited for before each call.
  double time_us_cold(const std::string& prefix, const std::function<void()>& before,
                      const std::function<void()>& call) {
    const auto w0 = std::chrono::steady_clock::now();
    call();  // warm-up: pipelines, scratch
    be_.synchronize();
    // A warm-up that built a pipeline (host work of tens to hundreds of ms) leaves the GPU idle
    // long enough for its clocks to drop: an H100 timed the 130m in_proj GEMM at 354.7 µs right
    // after the clock warm-up and at 1491.7 µs after a variant's pipeline build
    // (bench/results/h100_vulkan_gemm_stages_2026-11-27.md). Then 300 ms of calls first.
    if (std::chrono::steady_clock::now() - w0 > std::chrono::milliseconds(20))
      for (const auto w1 = std::chrono::steady_clock::now();
           std::chrono::steady_clock::now() - w1 < std::chrono::milliseconds(300);) {
        call();
        be_.synchronize();
      }
    std::vector<double> t;
    for (int r = 0; r < reps_; ++r) {
      if (before) {
        before();
        be_.synchronize();
      }
      const double t0 = total_us(prefix);
      call();
      t.push_back(total_us(prefix) - t0);
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  }

 private:
  double total_us(const std::string& prefix) {
    double s = 0;
    for (const auto& k : vulkan_profile(be_))
      if (k.kernel.compare(0, prefix.size(), prefix) == 0) s += k.total_us;
    return s;
  }
  Backend& be_;
  int reps_;
  std::mt19937 rng_{1};
  std::vector<std::unique_ptr<Buffer>> owned_;
};

void row(const std::string& card, const char* kernel, const std::string& shape, double us, double bytes,
         double floor_gbs) {
  const double gbs = bytes / (us * 1e-6) / 1e9;
  const double floor_us = bytes / (floor_gbs * 1e9) * 1e6;
  std::printf("| %-20s | %-30s | %10.1f | %8.1f | %9.1f | %5.0f%% |\n", kernel, shape.c_str(), us, gbs,
              floor_us, 100.0 * floor_us / us);
  std::fprintf(stderr,
               "{\"bench\":\"vulkan_kernel\",\"card\":\"%s\",\"kernel\":\"%s\",\"shape\":\"%s\","
               "\"us\":%.2f,\"gbs\":%.1f,\"floor_us\":%.2f,\"pct_of_floor\":%.1f}\n",
               card.c_str(), kernel, shape.c_str(), us, gbs, floor_us, 100.0 * floor_us / us);
}

double measure_copy_gbs(Bench& b, Backend& be) {
  const int64_t rows = 16384, cols = 4096;  // 256 MiB read + 256 MiB written
  Tensor src = b.tensor(DType::F32, rows, cols, -1.f, 1.f), dst = b.tensor(DType::F32, rows, cols, 0.f, 1.f);
  Tensor idx = b.tensor(DType::I32, rows, 1, 0.f, 0.f);  // 0, 1, 2, ...: identity
  const double us = b.time_us([&] { be.gather_rows(src, idx, dst); });
  b.release();
  return 2.0 * double(rows * cols) * 4 / (us * 1e-6) / 1e9;
}

void bench_kernels(Backend& be, const Options& o, const std::string& card, double floor_gbs) {
  Bench b(be, o.reps);
  std::printf("\n## Kernels on %s (random fp32 activations, fp16 weights; floor = fewest bytes at %.2f GB/s)\n\n",
              card.c_str(), floor_gbs);
  std::printf("| kernel | shape | µs | GB/s | floor µs | of floor |\n|---|---|---|---|---|---|\n");
  for (int64_t C : o.widths)
    for (int64_t L : o.lengths) {
      const int64_t D = C / 2, N = 16, R = (D + 15) / 16;
      const std::string sh = "L=" + std::to_string(L) + " d_inner=" + std::to_string(C);
      Tensor xz = b.tensor(DType::F32, L, 2 * C, -1.f, 1.f);
      Tensor u = b.tensor(DType::F32, L, C, -1.f, 1.f);
      Tensor dt = b.tensor(DType::F32, L, C, -3.f, 0.f);
      Tensor x_dbl = b.tensor(DType::F32, L, R + 2 * N, -1.f, 1.f);
      Tensor y = b.tensor(DType::F32, L, C, 0.f, 1.f);
      Tensor A_log = b.tensor(DType::F16, C, N, 0.f, 2.7f);
      Tensor Dv = b.tensor(DType::F16, 1, C, 0.5f, 1.5f);
      Tensor dt_bias = b.tensor(DType::F16, 1, C, -4.f, -2.f);
      Tensor ssm = b.tensor(DType::F32, C, N, -1.f, 1.f);
      Tensor conv_w = b.tensor(DType::F16, C, 4, -0.5f, 0.5f);
      Tensor conv_b = b.tensor(DType::F16, 1, C, -0.5f, 0.5f);
      Tensor conv_st = b.tensor(DType::F32, C, 4, -1.f, 1.f);
      const Tensor z = xz.col_slice(C, C);
      const Tensor B = x_dbl.col_slice(R, N), Cm = x_dbl.col_slice(R + N, N);
      double us = 0;
      if (want(o, "selective_scan")) {
        if (o.scan_modes.empty()) {
          us = b.time_us([&] { be.selective_scan(u, dt, A_log, B, Cm, Dv, &z, dt_bias, ssm, y); });
          row(card, "selective_scan", sh + " z", us, double(L) * (16.0 * C + 128), floor_gbs);
        }
        for (const std::string& m : o.scan_modes) {
          const size_t colon = m.find(':');
          const std::string mode = m.substr(0, colon);
          if (mode == "default") unsetenv("DM_VULKAN_SCAN");
          else setenv("DM_VULKAN_SCAN", mode.c_str(), 1);
          unsetenv("DM_VULKAN_SCAN_LB");
          unsetenv("DM_VULKAN_SCAN_WARP");
          if (colon != std::string::npos)
            setenv(mode.rfind("warp", 0) == 0 ? "DM_VULKAN_SCAN_WARP" : "DM_VULKAN_SCAN_LB", m.substr(colon + 1).c_str(), 1);
          us = b.time_us([&] { be.selective_scan(u, dt, A_log, B, Cm, Dv, &z, dt_bias, ssm, y); });
          const std::string label = "selective_scan[" + m + "]";
          row(card, label.c_str(), sh + " z", us, double(L) * (16.0 * C + 128), floor_gbs);
        }
        unsetenv("DM_VULKAN_SCAN");
        unsetenv("DM_VULKAN_SCAN_LB");
        unsetenv("DM_VULKAN_SCAN_WARP");
      }
      if (want(o, "causal_conv1d")) {
        us = b.time_us([&] { be.causal_conv1d(xz.col_slice(0, C), conv_w, &conv_b, conv_st, u); });
        row(card, "causal_conv1d", sh, us, double(L) * 8.0 * C, floor_gbs);
      }
      Tensor scores = b.tensor(DType::F32, L, 1, 0.f, 1.f);
      if (want(o, "dt_importance")) {
        us = b.time_us([&] { be.dt_importance(dt, dt_bias, scores); });
        row(card, "dt_importance", sh, us, double(L) * (4.0 * C + 4), floor_gbs);
      }
      const int64_t k = L / 2 - 16;
      Tensor idx = b.tensor(DType::I32, k + 16, 1, 0.f, 0.f);
      if (want(o, "topk_indices")) {
        us = b.time_us([&] { be.topk_indices(scores, L - 16, k, idx); });
        row(card, "topk_indices", "L=" + std::to_string(L) + " k=" + std::to_string(k), us,
            4.0 * L + 4.0 * (k + 16), floor_gbs);
      }
      if (want(o, "gather_rows")) {
        us = b.time_us([&] { be.gather_rows(u, idx, y.row_slice(0, k + 16)); });
        row(card, "gather_rows", "n=" + std::to_string(k + 16) + " cols=" + std::to_string(C), us,
            8.0 * double(k + 16) * C, floor_gbs);
      }
      Tensor res = b.tensor(DType::F32, L, D, -1.f, 1.f), hid = b.tensor(DType::F32, L, D, -1.f, 1.f);
      Tensor nw = b.tensor(DType::F16, 1, D, 0.5f, 1.5f), normed = b.tensor(DType::F32, L, D, 0.f, 1.f);
      if (want(o, "rms_norm")) {
        us = b.time_us([&] { be.rms_norm(hid, &res, nw, normed, 1e-5f); });
        row(card, "rms_norm", "L=" + std::to_string(L) + " d_model=" + std::to_string(D) + " +residual", us,
            double(L) * 16.0 * D, floor_gbs);
      }
      // The prefill GEMMs of a layer at this width (fp16 weights, as bench_cuda times them):
      // TFLOP/s. --gemm-variants: once per DM_VULKAN_GEMM_COOPMAT value ("default": unset).
      if (want(o, "gemm")) {
        Tensor w_in = b.tensor(DType::F16, 2 * C, D, -0.05f, 0.05f);
        Tensor w_x = b.tensor(DType::F16, R + 2 * N, C, -0.05f, 0.05f);
        Tensor w_dt = b.tensor(DType::F16, C, R, -0.05f, 0.05f);
        Tensor w_out = b.tensor(DType::F16, D, C, -0.05f, 0.05f);
        struct G {
          const char* name;
          const Tensor *x, *w, *bias;
          Tensor y;
        };
        const Tensor dt_in = x_dbl.col_slice(0, R);
        const G gs[] = {{"in_proj", &hid, &w_in, nullptr, xz},
                        {"x_proj", &u, &w_x, nullptr, x_dbl},
                        {"dt_proj", &dt_in, &w_dt, &dt_bias, dt},
                        {"out_proj", &y, &w_out, nullptr, res}};
        const std::vector<std::string> variants =
            o.gemm_variants.empty() ? std::vector<std::string>{"default"} : o.gemm_variants;
        // Every variant's pipelines are built first (one call per shape and variant: a pipeline
        // built between timings idles the GPU and its clocks drop), then the clocks of an idle
        // GPU take a while to rise: 1.5 s of GEMMs before the first timing.
        static bool warmed = false;
        for (const std::string& v : variants) {
          if (v == "default") unsetenv("DM_VULKAN_GEMM_COOPMAT");
          else setenv("DM_VULKAN_GEMM_COOPMAT", v.c_str(), 1);
          for (const G& g : gs) be.gemm(*g.x, *g.w, g.bias, g.y);
          be.synchronize();
        }
        unsetenv("DM_VULKAN_GEMM_COOPMAT");
        for (const auto t0 = std::chrono::steady_clock::now();
             !warmed && std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(1500);) {
          be.gemm(hid, w_in, nullptr, xz);
          be.synchronize();
        }
        warmed = true;
        for (const G& g : gs) {
          for (const std::string& v : variants) {  // variants side by side, per shape
            if (v == "default") unsetenv("DM_VULKAN_GEMM_COOPMAT");
            else setenv("DM_VULKAN_GEMM_COOPMAT", v.c_str(), 1);
            const int64_t M = g.x->rows, Nn = g.w->rows, K = g.w->cols;
            us = b.time_us([&] { be.gemm(*g.x, *g.w, g.bias, g.y); });
            const double tflops = 2.0 * double(M) * double(Nn) * double(K) / (us * 1e-6) / 1e12;
            const std::string label = std::string("gemm ") + g.name + (v == "default" ? "" : "[" + v + "]");
            const std::string shape =
                "M=" + std::to_string(M) + " N=" + std::to_string(Nn) + " K=" + std::to_string(K);
            std::printf("| %-20s | %-30s | %10.1f | %6.2f TFLOP/s |\n", label.c_str(), shape.c_str(), us, tflops);
            std::fprintf(stderr,
                         "{\"bench\":\"vulkan_gemm\",\"card\":\"%s\",\"gemm\":\"%s\",\"variant\":\"%s\","
                         "\"M\":%lld,\"N\":%lld,\"K\":%lld,\"us\":%.2f,\"tflops\":%.3f}\n",
                         card.c_str(), g.name, v.c_str(), (long long)M, (long long)Nn, (long long)K, us, tflops);
          }
        }
        unsetenv("DM_VULKAN_GEMM_COOPMAT");
      }
      // Decode kernels at batch 1: the state read and written.
      Tensor st1 = b.tensor(DType::F32, C, 4, -1.f, 1.f);
      if (want(o, "causal_conv1d_step")) {
        us = b.time_us([&] {
          be.causal_conv1d_step(xz.row_slice(0, 1).col_slice(0, C), conv_w, &conv_b, st1, u.row_slice(0, 1));
        });
        row(card, "causal_conv1d_step", "batch=1 d_inner=" + std::to_string(C), us, 40.0 * C, floor_gbs);
      }
      const Tensor z1 = z.row_slice(0, 1);
      if (want(o, "selective_scan_step")) {
        us = b.time_us([&] {
          be.selective_scan_step(u.row_slice(0, 1), dt.row_slice(0, 1), A_log, B.row_slice(0, 1),
                                 Cm.row_slice(0, 1), Dv, &z1, dt_bias, ssm, y.row_slice(0, 1));
        });
        row(card, "selective_scan_step", "batch=1 d_inner=" + std::to_string(C), us, 8.0 * C * N + 20.0 * C,
            floor_gbs);
      }
      b.release();
    }
  std::printf("\nPer-pass totals of everything above (timestamp queries):\n\n%s", vulkan_profile_table(be).c_str());
}

void bench_e2e(Backend& be, const Options& o, const std::string& card) {
  vulkan_set_profiling(be, false);  // timestamps around every dispatch would cost time here
  std::printf("\n## End to end on %s (random fp16 weights; wall clock)\n\n", card.c_str());
  std::printf("| model | what | tokens | seconds | tokens/s |\n|---|---|---|---|---|\n");
  using clock = std::chrono::steady_clock;
  for (const std::string& shape : o.shapes) {
    auto rm = make_random_model(shape, DType::F16);
    std::mt19937 rng(3);
    std::vector<int32_t> prompt(size_t(o.prefill_len));
    for (auto& t : prompt) t = int32_t(rng() % 50000u % uint32_t(rm->model.config.vocab_size));
    DecimationConfig deci;
    deci.enabled = true;
    deci.layers = {int(rm->model.config.n_layer / 2)};
    deci.L_base = double(std::max<int64_t>(o.prefill_len / 4, 20));
    for (bool decimate : {false, true}) {
      Executor ex(be, rm->model, decimate ? deci : DecimationConfig{});
      auto st = ex.new_state();
      ex.prefill(std::vector<int32_t>(prompt.begin(), prompt.begin() + std::min<size_t>(prompt.size(), 64)), *st);  // warm-up
      st = ex.new_state();
      auto t0 = clock::now();
      auto logits = ex.prefill(prompt, *st);
      const double pre_s = std::chrono::duration<double>(clock::now() - t0).count();
      const std::string what = std::string("prefill") + (decimate ? " decimated (1 layer, L_base " +
                                                                        std::to_string(int64_t(deci.L_base)) + ")"
                                                                  : "");
      std::printf("| %s | %s | %lld | %.3f | %.1f |\n", shape.c_str(), what.c_str(), (long long)prompt.size(),
                  pre_s, double(prompt.size()) / pre_s);
      std::fprintf(stderr, "{\"bench\":\"vulkan_e2e\",\"card\":\"%s\",\"model\":\"%s\",\"what\":\"%s\",\"tokens\":%zu,\"tok_s\":%.2f}\n",
                   card.c_str(), shape.c_str(), what.c_str(), prompt.size(), double(prompt.size()) / pre_s);
      if (decimate) continue;  // decode never decimates
      int32_t tok = 1;
      t0 = clock::now();
      for (int i = 0; i < o.decode_tokens; ++i) logits = ex.step(tok, *st);
      const double dec_s = std::chrono::duration<double>(clock::now() - t0).count();
      std::printf("| %s | decode, batch 1 | %d | %.3f | %.1f |\n", shape.c_str(), o.decode_tokens, dec_s,
                  o.decode_tokens / dec_s);
      std::fprintf(stderr, "{\"bench\":\"vulkan_e2e\",\"card\":\"%s\",\"model\":\"%s\",\"what\":\"decode\",\"tokens\":%d,\"tok_s\":%.2f}\n",
                   card.c_str(), shape.c_str(), o.decode_tokens, o.decode_tokens / dec_s);
    }
  }
}

// Each decode GEMV shape alone, per DM_VULKAN_GEMV variant (see the file comment).
void bench_gemv(Backend& be, const Options& o, const std::string& card, double floor_gbs) {
  Bench b(be, o.reps);
  std::printf("\n## Decode GEMVs on %s (M = 1, random fp16 weights, L2 flushed before each call; floor = "
              "weights + x + y at %.0f GB/s)\n\n",
              card.c_str(), floor_gbs);
  std::printf("| model | gemv | N × K | variant | µs | GB/s | floor µs | of floor |\n|---|---|---|---|---|---|---|---|\n");
  // 128 MiB copied between timed calls: more than an H100's (50 MB) or H200's L2.
  const int64_t frows = o.quick ? 64 : 8192, fcols = 4096;
  Tensor fsrc = b.tensor(DType::F32, frows, fcols, -1.f, 1.f), fdst = b.tensor(DType::F32, frows, fcols, 0.f, 1.f);
  Tensor fidx = b.tensor(DType::I32, frows, 1, 0.f, 0.f);
  auto flush = [&] { be.gather_rows(fsrc, fidx, fdst); };
  for (const std::string& shape : o.shapes) {
    const int64_t D = shape == "2.8b" ? 2560 : shape == "1.4b" ? 2048 : shape == "790m" ? 1536
                    : shape == "370m" ? 1024 : shape == "tiny" ? 64 : 768;
    const int64_t E = 2 * D, R = (D + 15) / 16, V = shape == "tiny" ? 512 : 50280;
    struct G {
      const char* name;
      int64_t N, K;
    };
    const G gs[] = {{"in_proj", 2 * E, D}, {"x_proj", R + 32, E}, {"dt_proj", E, R}, {"out_proj", D, E},
                    {"lm_head", V, D}};
    for (const G& g : gs) {
      Tensor x = b.tensor(DType::F32, 1, g.K, -1.f, 1.f), w = b.tensor(DType::F16, g.N, g.K, -0.05f, 0.05f);
      Tensor y = b.tensor(DType::F32, 1, g.N, 0.f, 1.f);
      std::vector<std::string> variants = o.gemv_variants;
      if (variants.empty()) {
        variants = {"old", "default"};
        const int64_t pieces = g.K / 8;
        for (int64_t T = 1; T <= 256; T *= 2) {
          const int64_t per = (pieces + T - 1) / T;
          if (per <= 16 && (per >= 2 || T == 1) && T <= 2 * pieces)
            variants.push_back(std::to_string(T) + "," + std::to_string(per));
        }
      }
      static bool warmed = false;  // the clocks of an idle GPU take a while to rise
      for (const auto t0 = std::chrono::steady_clock::now();
           !warmed && std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(1000);) {
        for (int i = 0; i < 20; ++i) be.gemm(x, w, nullptr, y);
        be.synchronize();
      }
      warmed = true;
      const double bytes = 2.0 * double(g.N) * double(g.K) + 4.0 * double(g.K + g.N);
      for (const std::string& v : variants) {
        if (v == "default") unsetenv("DM_VULKAN_GEMV");
        else setenv("DM_VULKAN_GEMV", v.c_str(), 1);
        const double us = b.time_us_cold("gemm", flush, [&] { be.gemm(x, w, nullptr, y); });
        const double gbs = bytes / (us * 1e-6) / 1e9, floor_us = bytes / (floor_gbs * 1e9) * 1e6;
        const std::string nk = std::to_string(g.N) + " × " + std::to_string(g.K);
        std::printf("| %s | %s | %s | %s | %.1f | %.0f | %.1f | %.0f%% |\n", shape.c_str(), g.name, nk.c_str(),
                    v.c_str(), us, gbs, floor_us, 100.0 * floor_us / us);
        std::fprintf(stderr,
                     "{\"bench\":\"vulkan_gemv\",\"card\":\"%s\",\"model\":\"%s\",\"gemv\":\"%s\",\"N\":%lld,"
                     "\"K\":%lld,\"variant\":\"%s\",\"us\":%.2f,\"gbs\":%.1f}\n",
                     card.c_str(), shape.c_str(), g.name, (long long)g.N, (long long)g.K, v.c_str(), us, gbs);
      }
      unsetenv("DM_VULKAN_GEMV");
    }
  }
  b.release();
}

// --decode-settings "LABEL:ENV=V ENV=V;LABEL2:...": the replayed step of one random model once
// per setting (its variables set while the step is recorded and replayed, then unset), the
// settings in turn, --decode-rounds times (single runs differ by up to ~5%); --decode-profile:
// after each setting's first timed run, 8 eager steps of a new sequence with timestamps.
template <typename RM>
void decode_settings(Backend& be, const Options& o, const std::string& card, const std::string& shape,
                     RM& rm, double floor_us) {
  using clock = std::chrono::steady_clock;
  const std::vector<int32_t> prompt{1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<std::pair<std::string, std::string>> profiles;
  for (int round = 0; round < o.decode_rounds; ++round)
    for (const std::string& setting : o.decode_settings) {
      const size_t colon = setting.find(':');
      const std::string label = setting.substr(0, colon);
      std::vector<std::string> vars;
      if (colon != std::string::npos) {  // space-separated (values may hold commas: T,PIPE)
        std::stringstream ss(setting.substr(colon + 1));
        for (std::string v; ss >> v;) vars.push_back(v);
      }
      for (const std::string& v : vars) {
        const size_t eq = v.find('=');
        if (eq == std::string::npos) fail("[bench_vulkan] --decode-settings: want ENV=VALUE, got ", v);
        setenv(v.substr(0, eq).c_str(), v.substr(eq + 1).c_str(), 1);
      }
      double us = 0;
      {
        Executor ex(be, rm.model, DecimationConfig{});
        auto st = ex.new_state();
        ex.prefill(prompt, *st);
        for (int i = 0; i < 4; ++i) ex.step(1, *st);  // records, then warms the clocks
        const auto t0 = clock::now();
        for (int i = 0; i < o.decode_tokens; ++i) ex.step(1, *st);
        us = std::chrono::duration<double, std::micro>(clock::now() - t0).count() / o.decode_tokens;
        if (o.decode_profile && round == 0) {  // eager steps of a new sequence, timestamped
          auto pst = ex.new_state();
          ex.prefill(prompt, *pst);
          vulkan_set_profiling(be, true);
          for (int i = 0; i < 8; ++i) ex.step(1, *pst);
          profiles.emplace_back(shape + ", " + setting + ", 8 steps", vulkan_profile_table(be));
          vulkan_set_profiling(be, false);
        }
      }
      for (const std::string& v : vars) unsetenv(v.substr(0, v.find('=')).c_str());
      std::printf("| %s | %.0f | %s (round %d) | %.1f | %.1f | %.1f | %.0f%% |\n", shape.c_str(),
                  rm.model.weight_bytes() / 1e6, setting.c_str(), round + 1, us, 1e6 / us, floor_us,
                  100.0 * floor_us / us);
      std::fprintf(stderr,
                   "{\"bench\":\"vulkan_decode\",\"card\":\"%s\",\"shape\":\"%s\",\"setting\":\"%s\","
                   "\"round\":%d,\"us\":%.2f,\"floor_us\":%.2f}\n",
                   card.c_str(), shape.c_str(), label.c_str(), round + 1, us, floor_us);
      std::fflush(stdout);
    }
  for (const auto& [what, table] : profiles)
    std::printf("\n### Kernel device times: %s\n\n%s", what.c_str(), table.c_str());
}

// See the file comment (5.).
void bench_unroll(Backend& be, const Options& o, const std::string& card) {
  using clock = std::chrono::steady_clock;
  vulkan_set_profiling(be, false);  // a profiling backend does not record
  std::printf("\n## Decode steps per recording, batch 1, random fp16 weights, on %s\n\n",
              card.c_str());
  std::printf("| shape | steps per recording | recordings in turn | µs/step | vs the first row |\n"
              "|---|---|---|---|---|\n");
  constexpr int kSteps = 64;
  for (const std::string& shape : o.shapes) {
    auto rm = make_pooled_random_model(shape);
    Executor ex(be, rm->model, DecimationConfig{});
    ex.set_step_replay(false);
    auto st = ex.new_state();
    for (int i = 0; i < 4; ++i) ex.step(1, *st);  // sizes the step buffers
    double one = 0;
    // {steps per recording, recordings taken in turn}; (1, 1) again last: a first measurement's
    // own effects (clocks, the weights' upload) show as a difference between its two rows.
    const int variants[][2] = {{1, 1}, {1, 2}, {2, 1}, {4, 1}, {1, 1}};
    for (const auto& [k, alternate] : variants) {
      std::vector<std::unique_ptr<Recording>> recs;
      for (int r = 0; r < alternate; ++r) {
        recs.push_back(be.record([&] {
          for (int i = 0; i < k; ++i) ex.enqueue_step_kernels(*st);
        }));
        if (!recs.back()) fail("[bench_vulkan] unroll: the backend did not record");
      }
      // Warm-up; the first row longer (H200, session 19: at 2.8b the first row read 4,970 µs a
      // step after 8 warm-up steps, the same row measured last 3,141).
      const int warm = one == 0 ? kSteps : 8;
      for (int i = 0; i < warm / k; ++i) be.replay(*recs[size_t(i) % recs.size()]);
      be.synchronize();
      const auto t0 = clock::now();
      for (int i = 0; i < kSteps / k; ++i) be.replay(*recs[size_t(i) % recs.size()]);
      be.synchronize();
      const double us =
          std::chrono::duration<double, std::micro>(clock::now() - t0).count() / kSteps;
      if (one == 0) one = us;
      std::printf("| %s | %d | %d | %.1f | %+.1f |\n", shape.c_str(), k, alternate, us, us - one);
      std::fprintf(stderr,
                   "{\"bench\":\"vulkan_unroll\",\"card\":\"%s\",\"shape\":\"%s\",\"steps\":%d,"
                   "\"recordings\":%d,\"us_per_step\":%.2f}\n",
                   card.c_str(), shape.c_str(), k, alternate, us);
      std::fflush(stdout);
    }
  }
}

void bench_decode(Backend& be, const Options& o, const std::string& card, double floor_gbs) {
  using clock = std::chrono::steady_clock;
  vulkan_set_profiling(be, false);  // the floor measurement may have left it on
  std::printf("\n## Decode, batch 1, random fp16 weights, Executor::step, on %s (floor = weight bytes / %.0f GB/s)\n\n",
              card.c_str(), floor_gbs);
  std::printf("| shape | weights MB | %s | µs/token | tokens/s | floor µs | of floor |\n",
              o.decode_settings.empty() ? "fused shaders" : "setting");
  std::printf("|---|---|---|---|---|---|---|\n");
  std::vector<std::pair<std::string, std::string>> profiles;
  for (const std::string& shape : o.shapes) {
    auto rm = make_pooled_random_model(shape);
    const double floor_us = double(rm->model.weight_bytes()) / (floor_gbs * 1e3);
    const std::vector<int32_t> prompt{1, 2, 3, 4, 5, 6, 7, 8};
    if (!o.decode_settings.empty()) {
      decode_settings(be, o, card, shape, *rm, floor_us);
      continue;
    }
    for (const char* fused : {"0", "1"}) {
      setenv("DM_VULKAN_FUSED_STEP", fused, 1);  // read while the step is recorded
      Executor ex(be, rm->model, DecimationConfig{});
      auto st = ex.new_state();
      ex.prefill(prompt, *st);
      for (int i = 0; i < 4; ++i) ex.step(1, *st);  // records, then warms the clocks
      const auto t0 = clock::now();
      for (int i = 0; i < o.decode_tokens; ++i) ex.step(1, *st);
      const double us = std::chrono::duration<double, std::micro>(clock::now() - t0).count() / o.decode_tokens;
      std::printf("| %s | %.0f | %s | %.1f | %.1f | %.1f | %.0f%% |\n", shape.c_str(),
                  rm->model.weight_bytes() / 1e6, fused, us, 1e6 / us, floor_us, 100.0 * floor_us / us);
      std::fprintf(stderr,
                   "{\"bench\":\"vulkan_decode\",\"card\":\"%s\",\"shape\":\"%s\",\"fused\":%s,"
                   "\"us\":%.2f,\"floor_us\":%.2f,\"pct_of_floor\":%.1f}\n",
                   card.c_str(), shape.c_str(), fused, us, floor_us, 100.0 * floor_us / us);
      // One profiled run of the same steps: a new sequence, so that its step is not replayed
      // from the recording above but run eagerly, with timestamps around every dispatch.
      auto pst = ex.new_state();
      ex.prefill(prompt, *pst);
      vulkan_set_profiling(be, true);  // a fresh table
      for (int i = 0; i < 8; ++i) ex.step(1, *pst);
      profiles.emplace_back(shape + ", fused shaders " + fused + ", 8 steps", vulkan_profile_table(be));
      vulkan_set_profiling(be, false);
    }
    unsetenv("DM_VULKAN_FUSED_STEP");
  }
  for (const auto& [what, table] : profiles)
    std::printf("\n### Kernel device times: %s\n\n%s", what.c_str(), table.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    std::unique_ptr<Backend> be = create_vulkan_backend(o.device);
    const std::string card = be->device_name();
    std::string why;
    for (const auto& d : list_vulkan_devices(&why))
      if (d.index == o.device) std::printf("device %d: %s\n", d.index, d.caps.c_str());
    double floor_gbs = o.floor_gbs;
    std::string floor_src = "--floor-gbs";
    if (floor_gbs <= 0 && card.find("H100") != std::string::npos) floor_gbs = 3000, floor_src = "H100 copy (performance.md)";
    if (floor_gbs <= 0 && card.find("H200") != std::string::npos) floor_gbs = 4300, floor_src = "H200 copy (performance.md)";
    if (floor_gbs <= 0) {
      Bench b(*be, o.reps);
      floor_gbs = measure_copy_gbs(b, *be);
      floor_src = "gather_rows copy measured here";
    }
    std::printf("floor bandwidth: %.2f GB/s (%s)\n", floor_gbs, floor_src.c_str());
    if (has(o.sections, "kernels")) bench_kernels(*be, o, card, floor_gbs);
    if (has(o.sections, "e2e")) bench_e2e(*be, o, card);
    if (has(o.sections, "gemv")) bench_gemv(*be, o, card, floor_gbs);
    if (has(o.sections, "decode")) bench_decode(*be, o, card, floor_gbs);
    if (has(o.sections, "unroll")) bench_unroll(*be, o, card);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
