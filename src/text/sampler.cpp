// Token selection. The order of the filters follows the common practice (Hugging Face's
// logits processors, llama.cpp's default chain): repetition penalty on raw logits, then
// temperature, then top-k, then top-p over the renormalised survivors, then one draw.
#include "text/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
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

namespace {

// Whether any of x[0 .. n) is NaN: the largest magnitude bit pattern, eight running maxima (no
// branch per element, unlike a loop of std::isnan that stops at the first).
bool has_nan(const float* x, int64_t n) {
  uint32_t m[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) {
      uint32_t b;
      std::memcpy(&b, x + i + j, sizeof(b));
      m[j] = std::max(m[j], b & 0x7fffffffu);
    }
  for (; i < n; ++i) {
    uint32_t b;
    std::memcpy(&b, x + i, sizeof(b));
    m[0] = std::max(m[0], b & 0x7fffffffu);
  }
  return *std::max_element(m, m + 8) > 0x7f800000u;  // above +inf's pattern: a NaN
}

// Whether position a ranks before position b: the higher logit, ties the lower position, NaN
// after every number (a strict weak order, unlike `>` with NaN among the values).
auto better_nan_last(const float* x) {
  return [x](int32_t a, int32_t b) {
    const float la = x[a], lb = x[b];
    const bool na = std::isnan(la), nb = std::isnan(lb);
    if (na != nb) return nb;
    return (!na && la != lb) ? la > lb : a < b;
  };
}

}  // namespace

// order_ (positions in ascending order) ← the same positions by logit descending, ties the
// lower position first, NaN last (-0 == +0): a stable LSD radix sort (four byte passes) over an
// order-preserving key of each logit, so equal keys keep their ascending positions. The order
// the top-k path's comparison sort gives, in O(n): with top-k off a 50K vocabulary took ~7 ms a
// token sorted by comparisons (std::partial_sort over all of it) on the build machine.
void Sampler::sort_by_logit(const float* logits) {
  std::vector<int32_t>& order = order_;
  if (order.size() <= 256) {  // few: a comparison sort is cheaper than four passes
    std::sort(order.begin(), order.end(), better_nan_last(logits));
    return;
  }
  // Sort (key, position) pairs by key: the keys travel with their positions.
  pairs_.resize(order.size());
  for (size_t j = 0; j < order.size(); ++j) {
    float f = logits[order[j]];
    uint32_t b = 0;
    if (!std::isnan(f)) {
      if (f == 0.f) f = 0.f;  // -0 ties with +0
      std::memcpy(&b, &f, sizeof(b));
      b = (b & 0x80000000u) ? ~b : (b | 0x80000000u);  // NaN stays 0: below -inf's key
    }
    pairs_[j] = (uint64_t(b) << 32) | uint32_t(order[j]);
  }
  scratch_.resize(order.size());
  for (int shift = 32; shift < 64; shift += 8) {
    size_t start[257] = {};
    for (uint64_t v : pairs_) ++start[256 - ((v >> shift) & 255u)];  // descending
    for (int b = 1; b <= 256; ++b) start[b] += start[b - 1];
    for (uint64_t v : pairs_) scratch_[start[255 - ((v >> shift) & 255u)]++] = v;
    pairs_.swap(scratch_);
  }
  for (size_t j = 0; j < order.size(); ++j) order[j] = int32_t(uint32_t(pairs_[j]));
}

// order_ ← the k best of x[0 .. n) (no NaN among them), best first: what std::partial_sort
// over every position gives (higher logit first, ties the lower position), found as its heap
// selection does — a heap of the k best so far, whose worst each later position must beat —
// but 16 positions at a time: a block whose largest value does not exceed the heap's worst is
// passed over whole (a later position never wins a tie: its index is higher). Once the heap
// holds large values almost every block is one vectorised max: ~5× partial_sort on a 50K
// vocabulary (build machine).
void Sampler::select_top_k(const float* x, int64_t n, int64_t k) {
  auto better = [x](int32_t a, int32_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); };
  std::vector<int32_t>& heap = order_;  // top: the worst of the k kept
  heap.resize(size_t(k));
  std::iota(heap.begin(), heap.end(), 0);
  std::make_heap(heap.begin(), heap.end(), better);
  float worst = x[heap.front()];
  constexpr int64_t kBlock = 16;
  int64_t i = k;
  while (i < n) {
    if (i + kBlock <= n) {
      float m = x[i];
      for (int64_t j = 1; j < kBlock; ++j) m = std::max(m, x[i + j]);
      if (!(m > worst)) {
        i += kBlock;
        continue;
      }
    }
    const int64_t end = std::min(n, i + kBlock);
    for (; i < end; ++i) {
      if (!(x[i] > worst)) continue;  // equal: the kept one has the lower position
      std::pop_heap(heap.begin(), heap.end(), better);
      heap.back() = int32_t(i);
      std::push_heap(heap.begin(), heap.end(), better);
      worst = x[heap.front()];
    }
  }
  std::sort_heap(heap.begin(), heap.end(), better);  // best first
}

// Top-k off, top-p on: order_ ← only the candidates whose weight exp(l / T − top / T) is at
// least 2^-57 (the exponent ≥ −39.5), sorted as sort_by_logit would. The others add nothing to
// the softmax's sum: it is at least 1 (the top's own weight), so a term under half its last
// place (2^-53) leaves it unchanged, and a smaller term after it too; and they lie past any
// nucleus cut, since all of them together weigh < 2^-41 of the mass while a float top_p < 1 is
// at most 1 − 2^-24. So the draw is the full sort's, bit for bit, over a few hundred
// candidates of a trained model instead of the whole vocabulary. False (order_ untouched) where
// the top logit is not finite: the full path handles those.
bool Sampler::nucleus_candidates(const float* logits, int64_t n) {
  float lead = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i)
    if (logits[i] > lead) lead = logits[i];  // NaN never wins
  if (!std::isfinite(lead)) return false;
  const double inv_t = 1.0 / double(cfg_.temperature), top = double(lead) * inv_t;
  std::vector<int32_t>& order = order_;
  order.clear();
  for (int64_t i = 0; i < n; ++i)
    if (double(logits[i]) * inv_t - top >= -39.5) order.push_back(int32_t(i));  // NaN fails it
  sort_by_logit(logits);
  return true;
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
  // truncations below are deterministic; NaN last (the order of argmax above).
  int64_t keep = n;
  if (cfg_.top_k > 0 && cfg_.top_k < n) keep = cfg_.top_k;
  std::vector<int32_t>& order = order_;
  if (keep < n) {
    if (has_nan(logits.data(), keep)) {
      // NaN breaks `>`'s strict weak order (undefined behaviour in a heap or a sort): a
      // comparison that ranks it last, over every candidate (rare: a model that produces NaN
      // is broken). Past the first k a NaN never enters select_top_k's heap (it beats nothing).
      order.resize(size_t(n));
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + keep, order.end(),
                        better_nan_last(logits.data()));
      order.resize(size_t(keep));
    } else {
      select_top_k(logits.data(), n, keep);
    }
  } else if (cfg_.top_p < 1.f && nucleus_candidates(logits.data(), n)) {
    keep = int64_t(order_.size());  // top-k off, top-p on: only those that can carry mass
  } else {
    order.resize(size_t(n));  // every candidate (top-k off)
    std::iota(order.begin(), order.end(), 0);
    sort_by_logit(logits.data());
  }

  // Softmax at the temperature, in double: the survivors' probabilities. A NaN logit weighs
  // nothing; an infinite top logit shares the mass among its equals.
  const float lead = logits[order[0]];
  if (std::isnan(lead) || lead == -std::numeric_limits<float>::infinity()) return order[0];
  const bool inf_top = lead == std::numeric_limits<float>::infinity();
  const double inv_t = 1.0 / double(cfg_.temperature);
  const double top = double(lead) * inv_t;
  std::vector<double>& p = probs_;
  p.resize(size_t(keep));
  double sum = 0;
  for (int64_t i = 0; i < keep; ++i) {
    const float l = logits[order[i]];
    p[i] = inf_top ? (l == lead ? 1.0 : 0.0) : std::isnan(l) ? 0.0 : std::exp(double(l) * inv_t - top);
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
    p.resize(size_t(keep));
    order.resize(size_t(keep));
  }

  return order[size_t(discrete_draw(p.data(), keep, rng_))];
}

// std::discrete_distribution's draw (libstdc++'s arithmetic, step for step: the weights' sum in
// order, each weight divided by it, partial sums with the last forced to 1, the first partial
// sum not below one generate_canonical<double, 53> value; under two weights it returns 0 without
// drawing), but stopping at the drawn index instead of first building the 50K-entry table: the
// candidates are sorted by probability, so the draw usually ends within the first few. The
// table cost ~0.55 ms a token over a 50K vocabulary on the build machine (top-k off).
// TextSampler.DiscreteDrawIsTheLibrarys checks it against the library.
int64_t discrete_draw(const double* w, int64_t n, std::mt19937_64& rng) {
  if (n < 2) return 0;
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += w[i];
  const double u = std::generate_canonical<double, std::numeric_limits<double>::digits>(rng);
  double cum = 0.0;
  for (int64_t i = 0; i + 1 < n; ++i) {
    cum += w[i] / sum;
    if (!(cum < u)) return i;
  }
  return n - 1;  // the last partial sum is 1 > u
}

}  // namespace dm
