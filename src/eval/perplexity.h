// DeciMamba's PG-19 perplexity protocol (decimamba-spec.md §4.4), for one tokenised text:
// windows of W tokens starting every `stride` tokens; each window is prefilled with its last
// S+1 positions protected from decimation, and the NLL of its last S tokens is averaged;
// PPL = exp(mean over windows of the per-window mean NLL).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "model/executor.h"

namespace dm {

struct PerplexityOptions {
  int64_t window = 0;    // W, required
  int64_t stride = 0;    // 0: (n − W) / 10, at least 10 (the authors' rule)
  int64_t scored = 100;  // S, the scored tail of each window; 1 ≤ S < W
  // After each window: (windows done, windows total).
  std::function<void(int64_t, int64_t)> on_window;
  // Forwarded to every prefill: (layers done, n_layer), with (0, n_layer) just before it.
  std::function<void(int, int)> on_prefill_progress;
};

struct PerplexityResult {
  int64_t n_tokens = 0;
  int64_t window = 0, stride = 0, scored = 0;
  std::vector<int64_t> window_starts;
  std::vector<double> window_nll;  // mean NLL (nats) of each window's scored tokens
  double mean_nll = 0;
  double perplexity = 0;
  double seconds = 0;
};

// The window starts: range(0, n − W, stride) as in the authors' loop; a text of exactly W
// tokens gives the one window at 0 (the authors' loop gives none). Throws dm::Error when the
// text is shorter than W or the options are out of range.
std::vector<int64_t> perplexity_windows(int64_t n_tokens, int64_t window, int64_t stride);
int64_t default_stride(int64_t n_tokens, int64_t window);

// NLL (nats) of `target` under logits (n entries), log-softmax in double.
double token_nll(const float* logits, int64_t n, int32_t target);

PerplexityResult perplexity(Executor& exec, const std::vector<int32_t>& tokens,
                            const PerplexityOptions& opts);

}  // namespace dm
