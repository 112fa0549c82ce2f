// CUDA benchmarks, all on random data (timing only) on the first CUDA device:
//   1. copy: device-to-device cudaMemcpy bandwidth (read + write), the ceiling every floor uses;
//   2. kernels: each Backend kernel at real widths (d_inner 1536 = 130m, 5120 = 2.8b) and long
//      prompts: device time (median of 20, CUDA events), GB/s of the fewest bytes the kernel must
//      move, and that as a percentage of the copy bandwidth (the floor of docs/performance.md);
//      GEMMs in TFLOP/s; section "scan": selective_scan alone, also at d_inner 2048, 3072, 4096;
//   3. decode: one token at batch 1 of a random fp16 model of the 130m and 2.8b shapes through
//      Executor::step (eager, and replayed from its recording) and the device time of its
//      recorded kernels, fused decode methods off/on and PDL off/on, against the weight-read
//      floor (weight bytes / copy bandwidth);
//   4. prefill: Executor::prefill end to end on a random 130m fp16 model;
//   5. gemv (not in the default sections): the decode GEMVs of both shapes in a recorded chain,
//      per K split: µs and GB/s;
//   6. decode-settings (not in the default sections; third argument "A=1,B=2;base;..."): the
//      graph device time of a decode step per environment setting, side by side;
//   7. decode-profile (not in the default sections): one eager decode step per shape (default
//      switches) inside cudaProfilerStart/Stop, for `ncu --profile-from-start off bench_cuda
//      decode-profile 2.8b`: each kernel's time and bytes in isolation;
//   8. prefill-profile (not in the default sections): one 16K-token prefill per shape inside
//      cudaProfilerStart/Stop, likewise for ncu. DM_BENCH_PROFILE_TOKENS=N changes the length,
//      DM_BENCH_PROFILE_DECI=LAYER:L_BASE decimates at one layer (DeciMamba's 32K target:
//      DM_BENCH_PROFILE_TOKENS=32768 DM_BENCH_PROFILE_DECI=12:2000).
//   9. decode-trace (not in the default sections): the one-kernel Mamba block
//      (DM_CUDA_DECODE_BLOCK=1) with DM_CUDA_DECODE_BLOCK_TRACE=1, a recorded step replayed:
//      where each layer's kernel spends its time, from its blocks' %globaltimer stamps; per
//      setting of the third argument (as decode-settings).
//  10. greedy-gap (not in the default sections): where a greedy token's time goes beyond the
//      recorded logits step, per shape: back-to-back replays of the logits step, of graphs of 2
//      and 4 steps (the boundary between graphs), and of the greedy step (its argmax), then the
//      executor's greedy loop of one-step graphs, 4 picks ahead (generation now runs four steps a
//      graph, GreedyStream), timed on the device and on the host clock, over 256 tokens and over
//      runs of 32.
// Usage: bench_cuda [sections=copy,kernels,decode,prefill] [decode shapes=130m,2.8b] [settings]
// Prints markdown tables and one JSON line per row.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_graph.h"
#include "backend/cuda/cuda_timing.h"
#include "core/dtype.h"
#include "core/error.h"
#include "model/executor.h"
#include "model/random_model.h"

using namespace dm;

namespace {

std::vector<std::string> split(const std::string& s, char sep = ',') {
  std::vector<std::string> out;
  size_t a = 0;
  while (a <= s.size()) {
    const size_t b = s.find(sep, a);
    out.push_back(s.substr(a, b == std::string::npos ? std::string::npos : b - a));
    if (b == std::string::npos) break;
    a = b + 1;
  }
  return out;
}

// Sets the environment of one setting ("base", or "NAME=VALUE,NAME=VALUE") and adds the names it
// set to `names`, for unsetenv once the setting is measured.
void apply_setting(const std::string& setting, std::vector<std::string>& names) {
  if (setting == "base") return;
  for (const std::string& kv : split(setting)) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos) fail("[bench_cuda] setting '", kv, "' is not NAME=VALUE");
    names.push_back(kv.substr(0, eq));
    setenv(names.back().c_str(), kv.substr(eq + 1).c_str(), 1);
  }
}

// Fills `bytes` of buf with the pool's bytes, repeated.
void fill(Backend& be, Buffer& buf, const void* pool, size_t pool_bytes, size_t bytes) {
  for (size_t off = 0; off < bytes; off += pool_bytes)
    be.upload(buf, off, pool, std::min(pool_bytes, bytes - off));
}

struct Bench {
  explicit Bench(Backend& backend) : be(backend) {}
  Backend& be;
  double copy_gbs = 0;
  std::vector<float> pool = uniform_pool(size_t(1) << 24, 1);
  std::vector<std::unique_ptr<Buffer>> owned;

  // A rows × cols tensor of dtype dt filled with pool values (scaled and shifted for fp32).
  Tensor tensor(DType dt, int64_t rows, int64_t cols, float scale = 1.f, float shift = 0.f) {
    const size_t n = size_t(rows * cols), bytes = std::max<size_t>(n * dtype_size(dt), 4);
    owned.push_back(be.alloc(bytes));
    std::vector<uint8_t> host(std::min<size_t>(bytes, pool.size() * dtype_size(dt)));
    const size_t m = host.size() / dtype_size(dt);
    for (size_t i = 0; i < m; ++i) {
      const float v = shift + scale * pool[i];
      if (dt == DType::F32) std::memcpy(&host[i * 4], &v, 4);
      else if (dt == DType::I32) { const int32_t k = int32_t(i % size_t(std::max<int64_t>(rows, 1))); std::memcpy(&host[i * 4], &k, 4); }
      else { const uint16_t h = dt == DType::F16 ? f32_to_f16(v) : f32_to_bf16(v); std::memcpy(&host[i * 2], &h, 2); }
    }
    fill(be, *owned.back(), host.data(), host.size(), bytes);
    return make_tensor(*owned.back(), dt, rows, cols);
  }
  void release() { owned.clear(); }
};

void row(const char* kernel, const std::string& shape, double us, double bytes, double copy_gbs,
         const char* card) {
  const double gbs = bytes / (us * 1e-6) / 1e9;
  const double floor_us = bytes / (copy_gbs * 1e9) * 1e6;
  std::printf("| %-20s | %-28s | %9.1f | %8.1f | %9.1f | %5.0f%% |\n", kernel, shape.c_str(), us,
              gbs, floor_us, 100.0 * floor_us / us);
  std::fprintf(stderr,
               "{\"bench\":\"cuda_kernel\",\"card\":\"%s\",\"kernel\":\"%s\",\"shape\":\"%s\","
               "\"us\":%.2f,\"gbs\":%.1f,\"floor_us\":%.2f,\"pct_of_floor\":%.1f}\n",
               card, kernel, shape.c_str(), us, gbs, floor_us, 100.0 * floor_us / us);
}

void gemm_row(const std::string& what, int64_t M, int64_t N, int64_t K, double us, const char* card) {
  const double tflops = 2.0 * double(M) * double(N) * double(K) / (us * 1e-6) / 1e12;
  std::printf("| %-20s | M=%-6lld N=%-6lld K=%-6lld | %9.1f | %8.1f TFLOP/s |\n", what.c_str(),
              (long long)M, (long long)N, (long long)K, us, tflops);
  std::fprintf(stderr,
               "{\"bench\":\"cuda_gemm\",\"card\":\"%s\",\"what\":\"%s\",\"M\":%lld,\"N\":%lld,"
               "\"K\":%lld,\"us\":%.2f,\"tflops\":%.2f}\n",
               card, what.c_str(), (long long)M, (long long)N, (long long)K, us, tflops);
}

// scan_only: just selective_scan (for comparing DM_CUDA_SCAN variants quickly).
void bench_kernels(Bench& b, const char* card, bool scan_only = false) {
  Backend& be = b.be;
  std::printf("\n## Kernels on %s (fp32 activations; floor = fewest bytes / %.0f GB/s copy)\n\n",
              card, b.copy_gbs);
  std::printf("| kernel | shape | µs | GB/s | floor µs | of floor |\n|---|---|---|---|---|---|\n");
  // The scan section also times the widths between (370m, 790m, 1.4b) to set the per-width
  // defaults of cuda/selective_scan.cu.
  const std::vector<int64_t> widths = scan_only
                                          ? std::vector<int64_t>{1536, 2048, 3072, 4096, 5120}
                                          : std::vector<int64_t>{1536, 5120};
  for (int64_t C : widths)
    for (int64_t L : {4096, 16384}) {
      const int64_t D = C / 2, N = 16, R = (D + 15) / 16;
      const std::string sh = "L=" + std::to_string(L) + " d_inner=" + std::to_string(C);
      Tensor xz = b.tensor(DType::F32, L, 2 * C);
      Tensor u = b.tensor(DType::F32, L, C);
      Tensor dt = b.tensor(DType::F32, L, C, 1.f, -2.f);
      Tensor x_dbl = b.tensor(DType::F32, L, R + 2 * N);
      Tensor y = b.tensor(DType::F32, L, C);
      Tensor A_log = b.tensor(DType::F32, C, N, 1.f, 1.5f);
      Tensor Dv = b.tensor(DType::F32, 1, C);
      Tensor dt_bias = b.tensor(DType::F32, 1, C, 1.f, -4.f);
      Tensor ssm = b.tensor(DType::F32, C, N);
      Tensor conv_w = b.tensor(DType::F32, C, 4);
      Tensor conv_b = b.tensor(DType::F32, 1, C);
      Tensor conv_st = b.tensor(DType::F32, C, 4);
      const Tensor z = xz.col_slice(C, C);
      const Tensor B = x_dbl.col_slice(R, N), Cm = x_dbl.col_slice(R + N, N);
      double us = 1e3 * cuda_time_ms(be, [&] {
        be.selective_scan(u, dt, A_log, B, Cm, Dv, &z, dt_bias, ssm, y);
      });
      row("selective_scan", sh + " z", us, double(L) * (16.0 * C + 128), b.copy_gbs, card);
      if (scan_only) continue;
      us = 1e3 * cuda_time_ms(be, [&] { be.causal_conv1d(xz.col_slice(0, C), conv_w, &conv_b, conv_st, u); });
      row("causal_conv1d", sh, us, double(L) * 8.0 * C, b.copy_gbs, card);
      Tensor scores = b.tensor(DType::F32, L, 1);
      us = 1e3 * cuda_time_ms(be, [&] { be.dt_importance(dt, dt_bias, scores); });
      row("dt_importance", sh, us, double(L) * (4.0 * C + 4), b.copy_gbs, card);
      const int64_t k = L / 2 - 16;
      Tensor idx = b.tensor(DType::I32, k + 16, 1);
      us = 1e3 * cuda_time_ms(be, [&] { be.topk_indices(scores, L - 16, k, idx); });
      row("topk_indices", "L=" + std::to_string(L) + " k=" + std::to_string(k), us,
          4.0 * L + 4.0 * (k + 16), b.copy_gbs, card);
      us = 1e3 * cuda_time_ms(be, [&] { be.gather_rows(u, idx, y.row_slice(0, k + 16)); });
      row("gather_rows", "n=" + std::to_string(k + 16) + " cols=" + std::to_string(C), us,
          8.0 * double(k + 16) * C, b.copy_gbs, card);
      Tensor res = b.tensor(DType::F32, L, D), hid = b.tensor(DType::F32, L, D);
      Tensor nw = b.tensor(DType::F32, 1, D, 0.1f, 1.f), normed = b.tensor(DType::F32, L, D);
      us = 1e3 * cuda_time_ms(be, [&] { be.rms_norm(hid, &res, nw, normed, 1e-5f); });
      row("rms_norm", "L=" + std::to_string(L) + " d_model=" + std::to_string(D) + " +residual",
          us, double(L) * 16.0 * D, b.copy_gbs, card);
      // Decode kernels, batch 1: launch-bound; bytes are the state read + written.
      Tensor st1 = b.tensor(DType::F32, C, 4);
      us = 1e3 * cuda_time_ms(be, [&] {
        be.causal_conv1d_step(xz.row_slice(0, 1).col_slice(0, C), conv_w, &conv_b, st1, u.row_slice(0, 1));
      });
      if (L == 4096) row("causal_conv1d_step", "batch=1 d_inner=" + std::to_string(C), us, 40.0 * C, b.copy_gbs, card);
      const Tensor z1 = z.row_slice(0, 1);
      us = 1e3 * cuda_time_ms(be, [&] {
        be.selective_scan_step(u.row_slice(0, 1), dt.row_slice(0, 1), A_log, B.row_slice(0, 1),
                               Cm.row_slice(0, 1), Dv, &z1, dt_bias, ssm, y.row_slice(0, 1));
      });
      if (L == 4096) row("selective_scan_step", "batch=1 d_inner=" + std::to_string(C), us, 128.0 * C + 16.0 * C, b.copy_gbs, card);
      // The prefill GEMMs of a layer, F16 weights (activations converted inside).
      struct G { const char* what; int64_t N, K; };
      for (const G& g : {G{"gemm in_proj f16", 2 * C, D}, G{"gemm x_proj f16", R + 2 * N, C},
                         G{"gemm dt_proj f16", C, R}, G{"gemm out_proj f16", D, C}}) {
        Tensor x = b.tensor(DType::F32, L, g.K), w = b.tensor(DType::F16, g.N, g.K, 0.05f);
        Tensor out = b.tensor(DType::F32, L, g.N);
        us = 1e3 * cuda_time_ms(be, [&] { be.gemm(x, w, nullptr, out); }, 10, 2);
        gemm_row(g.what, L, g.N, g.K, us, card);
      }
      b.release();
    }
}

// The decode GEMVs (batch 1, F16 weights) of the 130m and 2.8b shapes, as a decode step runs
// them: a recorded chain (CUDA graph, programmatic launches) of GEMVs over distinct copies of the
// weight, ≥ 256 MB in all so that none is still in L2 when read again; device time per GEMV and
// weight GB/s: gemv_small_m (its default K split) and gemv_rows (its default shape, then every
// shape: DM_CUDA_GEMV_ROWS, DM_CUDA_GEMV_SHAPE).
void bench_gemv(Bench& b, const char* card) {
  Backend& be = b.be;
  std::printf("\n## Decode GEMVs on %s (F16 weights, a graph of back-to-back GEMVs over distinct copies)\n\n", card);
  std::printf("| matrix | N × K | kernel / shape | µs | GB/s | of copy |\n|---|---|---|---|---|---|\n");
  struct G { const char* what; int64_t N, K; };
  const G gs[] = {{"2.8b in_proj", 10240, 2560}, {"2.8b out_proj", 2560, 5120},
                  {"2.8b x_proj", 192, 5120},    {"2.8b dt_proj", 5120, 160},
                  {"2.8b lm_head", 50280, 2560}, {"130m in_proj", 3072, 768},
                  {"130m out_proj", 768, 1536},  {"130m x_proj", 80, 1536},
                  {"130m lm_head", 50280, 768}};
  for (const G& g : gs) {
    const double bytes = 2.0 * double(g.N) * double(g.K);
    const int copies = int(std::max(2.0, std::ceil(256e6 / bytes)));
    std::vector<Tensor> w;
    for (int i = 0; i < copies; ++i) w.push_back(b.tensor(DType::F16, g.N, g.K, 0.05f));
    Tensor x = b.tensor(DType::F32, 1, g.K), y = b.tensor(DType::F32, 1, g.N);
    // "small": gemv_small_m with its default K split; "rows": gemv_rows with its default shape;
    // "KSxRW": gemv_rows with that shape (DM_CUDA_GEMV_SHAPE).
    for (const char* ks : {"small", "rows", "2x1", "2x2", "2x4", "4x1", "4x2", "4x4", "8x1",
                           "8x2", "8x4"}) {
      const std::string v = ks;
      unsetenv("DM_CUDA_GEMV_KS");
      setenv("DM_CUDA_GEMV_ROWS", v == "small" ? "0" : "1", 1);
      if (v == "small" || v == "rows") unsetenv("DM_CUDA_GEMV_SHAPE");
      else setenv("DM_CUDA_GEMV_SHAPE", ks, 1);
      be.gemm(x, w[0], nullptr, y);  // first launch outside the recording
      std::unique_ptr<Recording> rec = be.record([&] {
        for (const Tensor& wi : w) be.gemm(x, wi, nullptr, y);
      });
      const double us = 1e3 * cuda_time_ms(be, [&] { be.replay(*rec); }, 10, 2) / copies;
      const double gbs = bytes / (us * 1e3);
      std::printf("| %s | %lld × %lld | %s | %.2f | %.0f | %.0f%% |\n", g.what, (long long)g.N,
                  (long long)g.K, ks, us, gbs, 100.0 * gbs / b.copy_gbs);
      std::fprintf(stderr,
                   "{\"bench\":\"cuda_gemv\",\"card\":\"%s\",\"matrix\":\"%s\",\"ks\":\"%s\","
                   "\"us\":%.3f,\"gbs\":%.1f}\n", card, g.what, ks, us, gbs);
    }
    unsetenv("DM_CUDA_GEMV_ROWS");
    unsetenv("DM_CUDA_GEMV_SHAPE");
    b.release();
  }
}

// Decode runs Executor::step itself (one source for the kernel sequence): eager and replayed
// from the executor's recording in a host loop (token upload + logits download included), and
// the device time of the recorded step (Executor::enqueue_step_kernels, what step() records)
// for each setting of the switches: DM_FUSED_STEP (the fused decode methods; 0: the seven
// single kernels per layer, the composition of backend.cpp) and DM_CUDA_PDL (programmatic
// dependent launch). Both are read at enqueue time, so one process measures every setting.
void bench_decode(Bench& b, const std::vector<std::string>& shapes, const char* card) {
  Backend& be = b.be;
  std::printf("\n## Decode, batch 1, random fp16 weights, Executor::step, on %s (floor = weight bytes / %.0f GB/s)\n\n",
              card, b.copy_gbs);
  std::printf("| shape | weights MB | fused | PDL | mode | µs/token | tokens/s | floor µs | of floor |\n"
              "|---|---|---|---|---|---|---|---|---|\n");
  for (const std::string& s : shapes) {
    auto rm = make_pooled_random_model(s);
    const double weight_bytes = double(rm->model.weight_bytes());
    const double floor_s = weight_bytes / (b.copy_gbs * 1e9);
    const int64_t V = rm->model.config.padded_vocab;
    Executor ex(be, rm->model);
    auto st = ex.new_state();
    auto report = [&](const char* fused, const char* pdl, const char* mode, double t) {
      std::printf("| %s | %.0f | %s | %s | %s | %.1f | %.0f | %.1f | %.0f%% |\n", s.c_str(),
                  weight_bytes / 1e6, fused, pdl, mode, t * 1e6, 1.0 / t, floor_s * 1e6,
                  100.0 * floor_s / t);
      std::fprintf(stderr,
                   "{\"bench\":\"cuda_decode\",\"card\":\"%s\",\"shape\":\"%s\",\"fused\":%s,"
                   "\"pdl\":%s,\"mode\":\"%s\",\"us_per_token\":%.2f,\"tok_s\":%.1f,"
                   "\"floor_us\":%.2f,\"pct_of_floor\":%.1f}\n",
                   card, s.c_str(), fused, pdl, mode, t * 1e6, 1.0 / t, floor_s * 1e6,
                   100.0 * floor_s / t);
    };
    int32_t tok = 17;
    auto run_tokens = [&](int n_tok) {
      be.synchronize();
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < n_tok; ++i) {
        ex.step(tok, *st);
        tok = int32_t((tok * 1103515245u + 12345u) % uint32_t(V));
      }
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / n_tok;
    };
    for (const char* fused : {"0", "1"}) {
      setenv("DM_FUSED_STEP", fused, 1);
      setenv("DM_CUDA_PDL", "1", 1);
      // Host loops (PDL on where the device has it).
      ex.set_step_replay(false);
      run_tokens(4);  // warm-up: sizes the step buffers and the kernels' first-launch costs
      const double eager = run_tokens(64);
      ex.set_step_replay(true);  // records on the next step, for this setting of the switches
      run_tokens(4);
      const double graph = run_tokens(64);
      report(fused, "1", "eager (host loop)", eager);
      report(fused, "1", "graph (host loop)", graph);
      for (const char* pdl : {"0", "1"}) {
        setenv("DM_CUDA_PDL", pdl, 1);
        std::unique_ptr<Recording> rec = be.record([&] { ex.enqueue_step_kernels(*st); });
        const double dev = 1e-3 * cuda_time_ms(be, [&] { be.replay(*rec); }, 20, 3);
        report(fused, pdl, "graph (device time)", dev);
      }
      ex.set_step_replay(false);  // drop the recording made under this setting
    }
    unsetenv("DM_FUSED_STEP");
    unsetenv("DM_CUDA_PDL");
  }
}

// The graph device time of one decode step under each of `settings` (';'-separated; each a
// ','-separated list of NAME=VALUE environment settings applied while the step is recorded, or
// "base" for none), side by side in one process: for A/B runs of the decode switches.
void bench_decode_settings(Bench& b, const std::vector<std::string>& shapes,
                           const std::string& settings, const char* card) {
  Backend& be = b.be;
  std::printf("\n## Decode settings, batch 1, random fp16 weights, graph device time, on %s\n\n", card);
  std::printf("| shape | setting | µs/token | floor µs | of floor |\n|---|---|---|---|---|\n");
  const std::vector<std::string> list = split(settings, ';');
  for (const std::string& s : shapes) {
    auto rm = make_pooled_random_model(s);
    const double floor_us = double(rm->model.weight_bytes()) / (b.copy_gbs * 1e3);
    Executor ex(be, rm->model);
    ex.set_step_replay(false);
    auto st = ex.new_state();
    for (int i = 0; i < 4; ++i) ex.step(17, *st);
    for (const std::string& setting : list) {
      std::vector<std::string> names;
      apply_setting(setting, names);
      std::unique_ptr<Recording> rec = be.record([&] { ex.enqueue_step_kernels(*st); });
      const double us = 1e3 * cuda_time_ms(be, [&] { be.replay(*rec); }, 30, 5);
      for (const std::string& n : names) unsetenv(n.c_str());
      std::printf("| %s | %s | %.1f | %.1f | %.0f%% |\n", s.c_str(), setting.c_str(), us, floor_us,
                  100.0 * floor_us / us);
      std::fprintf(stderr,
                   "{\"bench\":\"cuda_decode_setting\",\"card\":\"%s\",\"shape\":\"%s\",\"setting\":\"%s\","
                   "\"us_per_token\":%.2f,\"floor_us\":%.2f}\n",
                   card, s.c_str(), setting.c_str(), us, floor_us);
    }
  }
}

// See the file comment (10.): µs a token of each stage between the logits graph and greedy
// generation, so that the gap between them is attributed before anyone shortens it.
void bench_greedy_gap(Bench& b, const std::vector<std::string>& shapes, const char* card) {
  Backend& be = b.be;
  std::printf("\n## Greedy decode, batch 1, random fp16 weights: the gap to the logits graph, "
              "on %s\n\n", card);
  std::printf("| shape | what | µs/token | vs logits graph |\n|---|---|---|---|\n");
  constexpr int kTokens = 256, kRun = 32;
  for (const std::string& s : shapes) {
    auto rm = make_pooled_random_model(s);
    const int64_t V = rm->model.config.vocab_size;
    Executor ex(be, rm->model);
    auto st = ex.new_state();
    ex.set_step_replay(false);
    for (int i = 0; i < 4; ++i) ex.step(17, *st);  // sizes the step buffers
    std::unique_ptr<Recording> logits = be.record([&] { ex.enqueue_step_kernels(*st); });
    std::unique_ptr<Recording> greedy = be.record([&] { ex.enqueue_step_kernels(*st, V); });
    const double base = 1e3 * cuda_loop_time_ms(be, [&] { be.replay(*logits); }, kTokens);
    auto row = [&](const char* what, double us) {
      std::printf("| %s | %s | %.1f | %+.1f |\n", s.c_str(), what, us, us - base);
      std::fprintf(stderr,
                   "{\"bench\":\"cuda_greedy_gap\",\"card\":\"%s\",\"shape\":\"%s\","
                   "\"what\":\"%s\","
                   "\"us_per_token\":%.2f}\n", card, s.c_str(), what, us);
    };
    row("logits graph, back to back", base);
    // The boundary between two graphs (no PDL across it, the graph launch): steps per graph.
    for (int k : {2, 4}) {
      std::unique_ptr<Recording> multi = be.record([&] {
        for (int i = 0; i < k; ++i) ex.enqueue_step_kernels(*st);
      });
      const std::string what = "logits graph of " + std::to_string(k) + " steps, per step";
      row(what.c_str(), 1e3 * cuda_loop_time_ms(be, [&] { be.replay(*multi); }, kTokens / k) / k);
    }
    row("greedy graph (+ argmax), back to back",
        1e3 * cuda_loop_time_ms(be, [&] { be.replay(*greedy); }, kTokens));
    // The executor's loop: each step fed the pick before it on the device, its id downloaded
    // (download_start: a copy kernel and an event), taken 4 steps later.
    ex.set_step_replay(true);
    ex.step_greedy(17, *st, V);
    auto enqueue = [&] {
      if (ex.greedy_outstanding() == 4) ex.greedy_take();
      ex.greedy_enqueue(-1, *st, V);
    };
    auto drain = [&] { while (ex.greedy_outstanding() > 0) ex.greedy_take(); };
    row("executor greedy loop, device time",
        1e3 * cuda_loop_time_ms(be, enqueue, kTokens, 4, drain));
    auto wall = [&](int n) {
      be.synchronize();
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < n; ++i) enqueue();
      drain();
      return 1e6 * std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / n;
    };
    row("executor greedy loop, host clock, 256 tokens", wall(kTokens));
    std::vector<double> runs;
    for (int r = 0; r < 7; ++r) runs.push_back(wall(kRun));
    std::sort(runs.begin(), runs.end());
    row("executor greedy loop, host clock, runs of 32 (median of 7)", runs[runs.size() / 2]);
  }
}

// One eager decode step per shape inside a profiler range (see the file comment).
void bench_decode_profile(Backend& be, const std::vector<std::string>& shapes) {
  for (const std::string& s : shapes) {
    auto rm = make_pooled_random_model(s);
    Executor ex(be, rm->model);
    ex.set_step_replay(false);
    auto st = ex.new_state();
    for (int i = 0; i < 4; ++i) ex.step(17, *st);  // sizes the step buffers, first launches
    cuda_profiler_range(be, [&] { ex.enqueue_step_kernels(*st); });
    std::printf("decode-profile: one step of %s in the profiler range\n", s.c_str());
  }
}

// One prefill of 16,384 tokens per shape inside a profiler range (after a warm-up prefill), for
// `ncu --profile-from-start off bench_cuda prefill-profile 130m`: each kernel's share of a prompt.
void bench_prefill_profile(Backend& be, const std::vector<std::string>& shapes) {
  const char* tok = std::getenv("DM_BENCH_PROFILE_TOKENS");
  const size_t L = tok ? std::strtoull(tok, nullptr, 10) : 16384;
  DecimationConfig deci;
  if (const char* d = std::getenv("DM_BENCH_PROFILE_DECI"); d && *d) {
    int layer = -1;
    double base = 0;
    if (std::sscanf(d, "%d:%lf", &layer, &base) != 2 || layer < 0 || base <= 0)
      fail("DM_BENCH_PROFILE_DECI=", d, ": want LAYER:L_BASE, e.g. 12:2000");
    deci.enabled = true;
    deci.layers = {layer};
    deci.L_base = base;
  }
  if (L == 0) fail("DM_BENCH_PROFILE_TOKENS must be a positive count");
  for (const std::string& s : shapes) {
    auto rm = make_pooled_random_model(s);
    Executor ex(be, rm->model, deci);
    std::vector<int32_t> prompt(L);
    for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = int32_t((i * 7919) % 50000);
    auto st = ex.new_state();
    ex.prefill(prompt, *st);  // sizes every buffer
    st->reset();
    cuda_profiler_range(be, [&] { ex.prefill(prompt, *st); });
    std::printf("prefill-profile: %zu tokens of %s (%s) in the profiler range\n", L, s.c_str(),
                describe_decimation(deci).c_str());
  }
}

void bench_prefill(Backend& be, const char* card) {
  std::printf("\n## Prefill via Executor, random 130m fp16 model, on %s\n\n| tokens | ms | tokens/s |\n|---|---|---|\n", card);
  auto rm = make_random_model("130m", DType::F16);
  Executor ex(be, rm->model);
  for (int64_t L : {4096, 16384}) {
    std::vector<int32_t> prompt(static_cast<size_t>(L));
    std::mt19937 rng(7);
    for (auto& t : prompt) t = int32_t(rng() % 50280u);
    auto st = ex.new_state();
    ex.prefill(prompt, *st);  // warm-up
    double best = 1e30;
    for (int r = 0; r < 3; ++r) {
      st->reset();
      const auto t0 = std::chrono::steady_clock::now();
      ex.prefill(prompt, *st);
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::printf("| %lld | %.2f | %.0f |\n", (long long)L, best * 1e3, L / best);
    std::fprintf(stderr, "{\"bench\":\"cuda_prefill\",\"card\":\"%s\",\"shape\":\"130m\",\"tokens\":%lld,\"ms\":%.3f}\n",
                 card, (long long)L, best * 1e3);
  }
}

// Section 9: the stamps of cuda/mamba_block_step.cu (in order: 0 start, 1 small weights staged,
// 2 griddepcontrol.wait returned, 3 norm done and in_proj / out_proj slices landed, 4 in_proj +
// conv step, 5 x_proj partials stored, 6 x_proj reduced (blocks j < R + 2N), 7 x_dbl read,
// 8 scan step + y stored, 9 y read, 10 out_proj done), as ns since stamp 2 of the same block,
// mean over the step's layers, for block 0 and the last block; and the gap from a layer's later
// end (of the two blocks) to the next layer's stamp 2 (kernel completion → dependent release).
void bench_decode_trace(Bench& b, const std::vector<std::string>& shapes,
                        const std::string& settings, const char* card) {
  Backend& be = b.be;
  std::printf("\n## One-kernel Mamba block, stamps (ns after griddepcontrol.wait; mean over layers), on %s\n\n", card);
  for (const std::string& s : shapes) {
    auto rm = make_pooled_random_model(s);
    Executor ex(be, rm->model);
    ex.set_step_replay(false);
    auto st = ex.new_state();
    std::printf("| %s | block | stamp 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10 | gap to next | µs per layer | SM MHz |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n", s.c_str());
    for (const std::string& setting : split(settings, ';')) {
      std::vector<std::string> names = {"DM_CUDA_DECODE_BLOCK", "DM_CUDA_DECODE_BLOCK_TRACE"};
      setenv("DM_CUDA_DECODE_BLOCK", "1", 1);
      setenv("DM_CUDA_DECODE_BLOCK_TRACE", "1", 1);
      apply_setting(setting, names);
      for (int i = 0; i < 4; ++i) ex.step(17, *st);
      std::unique_ptr<Recording> rec = be.record([&] { ex.enqueue_step_kernels(*st); });
      for (int i = 0; i < 5; ++i) be.replay(*rec);
      const std::vector<unsigned long long> t = cuda_decode_block_trace(be);
      for (const std::string& n : names) unsetenv(n.c_str());
      // The last step's launches: the n_layer highest epochs.
      struct Rec { unsigned long long epoch; const unsigned long long *b0, *bl; };
      std::vector<Rec> recs;
      for (size_t slot = 0; slot * 32 < t.size(); ++slot)
        if (t[slot * 32 + 15] != 0) recs.push_back({t[slot * 32 + 15], &t[slot * 32], &t[slot * 32 + 16]});
      std::sort(recs.begin(), recs.end(), [](const Rec& x, const Rec& y) { return x.epoch < y.epoch; });
      const size_t L = size_t(ex.config().n_layer);
      if (recs.size() < L) {
        std::printf("| %s %s: %zu trace records, expected %zu (not the one-kernel path?) |\n", s.c_str(), setting.c_str(), recs.size(), L);
        continue;
      }
      recs.erase(recs.begin(), recs.end() - long(L));
      const double span = double(recs.back().b0[10]) - double(recs.front().b0[2]);
      for (int which = 0; which < 2; ++which) {
        double mean[11] = {}, gap = 0, cycles = 0, ns = 0;
        for (size_t l = 0; l < L; ++l) {
          const unsigned long long* r = which ? recs[l].bl : recs[l].b0;
          for (int i = 0; i < 11; ++i) mean[i] += (double(r[i]) - double(r[2])) / double(L);
          cycles += double(r[11]), ns += double(r[10]) - double(r[2]);
          if (l + 1 < L) {
            const double end = double(std::max(recs[l].b0[10], recs[l].bl[10]));
            const unsigned long long* n = which ? recs[l + 1].bl : recs[l + 1].b0;
            gap += (double(n[2]) - end) / double(L - 1);
          }
        }
        std::printf("| %s | %s |", setting.c_str(), which ? "last" : "0");
        for (int i = 0; i < 11; ++i) std::printf(" %.0f |", mean[i]);
        std::printf(" %.0f | %.2f | %.0f |\n", gap, span / 1e3 / double(L), 1e3 * cycles / ns);
      }
    }
  }
}

}  // namespace

// Whether the comma-separated `sections` names `name` exactly ("decode" is not "decode-profile").
bool has_section(const std::string& sections, const std::string& name) {
  for (const std::string& x : split(sections))
    if (x == name) return true;
  return false;
}

int main(int argc, char** argv) try {
  const std::string sections = argc > 1 ? argv[1] : "copy,kernels,decode,prefill";
  const std::vector<std::string> shapes = split(argc > 2 ? argv[2] : "130m,2.8b");
  for (const BackendInfo& info : list_backends())
    if (info.name == "cuda" && !info.available) {
      std::printf("bench_cuda: cuda backend unavailable: %s\n", info.detail.c_str());
      return 0;
    }
  auto be = create_backend("cuda");
  const std::string card = be->device_name();
  Bench b(*be);
  b.copy_gbs = cuda_copy_bandwidth_gbs(*be);
  std::printf("# bench_cuda on %s\n\ncopy bandwidth (cudaMemcpy D2D, read+write): %.0f GB/s\n",
              card.c_str(), b.copy_gbs);
  std::fprintf(stderr, "{\"bench\":\"cuda_copy\",\"card\":\"%s\",\"gbs\":%.1f}\n", card.c_str(), b.copy_gbs);
  if (has_section(sections, "kernels")) bench_kernels(b, card.c_str());
  else if (has_section(sections, "scan")) bench_kernels(b, card.c_str(), true);
  if (has_section(sections, "decode")) bench_decode(b, shapes, card.c_str());
  if (has_section(sections, "gemv")) bench_gemv(b, card.c_str());
  if (has_section(sections, "decode-settings"))
    bench_decode_settings(b, shapes, argc > 3 ? argv[3] : "base", card.c_str());
  if (has_section(sections, "decode-profile")) bench_decode_profile(b.be, shapes);
  if (has_section(sections, "greedy-gap")) bench_greedy_gap(b, shapes, card.c_str());
  if (has_section(sections, "decode-trace"))
    bench_decode_trace(b, shapes, argc > 3 ? argv[3] : "base", card.c_str());
  if (has_section(sections, "prefill-profile")) bench_prefill_profile(b.be, shapes);
  if (has_section(sections, "prefill")) bench_prefill(*be, card.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_cuda: %s\n", e.what());
  return 1;
}
