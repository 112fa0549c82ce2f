// End-to-end CPU benchmark: prefill tokens/s and decode tokens/s of a random-weight model of a
// published shape (timing only: the weights are noise). Usage:
//   bench_cpu_e2e [shape=130m] [prompt_tokens=2048] [decode_tokens=32] [dtype=f32|f16|bf16]
// Prints a short table and one JSON line.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "backend/backend.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "model/executor.h"
#include "model/random_model.h"
#include "text/sampler.h"

using namespace dm;

int main(int argc, char** argv) try {
  const std::string shape = argc > 1 ? argv[1] : "130m";
  const int64_t L = argc > 2 ? std::atoll(argv[2]) : 2048;
  const int n_decode = argc > 3 ? std::atoi(argv[3]) : 32;
  const std::string dt = argc > 4 ? argv[4] : "f32";
  const DType dtype = dt == "f16" ? DType::F16 : dt == "bf16" ? DType::BF16 : DType::F32;
  if (L < 1 || n_decode < 1) fail("[bench] prompt and decode token counts must be >= 1");

  auto rm = make_random_model(shape, dtype);
  auto backend = create_backend("cpu");
  Executor ex(*backend, rm->model);
  std::mt19937 rng(7);
  std::vector<int32_t> prompt(static_cast<size_t>(L));
  for (auto& t : prompt) t = int32_t(rng() % uint32_t(rm->model.config.vocab_size));

  using clock = std::chrono::steady_clock;
  auto state = ex.new_state();
  const auto t0 = clock::now();
  auto logits = ex.prefill(prompt, *state);
  const auto t1 = clock::now();
  for (int i = 0; i < n_decode; ++i)
    logits = ex.step(argmax(logits.data(), int64_t(logits.size())), *state);
  const auto t2 = clock::now();

  const double prefill_s = std::chrono::duration<double>(t1 - t0).count();
  const double decode_s = std::chrono::duration<double>(t2 - t1).count();
  std::printf("backend cpu (%s), %d threads, random %s model (%s weights; timing only)\n",
              backend->device_name().c_str(), thread_count(), shape.c_str(), dt.c_str());
  std::printf("| phase   | tokens | seconds | tokens/s |\n|---|---|---|---|\n");
  std::printf("| prefill | %6lld | %7.3f | %8.1f |\n", (long long)L, prefill_s, L / prefill_s);
  std::printf("| decode  | %6d | %7.3f | %8.1f |\n", n_decode, decode_s, n_decode / decode_s);
  std::printf("{\"bench\":\"cpu_e2e\",\"shape\":\"%s\",\"dtype\":\"%s\",\"threads\":%d,"
              "\"prefill_tokens\":%lld,\"prefill_tok_s\":%.2f,\"decode_tokens\":%d,"
              "\"decode_tok_s\":%.2f}\n",
              shape.c_str(), dt.c_str(), thread_count(), (long long)L, L / prefill_s, n_decode,
              n_decode / decode_s);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_cpu_e2e: %s\n", e.what());
  return 1;
}
