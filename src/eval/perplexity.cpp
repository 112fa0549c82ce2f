#include "eval/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/error.h"

namespace dm {

int64_t default_stride(int64_t n_tokens, int64_t window) {
  // finetune_ssm.py: stride = (seq_len − window) // 10, raised to the minimal stride of 10.
  return std::max<int64_t>((n_tokens - window) / 10, 10);
}

std::vector<int64_t> perplexity_windows(int64_t n_tokens, int64_t window, int64_t stride) {
  if (window < 2) fail("[perplexity] the window must be at least 2 tokens, got ", window);
  if (stride < 1) fail("[perplexity] the stride must be at least 1, got ", stride);
  if (n_tokens < window)
    fail("[perplexity] the text has ", n_tokens, " tokens, fewer than the window of ", window);
  std::vector<int64_t> starts;
  for (int64_t s = 0; s < n_tokens - window; s += stride) starts.push_back(s);
  if (starts.empty()) starts.push_back(0);  // n == W
  return starts;
}

double token_nll(const float* logits, int64_t n, int32_t target) {
  DM_ASSERT(target >= 0 && target < n, "target ", target, " outside ", n, " logits");
  double mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, double(logits[i]));
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(double(logits[i]) - mx);
  return std::log(sum) + mx - double(logits[target]);
}

PerplexityResult perplexity(Executor& exec, const std::vector<int32_t>& tokens,
                            const PerplexityOptions& opts) {
  PerplexityResult res;
  res.n_tokens = int64_t(tokens.size());
  res.window = opts.window;
  res.scored = opts.scored;
  if (opts.scored < 1 || opts.scored >= opts.window)
    fail("[perplexity] the scored tail must be between 1 and window − 1 (", opts.window - 1,
         "), got ", opts.scored);
  if (opts.stride < 0) fail("[perplexity] the stride must be positive, got ", opts.stride);
  res.stride = opts.stride > 0 ? opts.stride : default_stride(res.n_tokens, opts.window);
  res.window_starts = perplexity_windows(res.n_tokens, opts.window, res.stride);

  const int64_t W = opts.window, S = opts.scored;
  const auto t0 = std::chrono::steady_clock::now();
  PrefillOptions popts;
  // S + 1 logits: positions W−S−1 .. W−1; the first S predict tokens W−S .. W−1. All of them
  // are protected, so decimation never drops a scored token or its predictor.
  popts.n_logits = S + 1;
  popts.protect_tail = S + 1;
  popts.on_progress = opts.on_prefill_progress;
  double total = 0;
  for (size_t w = 0; w < res.window_starts.size(); ++w) {
    const int64_t start = res.window_starts[w];
    const std::vector<int32_t> ids(tokens.begin() + start, tokens.begin() + start + W);
    auto state = exec.new_state();
    if (opts.on_prefill_progress) opts.on_prefill_progress(0, int(exec.config().n_layer));
    const std::vector<float> logits = exec.prefill(ids, *state, popts);
    const int64_t vocab = int64_t(logits.size()) / (S + 1);
    DM_ASSERT(vocab * (S + 1) == int64_t(logits.size()), "prefill returned ", logits.size(),
              " logits for ", S + 1, " rows");
    double nll = 0;
    for (int64_t j = 0; j < S; ++j) {
      const int32_t target = ids[W - S + j];
      if (target < 0 || target >= vocab)
        fail("[perplexity] token id ", target, " is outside the model's vocabulary (", vocab, ")");
      nll += token_nll(logits.data() + j * vocab, vocab, target);
    }
    nll /= double(S);
    res.window_nll.push_back(nll);
    total += nll;
    if (opts.on_window) opts.on_window(int64_t(w + 1), int64_t(res.window_starts.size()));
  }
  res.mean_nll = total / double(res.window_nll.size());
  res.perplexity = std::exp(res.mean_nll);
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace dm
