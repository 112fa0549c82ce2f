// Token selection. The order of the filters follows the common practice (Hugging Face's
// logits processors, llama.cpp's default chain): repetition penalty on raw logits, then
// temperature, then top-k, then top-p over the renormalised survivors, then one draw.
#include "text/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_set>

#include "core/error.h"

namespace dm {

int32_t argmax(const float* logits, int64_t n) {
  DM_ASSERT(n > 0);
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i) {
    // Strict: the first of equal maxima wins. A NaN ranks below every number (the order of
    // Backend::argmax, which greedy decoding runs on the device instead).
    if (std::isnan(logits[best]) ? !std::isnan(logits[i]) : logits[i] > logits[best]) best = i;
  }
  return int32_t(best);
}

Sampler::Sampler(const SamplerConfig& cfg) : cfg_(cfg), rng_(cfg.seed) {
  if (!(cfg.temperature >= 0.f) || !std::isfinite(cfg.temperature))
    fail("[sampler] temperature must be >= 0, got ", cfg.temperature);
  if (cfg.top_k < 0) fail("[sampler] top-k must be >= 0, got ", cfg.top_k);
  if (!(cfg.top_p > 0.f && cfg.top_p <= 1.f))
    fail("[sampler] top-p must be in (0, 1], got ", cfg.top_p);
  if (!(cfg.repetition_penalty > 0.f) || !std::isfinite(cfg.repetition_penalty))
    fail("[sampler] repetition penalty must be > 0, got ", cfg.repetition_penalty);
  if (cfg.repetition_window < 0)
    fail("[sampler] repetition window must be >= 0, got ", cfg.repetition_window);
}

bool Sampler::greedy() const {
  return cfg_.temperature == 0.f && (cfg_.repetition_penalty == 1.f || cfg_.repetition_window == 0);
}

int32_t Sampler::sample(const std::vector<float>& raw, const std::vector<int32_t>& recent) {
  const int64_t n = int64_t(raw.size());
  DM_ASSERT(n > 0, "no logits to sample from");

  // CTRL's rule (Keskar et al. 2019): each distinct recent token once, dividing a positive
  // logit and multiplying a negative one, so the penalty always lowers its probability.
  const std::vector<float>* src = &raw;
  if (cfg_.repetition_penalty != 1.f && cfg_.repetition_window > 0) {
    work_.assign(raw.begin(), raw.end());
    const size_t from =
        recent.size() > size_t(cfg_.repetition_window) ? recent.size() - cfg_.repetition_window : 0;
    std::unordered_set<int32_t> seen(recent.begin() + from, recent.end());
    for (int32_t id : seen) {
      if (id < 0 || id >= n) continue;
      float& l = work_[id];
      l = l > 0.f ? l / cfg_.repetition_penalty : l * cfg_.repetition_penalty;
    }
    src = &work_;
  }
  const std::vector<float>& logits = *src;

  if (cfg_.temperature == 0.f) return argmax(logits.data(), n);

  // Candidates sorted by logit, descending; ties keep the lower id first so that the
  // truncations below are deterministic.
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  int64_t keep = n;
  if (cfg_.top_k > 0 && cfg_.top_k < n) keep = cfg_.top_k;
  auto by_logit = [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  std::partial_sort(order.begin(), order.begin() + keep, order.end(), by_logit);
  order.resize(keep);

  // Softmax at the temperature, in double: the survivors' probabilities.
  const double inv_t = 1.0 / double(cfg_.temperature);
  const double top = double(logits[order[0]]) * inv_t;
  std::vector<double> p(keep);
  double sum = 0;
  for (int64_t i = 0; i < keep; ++i) {
    p[i] = std::exp(double(logits[order[i]]) * inv_t - top);
    sum += p[i];
  }
  for (double& x : p) x /= sum;

  // Nucleus: the smallest prefix whose mass reaches top_p, never empty.
  if (cfg_.top_p < 1.f) {
    double cum = 0;
    int64_t cut = keep;
    for (int64_t i = 0; i < keep; ++i) {
      cum += p[i];
      if (cum >= double(cfg_.top_p)) {
        cut = i + 1;
        break;
      }
    }
    keep = std::max<int64_t>(cut, 1);
    p.resize(keep);
    order.resize(keep);
  }

  std::discrete_distribution<int64_t> pick(p.begin(), p.end());
  return order[pick(rng_)];
}

}  // namespace dm
