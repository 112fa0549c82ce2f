// CUDA benchmarks, all on random data (timing only) on the first CUDA device:
//   1. copy: device-to-device cudaMemcpy bandwidth (read + write), the ceiling every floor uses;
//   2. kernels: each Backend kernel at real widths (d_inner 1536 = 130m, 5120 = 2.8b) and long
//      prompts: device time (median of 20, CUDA events), GB/s of the fewest bytes the kernel must
//      move, and that as a percentage of the copy bandwidth (the floor of docs/performance.md);
//      GEMMs in TFLOP/s;
//   3. decode: one token at batch 1 of a random fp16 model of the 130m and 2.8b shapes, the
//      kernel sequence of Executor::step, eager (one launch per kernel) and replayed from a CUDA
//      graph recorded once, against the weight-read floor (weight bytes / copy bandwidth);
//   4. prefill: Executor::prefill end to end on a random 130m fp16 model.
// Usage: bench_cuda [sections=copy,kernels,decode,prefill] [decode shapes=130m,2.8b]
// Prints markdown tables and one JSON line per row.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
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

// Random host values, cheap to make: xorshift, uniform in [-1, 1).
std::vector<float> pool_f32(size_t n, uint64_t seed) {
  std::vector<float> v(n);
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& x : v) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    x = float(int64_t(s >> 40) - (int64_t(1) << 23)) / float(1 << 23);
  }
  return v;
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
  std::vector<float> pool = pool_f32(size_t(1) << 24, 1);
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
  for (int64_t C : {1536, 5120})
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

// The decode step of Executor::step on device weights, without its token upload and logits
// download: the part a CUDA graph records.
struct DecodeModel {
  struct Layer { Tensor norm, in_proj, conv_w, conv_b, x_proj, dt_proj, dt_bias, A_log, D, out_proj, conv_st, ssm; };
  int64_t Dm, E, N = 16, R, V = 50280, d_conv = 4;
  Tensor emb, norm_f, ids, residual, hidden, normed, xz, xc, x_dbl, dt, y, logits;
  std::vector<Layer> layers;
  double weight_bytes = 0;

  DecodeModel(Bench& b, int64_t d_model, int n_layer) : Dm(d_model), E(2 * d_model), R((d_model + 15) / 16) {
    auto w = [&](int64_t rows, int64_t cols, float scale, float shift = 0.f) {
      weight_bytes += double(rows * cols) * 2;
      return b.tensor(DType::F16, rows, cols, scale, shift);
    };
    emb = w(V, Dm, 0.05f);
    norm_f = w(1, Dm, 0.1f, 1.f);
    for (int l = 0; l < n_layer; ++l) {
      Layer L;
      L.norm = w(1, Dm, 0.1f, 1.f);
      L.in_proj = w(2 * E, Dm, 1.7f / std::sqrt(float(Dm)));
      L.conv_w = w(E, d_conv, 0.5f);
      L.conv_b = w(1, E, 0.1f);
      L.x_proj = w(R + 2 * N, E, 1.7f / std::sqrt(float(E)));
      L.dt_proj = w(E, R, 1.7f / std::sqrt(float(R)));
      L.dt_bias = w(1, E, 1.f, -4.f);
      L.A_log = w(E, N, 1.f, 1.5f);
      L.D = w(1, E, 0.5f, 1.f);
      L.out_proj = w(Dm, E, 1.7f / std::sqrt(float(E)));
      L.conv_st = b.tensor(DType::F32, E, d_conv, 0.f);
      L.ssm = b.tensor(DType::F32, E, N, 0.f);
      layers.push_back(L);
    }
    ids = b.tensor(DType::I32, 1, 1);
    residual = b.tensor(DType::F32, 1, Dm);
    hidden = b.tensor(DType::F32, 1, Dm);
    normed = b.tensor(DType::F32, 1, Dm);
    xz = b.tensor(DType::F32, 1, 2 * E);
    xc = b.tensor(DType::F32, 1, E);
    x_dbl = b.tensor(DType::F32, 1, R + 2 * N);
    dt = b.tensor(DType::F32, 1, E);
    y = b.tensor(DType::F32, 1, E);
    logits = b.tensor(DType::F32, 1, V);
  }

  void step(Backend& be) {
    be.gather_rows(emb, ids, residual);
    for (size_t l = 0; l < layers.size(); ++l) {
      const Layer& w = layers[l];
      if (l == 0) be.rms_norm(residual, nullptr, w.norm, normed, 1e-5f);
      else be.rms_norm(hidden, &residual, w.norm, normed, 1e-5f);
      be.gemm(normed, w.in_proj, nullptr, xz);
      const Tensor z = xz.col_slice(E, E);
      be.causal_conv1d_step(xz.col_slice(0, E), w.conv_w, &w.conv_b, w.conv_st, xc);
      be.gemm(xc, w.x_proj, nullptr, x_dbl);
      be.gemm(x_dbl.col_slice(0, R), w.dt_proj, nullptr, dt);
      be.selective_scan_step(xc, dt, w.A_log, x_dbl.col_slice(R, N), x_dbl.col_slice(R + N, N),
                             w.D, &z, w.dt_bias, w.ssm, y);
      be.gemm(y, w.out_proj, nullptr, hidden);
    }
    be.rms_norm(hidden, &residual, norm_f, normed, 1e-5f);
    be.gemm(normed, emb, nullptr, logits);
  }
};

void bench_decode(Bench& b, const std::vector<std::string>& shapes, const char* card) {
  Backend& be = b.be;
  std::printf("\n## Decode, batch 1, random fp16 weights, on %s (floor = weight bytes / %.0f GB/s)\n\n",
              card, b.copy_gbs);
  std::printf("| shape | weights MB | mode | µs/token | tokens/s | floor µs | of floor |\n|---|---|---|---|---|---|---|\n");
  for (const std::string& s : shapes) {
    const int64_t dm = s == "2.8b" ? 2560 : s == "1.4b" ? 2048 : s == "370m" ? 1024 : 768;
    const int nl = s == "2.8b" ? 64 : s == "130m" ? 24 : 48;
    DecodeModel m(b, dm, nl);
    std::vector<float> logits(size_t(m.V));
    const int n_tok = 64;
    int32_t tok = 17;
    auto run_tokens = [&](auto&& body) {
      be.synchronize();
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < n_tok; ++i) {
        be.upload(*m.ids.buf, 0, &tok, 4);
        body();
        be.download(*m.logits.buf, 0, logits.data(), logits.size() * 4);
        tok = int32_t((tok * 1103515245u + 12345u) % uint32_t(m.V));
      }
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / n_tok;
    };
    run_tokens([&] { m.step(be); });  // warm-up: sizes cuBLAS's choices and the scratch
    const double eager = run_tokens([&] { m.step(be); });
    cuda_graph_begin(be);
    m.step(be);
    std::unique_ptr<CudaGraph> g = cuda_graph_end(be);
    run_tokens([&] { g->replay(); });
    const double graph = run_tokens([&] { g->replay(); });
    const double dev_graph = 1e-3 * cuda_time_ms(be, [&] { g->replay(); }, 20, 2);
    const double floor_s = m.weight_bytes / (b.copy_gbs * 1e9);
    for (auto [mode, t] : {std::pair<const char*, double>{"eager (host loop)", eager},
                           {"graph (host loop)", graph}, {"graph (device time)", dev_graph}}) {
      std::printf("| %s | %.0f | %s | %.1f | %.0f | %.1f | %.0f%% |\n", s.c_str(),
                  m.weight_bytes / 1e6, mode, t * 1e6, 1.0 / t, floor_s * 1e6, 100.0 * floor_s / t);
      std::fprintf(stderr,
                   "{\"bench\":\"cuda_decode\",\"card\":\"%s\",\"shape\":\"%s\",\"mode\":\"%s\","
                   "\"us_per_token\":%.2f,\"tok_s\":%.1f,\"floor_us\":%.2f}\n",
                   card, s.c_str(), mode, t * 1e6, 1.0 / t, floor_s * 1e6);
    }
    b.release();
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

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  size_t a = 0;
  while (a <= s.size()) {
    const size_t b = s.find(',', a);
    out.push_back(s.substr(a, b == std::string::npos ? std::string::npos : b - a));
    if (b == std::string::npos) break;
    a = b + 1;
  }
  return out;
}

}  // namespace

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
  if (sections.find("kernels") != std::string::npos) bench_kernels(b, card.c_str());
  else if (sections.find("scan") != std::string::npos) bench_kernels(b, card.c_str(), true);
  if (sections.find("decode") != std::string::npos) bench_decode(b, shapes, card.c_str());
  if (sections.find("prefill") != std::string::npos) bench_prefill(*be, card.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_cuda: %s\n", e.what());
  return 1;
}
