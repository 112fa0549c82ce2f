// What one kernel launch costs each GPU backend when the kernel itself does almost nothing:
// the floor under a batch-1 decode step, which is a chain of ~120 small dependent kernels
// (130m: five per layer) whose weights take only ~86 µs to read in all.
//
// For each backend present (cuda, vulkan), a recording (CUDA graph / Vulkan command buffer) of
// n one-row rms_norm calls (d_model 768) is replayed and waited for, median wall time of 30:
//   dependent:   x → y → x → …, each call reads what the one before wrote (the Vulkan recorder
//                puts a barrier between every two; CUDA kernels wait for their predecessor,
//                with programmatic dependent launch where the card has it);
//   independent: every call reads x and writes its own output row (no barriers, no waits).
// The cost per call is the slope between n = 16 and n = 256, which cancels the submit and the
// host wait. Usage: bench_dispatch [backends=cuda,vulkan]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/error.h"

using namespace dm;

namespace {

constexpr int64_t kD = 768;  // 130m's d_model

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  size_t b = 0;
  while (b <= s.size()) {
    const size_t e = std::min(s.find(',', b), s.size());
    if (e > b) out.push_back(s.substr(b, e - b));
    b = e + 1;
  }
  return out;
}

// Median wall µs of replaying `rec` and waiting for it.
double replay_us(Backend& be, Recording& rec) {
  for (int i = 0; i < 5; ++i) be.replay(rec);  // warm the clocks
  be.synchronize();
  std::vector<double> t;
  for (int r = 0; r < 30; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    be.replay(rec);
    be.synchronize();
    t.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void bench_backend(const std::string& name) {
  std::unique_ptr<Backend> be;
  try {
    be = create_backend(name);
  } catch (const Error& e) {
    std::printf("| %s | (not available: %s) | | | |\n", name.c_str(), e.what());
    return;
  }
  constexpr int64_t kMaxN = 256;
  auto xb = be->alloc(kD * 4), yb = be->alloc(kD * 4), wb = be->alloc(kD * 4),
       ob = be->alloc(size_t(kMaxN) * kD * 4);
  std::vector<float> host(kD);
  for (int64_t i = 0; i < kD; ++i) host[size_t(i)] = 0.5f + float(i % 7) * 0.125f;
  be->upload(*xb, 0, host.data(), host.size() * 4);
  be->upload(*wb, 0, host.data(), host.size() * 4);
  be->upload(*yb, 0, host.data(), host.size() * 4);
  const Tensor x = make_tensor(*xb, DType::F32, 1, kD), y = make_tensor(*yb, DType::F32, 1, kD),
               w = make_tensor(*wb, DType::F32, 1, kD);
  auto chain = [&](int64_t n, bool dependent) {
    auto call = [&] {
      for (int64_t i = 0; i < n; ++i) {
        if (dependent) be->rms_norm(i % 2 ? y : x, nullptr, w, i % 2 ? x : y, 1e-5f);
        else be->rms_norm(x, nullptr, w, make_tensor(*ob, DType::F32, 1, kD, size_t(i * kD * 4)), 1e-5f);
      }
    };
    call();  // eagerly once: pipelines and anything sized on first use
    be->synchronize();
    auto rec = be->record(call);
    if (!rec) throw Error("[bench_dispatch] " + name + " does not record");
    return replay_us(*be, *rec);
  };
  for (bool dep : {true, false}) {
    const double t16 = chain(16, dep), t256 = chain(kMaxN, dep);
    std::printf("| %s | %s | %.1f | %.1f | %.2f |\n", name.c_str(), dep ? "dependent" : "independent",
                t16, t256, (t256 - t16) / double(kMaxN - 16));
  }
  std::printf("<!-- %s: %s -->\n", name.c_str(), be->device_name().c_str());
}

}  // namespace

int main(int argc, char** argv) try {
  std::printf("## Launch cost per kernel: replayed chains of one-row rms_norm (d 768)\n\n"
              "| backend | chain | 16 calls, µs | 256 calls, µs | µs per call (slope) |\n"
              "|---|---|---|---|---|\n");
  for (const std::string& b : split(argc > 1 ? argv[1] : "cuda,vulkan")) bench_backend(b);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_dispatch: %s\n", e.what());
  return 1;
}
