#include "eval/generate.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <optional>

#include "core/error.h"
#include "model/greedy_stream.h"

namespace dm {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Earliest position in text[from..] where any stop string starts, or npos.
size_t find_stop(const std::string& text, const std::vector<std::string>& stops, size_t from) {
  size_t best = std::string::npos;
  for (const auto& s : stops) {
    if (s.empty()) continue;
    const size_t p = text.find(s, from);
    if (p < best) best = p;
  }
  return best;
}

}  // namespace

size_t stop_safe_length(const std::string& text, const std::vector<std::string>& stops) {
  size_t hold = 0;
  for (const auto& s : stops) {
    const size_t max_len = std::min(text.size(), s.empty() ? size_t(0) : s.size() - 1);
    for (size_t len = max_len; len > hold; --len) {
      if (text.compare(text.size() - len, len, s, 0, len) == 0) {
        hold = len;
        break;
      }
    }
  }
  return text.size() - hold;
}

GenerateResult generate(Executor& exec, const Tokenizer& tok, const std::vector<int32_t>& prompt,
                        const GenerateOptions& opts) {
  if (prompt.empty()) fail("[generate] the prompt is empty");
  GenerateResult res;
  res.prompt_tokens = int64_t(prompt.size());
  Sampler sampler(opts.sampler);

  // The decoder sees the end of the prompt first (its text is discarded) so that the first
  // generated piece gets the leading space SentencePiece drops at the start of a text. Four
  // tokens: a character spelled as byte pieces is whole, so nothing of the prompt is pending.
  StreamDecoder decoder(tok);
  for (size_t i = prompt.size() > 4 ? prompt.size() - 4 : 0; i < prompt.size(); ++i)
    decoder.push(prompt[i]);

  std::string all;   // generated text so far
  size_t shown = 0;  // bytes of `all` handed to on_text
  auto emit = [&](size_t upto) {
    if (upto > shown) {
      if (opts.on_text) opts.on_text(all.substr(shown, upto - shown));
      shown = upto;
    }
  };

  std::vector<int32_t> history = prompt;
  auto state = exec.new_state();
  PrefillOptions popts;
  popts.on_progress = opts.on_prefill_progress;
  popts.tap = opts.tap;
  popts.protect_tail = std::min<int64_t>(std::max<int64_t>(opts.protect_tail, 1), int64_t(prompt.size()));
  // (0, n_layer) first: a progress display starts its clock at the prefill, not at layer 1.
  if (opts.on_prefill_progress) opts.on_prefill_progress(0, int(exec.config().n_layer));
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<float> logits = exec.prefill(prompt, *state, popts);
  res.prefill_seconds = seconds_since(t0);

  const int64_t vocab = int64_t(logits.size());
  const int64_t usable = std::min<int64_t>(vocab, tok.vocab_size());
  res.stop_reason = "length";
  // Greedy: the picks after the first are made on the device and the steps run ahead of the
  // host (GreedyStream: whole recordings of greedy_unroll() steps, one more queued while the host
  // handles a recording's picks), each fed the pick before it on the device. Steps run ahead
  // whose tokens are never used (after an end of text or a stop string) only advance this call's
  // own state. Otherwise each step's logits come back and the sampler picks on the host. The
  // first token comes from the prefill's logits either way.
  const bool on_device = sampler.greedy();
  std::optional<GreedyStream> stream;  // drains what is left when it goes, also on a throw
  const auto t1 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < opts.max_new_tokens; ++i) {
    int32_t id = -1;
    if (i == 0 || !on_device) {
      for (int64_t v = usable; v < vocab; ++v) logits[v] = -std::numeric_limits<float>::infinity();
      id = sampler.sample(logits, history);
    }
    const bool more = i + 1 < opts.max_new_tokens;  // a step only for a token that is sampled
    if (on_device) {
      if (i == 0 && more) stream.emplace(exec, *state, usable, id, opts.max_new_tokens - 1);
      if (i > 0) id = stream->next();  // token i
    }
    if (id == opts.eos_id) {
      res.stop_reason = "eos";
      break;
    }
    res.tokens.push_back(id);
    history.push_back(id);
    all += decoder.push(id);

    // Text already shown holds no stop-string start (stop_safe_length held it back).
    const size_t stop_at = opts.stop.empty() ? std::string::npos : find_stop(all, opts.stop, shown);
    if (stop_at != std::string::npos) {
      all.resize(stop_at);
      emit(stop_at);
      res.stop_reason = "stop";
      break;
    }
    emit(stop_safe_length(all, opts.stop));
    if (!more) break;
    if (!on_device) {
      exec.step(id, *state, logits);  // the same vector: no reallocation per token
      ++res.decode_steps;
    }
  }
  if (stream) {
    stream->drain();  // steps run ahead whose tokens are not wanted
    res.decode_steps += stream->enqueued();
  }
  res.decode_seconds = seconds_since(t1);

  if (res.stop_reason != "stop") {
    all += decoder.finish();
    const size_t stop_at = opts.stop.empty() ? std::string::npos : find_stop(all, opts.stop, shown);
    if (stop_at != std::string::npos) {
      all.resize(stop_at);
      res.stop_reason = "stop";
    }
    emit(all.size());
  }
  res.text = all;
  return res;
}

}  // namespace dm
