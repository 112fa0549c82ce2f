// Times every CPU kernel at mamba-130m widths (d_model 768, d_inner 1536, d_state 16,
// dt_rank 48, d_conv 4) on random weights and inputs, L = 2048 for prefill and one token for
// decode, and prints ms and GB/s (bytes each kernel must move) or GFLOP/s. The last lines sum
// one layer's kernels into an estimate of a 24-layer 130m prefill and decode step.
//   bench_cpu_kernels [min_seconds_per_kernel = 0.3]
#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/dtype.h"
#include "core/tensor.h"

using namespace dm;

namespace {

double g_min_seconds = 0.3;

struct Owned {
  std::unique_ptr<Buffer> buf;
  Tensor t;
};

// A rows × cols tensor of dtype dt filled with uniform [lo, hi).
Owned make(Backend& be, DType dt, int64_t rows, int64_t cols, float lo, float hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  const size_t n = size_t(rows * cols), es = dtype_size(dt);
  std::vector<uint8_t> host(n * es);
  for (size_t i = 0; i < n; ++i) {
    const float v = d(rng);
    if (dt == DType::F32) {
      std::memcpy(&host[i * 4], &v, 4);
    } else if (dt == DType::I32) {
      const int32_t k = int32_t(v);
      std::memcpy(&host[i * 4], &k, 4);
    } else {
      const uint16_t h = dt == DType::F16 ? f32_to_f16(v) : f32_to_bf16(v);
      std::memcpy(&host[i * 2], &h, 2);
    }
  }
  Owned o;
  o.buf = be.alloc(host.size());
  be.upload(*o.buf, 0, host.data(), host.size());
  o.t = make_tensor(*o.buf, dt, rows, cols);
  return o;
}

// CPU seconds of all the process's threads: on a shared machine, wall time counts the time other
// processes hold the cores, CPU time does not.
double cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

double g_last_cpu_ms = 0;  // CPU ms per call of the last time_ms()

// Median milliseconds of fn over enough repetitions to fill g_min_seconds (at least 3).
double time_ms(Backend& be, const std::function<void()>& fn) {
  fn();  // warm-up: first touch of pages, thread pool start
  be.synchronize();
  std::vector<double> ms;
  const auto start = std::chrono::steady_clock::now();
  const double cpu0 = cpu_seconds();
  while (ms.size() < 3 ||
         std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < g_min_seconds) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    be.synchronize();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    if (ms.size() >= 1000) break;
  }
  g_last_cpu_ms = (cpu_seconds() - cpu0) * 1e3 / double(ms.size());
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// Wall-clock rates, then the CPU time per call and the compute rate per CPU-second.
void row(const std::string& name, const std::string& shape, double ms, double bytes, double flops) {
  std::printf("%-20s %-36s %9.3f ms %7.2f GB/s", name.c_str(), shape.c_str(), ms, bytes / ms / 1e6);
  if (flops > 0) {
    std::printf(" %7.2f GFLOP/s", flops / ms / 1e6);
  } else {
    std::printf(" %15s", "");
  }
  std::printf(" | cpu %9.3f ms", g_last_cpu_ms);
  if (flops > 0) std::printf(" %6.2f GFLOP/cpu-s", flops / g_last_cpu_ms / 1e6);
  std::printf("\n");
}

double bench_gemm(Backend& be, const std::string& label, int64_t M, int64_t N, int64_t K, DType wdt) {
  Owned x = make(be, DType::F32, M, K, -1, 1, 1);
  Owned w = make(be, wdt, N, K, -0.05f, 0.05f, 2);
  Owned y = make(be, DType::F32, M, N, 0, 1, 3);
  const double ms = time_ms(be, [&] { be.gemm(x.t, w.t, nullptr, y.t); });
  const double bytes = double(M * K * 4 + N * K * int64_t(dtype_size(wdt)) + M * N * 4);
  row("gemm " + label, "M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K) +
          " W " + std::string(dtype_name(wdt)), ms, bytes, 2.0 * double(M) * double(N) * double(K));
  return ms;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) g_min_seconds = std::atof(argv[1]);
  std::unique_ptr<Backend> be_ptr = create_backend("cpu");
  Backend& be = *be_ptr;
  const int64_t L = 2048, D = 768, E = 1536, N = 16, R = 48, d_conv = 4;
  std::printf("decimamba CPU kernels, mamba-130m widths, random weights; device: %s\n",
              be.device_name().c_str());
  std::printf("%-20s %-36s %12s %12s %15s | %s\n", "kernel", "shape", "median wall", "bandwidth",
              "compute", "CPU time per call (all threads)");

  // Prefill GEMMs of one layer (F16 weights as shipped, plus the F32 in_proj for comparison).
  double layer_ms = 0;
  layer_ms += bench_gemm(be, "in_proj", L, 2 * E, D, DType::F16);
  bench_gemm(be, "in_proj", L, 2 * E, D, DType::F32);
  layer_ms += bench_gemm(be, "x_proj", L, R + 2 * N, E, DType::F16);
  layer_ms += bench_gemm(be, "dt_proj", L, E, R, DType::F16);
  layer_ms += bench_gemm(be, "out_proj", L, D, E, DType::F16);

  {
    Owned x = make(be, DType::F32, L, D, -1, 1, 4), r = make(be, DType::F32, L, D, -1, 1, 5);
    Owned w = make(be, DType::F16, 1, D, 0.5f, 1.5f, 6), y = make(be, DType::F32, L, D, 0, 1, 7);
    const double ms = time_ms(be, [&] { be.rms_norm(x.t, &r.t, w.t, y.t, 1e-5f); });
    row("rms_norm", "L=2048 D=768 +residual", ms, double(L * D * 4 * 4), 0);
    layer_ms += ms;
  }
  {
    Owned xz = make(be, DType::F32, L, 2 * E, -1, 1, 8);
    Owned w = make(be, DType::F16, E, d_conv, -1, 1, 9), b = make(be, DType::F16, 1, E, -1, 1, 10);
    Owned st = make(be, DType::F32, E, d_conv, -1, 1, 11), y = make(be, DType::F32, L, E, 0, 1, 12);
    const Tensor x = xz.t.col_slice(0, E);
    const double ms = time_ms(be, [&] { be.causal_conv1d(x, w.t, &b.t, st.t, y.t); });
    row("causal_conv1d", "L=2048 C=1536 d_conv=4", ms, double(L * E * 4 * 2), 0);
    layer_ms += ms;
  }
  {
    Owned u = make(be, DType::F32, L, E, -1, 1, 13), delta = make(be, DType::F32, L, E, -3, 3, 14);
    Owned xz = make(be, DType::F32, L, 2 * E, -3, 3, 15), xdbl = make(be, DType::F32, L, R + 2 * N, -1, 1, 16);
    Owned A = make(be, DType::F32, E, N, 0, 2.7f, 17), Dv = make(be, DType::F32, 1, E, 0.5f, 1.5f, 18);
    Owned dtb = make(be, DType::F32, 1, E, -4, -1, 19), st = make(be, DType::F32, E, N, -1, 1, 20);
    Owned y = make(be, DType::F32, L, E, 0, 1, 21);
    const Tensor z = xz.t.col_slice(E, E), B = xdbl.t.col_slice(R, N), C = xdbl.t.col_slice(R + N, N);
    const double ms =
        time_ms(be, [&] { be.selective_scan(u.t, delta.t, A.t, B, C, Dv.t, &z, dtb.t, st.t, y.t); });
    row("selective_scan", "L=2048 C=1536 N=16 +z", ms, double(L * (E * 4 * 4 + 2 * N * 4)), 0);
    layer_ms += ms;

    Owned scores = make(be, DType::F32, L, 1, 0, 1, 22);
    const double ms_dt = time_ms(be, [&] { be.dt_importance(delta.t, dtb.t, scores.t); });
    row("dt_importance", "L=2048 C=1536", ms_dt, double(L * E * 4), 0);
    Owned idx = make(be, DType::I32, 1000 + 1, 1, 0, 1, 23);
    const double ms_topk = time_ms(be, [&] { be.topk_indices(scores.t, L - 1, 1000, idx.t); });
    row("topk_indices", "L=2048 n_candidates=2047 k=1000", ms_topk, double(L * 4 + 1001 * 4), 0);
    Owned res = make(be, DType::F32, L, D, -1, 1, 24), dst = make(be, DType::F32, 1001, D, 0, 1, 25);
    std::vector<int32_t> iv(1001);
    for (int32_t i = 0; i < 1001; ++i) iv[size_t(i)] = i * 2;
    be.upload(*idx.buf, 0, iv.data(), iv.size() * 4);
    const double ms_g = time_ms(be, [&] { be.gather_rows(res.t, idx.t, dst.t); });
    row("gather_rows", "n=1001 of 2048 x 768 F32", ms_g, double(1001 * D * 8), 0);
  }
  {
    Owned emb = make(be, DType::F16, 50280, D, -1, 1, 26), dst = make(be, DType::F32, L, D, 0, 1, 27);
    Owned idx = make(be, DType::I32, L, 1, 0, 50279, 28);
    const double ms = time_ms(be, [&] { be.gather_rows(emb.t, idx.t, dst.t); });
    row("gather_rows", "embedding n=2048 of 50280 x 768 F16", ms, double(L * D * 6), 0);
  }

  // Decode: one token, batch 1.
  double step_ms = 0;
  step_ms += bench_gemm(be, "in_proj decode", 1, 2 * E, D, DType::F16);
  bench_gemm(be, "in_proj decode", 1, 2 * E, D, DType::F32);
  step_ms += bench_gemm(be, "x_proj decode", 1, R + 2 * N, E, DType::F16);
  step_ms += bench_gemm(be, "dt_proj decode", 1, E, R, DType::F16);
  step_ms += bench_gemm(be, "out_proj decode", 1, D, E, DType::F16);
  const double head_ms = bench_gemm(be, "lm_head decode", 1, 50280, D, DType::F16);
  {
    Owned xz = make(be, DType::F32, 1, 2 * E, -1, 1, 29);
    Owned w = make(be, DType::F16, E, d_conv, -1, 1, 30), b = make(be, DType::F16, 1, E, -1, 1, 31);
    Owned st = make(be, DType::F32, E, d_conv, -1, 1, 32), y = make(be, DType::F32, 1, E, 0, 1, 33);
    const Tensor x = xz.t.col_slice(0, E);
    const double ms = time_ms(be, [&] { be.causal_conv1d_step(x, w.t, &b.t, st.t, y.t); });
    row("causal_conv1d_step", "batch=1 C=1536", ms, double(E * 4 * (2 + 2 * d_conv)), 0);
    step_ms += ms;
  }
  {
    Owned u = make(be, DType::F32, 1, E, -1, 1, 34), delta = make(be, DType::F32, 1, E, -3, 3, 35);
    Owned z = make(be, DType::F32, 1, E, -3, 3, 36), B = make(be, DType::F32, 1, N, -1, 1, 37);
    Owned A = make(be, DType::F32, E, N, 0, 2.7f, 38), Dv = make(be, DType::F32, 1, E, 0.5f, 1.5f, 39);
    Owned dtb = make(be, DType::F32, 1, E, -4, -1, 40), st = make(be, DType::F32, E, N, -1, 1, 41);
    Owned y = make(be, DType::F32, 1, E, 0, 1, 42);
    const double ms = time_ms(
        be, [&] { be.selective_scan_step(u.t, delta.t, A.t, B.t, B.t, Dv.t, &z.t, dtb.t, st.t, y.t); });
    row("selective_scan_step", "batch=1 C=1536 N=16", ms, double(E * 4 * 4 + E * N * 4 * 3), 0);
    step_ms += ms;
  }

  std::printf("\nestimate, mamba-130m shapes (24 layers; sum of the kernels above, F16 weights):\n");
  std::printf("  prefill L=2048: %.2f s per layer-set (%.1f ms/layer), %.0f tokens/s\n",
              24 * layer_ms / 1e3, layer_ms, double(L) / (24 * layer_ms / 1e3));
  std::printf("  decode step:    %.2f ms (%.2f ms/layer + %.2f ms lm_head), %.0f tokens/s\n",
              24 * step_ms + head_ms, step_ms, head_ms, 1e3 / (24 * step_ms + head_ms));
  return 0;
}
