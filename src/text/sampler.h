// Picks the next token from logits: greedy, or temperature / top-k / top-p sampling, with a
// repetition penalty over the recent tokens (the CTRL rule: divide positive logits, multiply
// negative ones) and a seeded generator, so a run is reproducible.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace dm {

struct SamplerConfig {
  float temperature = 0.f;         // 0: greedy
  int top_k = 0;                   // 0: off
  float top_p = 1.f;               // 1: off
  float repetition_penalty = 1.f;  // 1: off
  int repetition_window = 64;      // how many recent tokens the penalty looks at
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplerConfig& cfg);
  // logits: vocab fp32 (not modified); recent: the tokens so far, prompt included.
  int32_t sample(const std::vector<float>& logits, const std::vector<int32_t>& recent);
  // Whether sample() is the plain argmax of the logits (temperature 0, no repetition penalty
  // in effect): then greedy decoding may pick on the device (Executor::step_greedy).
  bool greedy() const;

 private:
  SamplerConfig cfg_;
  std::mt19937_64 rng_;
  // Sorts the candidates in order_ by logit; (top-p) keeps only those that can carry mass.
  void sort_by_logit(const float* logits);
  bool nucleus_candidates(const float* logits, int64_t n);
  void select_top_k(const float* logits, int64_t n, int64_t k);

  // Reused from call to call: the logits as penalised, the candidates in order, their
  // probabilities, the radix sort's (key, position) pairs and scratch.
  std::vector<float> work_;
  std::vector<int32_t> order_;
  std::vector<double> probs_;
  std::vector<uint64_t> pairs_, scratch_;
};

// Index of the largest logit; ties: the lowest index.
int32_t argmax(const float* logits, int64_t n);

// What std::discrete_distribution<int64_t>(w, w + n)(rng) returns, and the same draws taken
// from rng, without building its table (sampler.cpp).
int64_t discrete_draw(const double* w, int64_t n, std::mt19937_64& rng);

}  // namespace dm
