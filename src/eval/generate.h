// The generation loop shared by `decimamba generate` and the passkey evaluation: prefill the
// prompt (decimating as configured), then sample and step until the token budget, EOS or a
// stop string, streaming text as it becomes final.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/executor.h"
#include "text/sampler.h"
#include "text/tokenizer.h"

namespace dm {

struct GenerateOptions {
  int64_t max_new_tokens = 128;
  SamplerConfig sampler;
  std::vector<std::string> stop;  // stop when the generated text contains one (not emitted)
  int32_t eos_id = -1;            // -1: no EOS stop
  // Prompt tokens never decimated. 1, as the authors' generate(): only the last prompt token.
  int64_t protect_tail = 1;
  // Called with each new piece of final text: never half a UTF-8 character, never text that
  // may turn out to start a stop string.
  std::function<void(const std::string&)> on_text;
  // Forwarded to the prefill (layers done, n_layer), with a (0, n_layer) call just before it.
  std::function<void(int, int)> on_prefill_progress;
  PrefillTap* tap = nullptr;  // forwarded to the prefill (diagnostics)
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated ids (EOS excluded)
  std::string text;             // their text, cut before a stop string
  std::string stop_reason;      // "eos", "stop", "length"
  int64_t prompt_tokens = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;  // the steps after the prefill
  int64_t decode_steps = 0;   // steps the device ran (greedy: also those run ahead past the end)
};

// `prompt` must be non-empty. Ids the tokenizer cannot decode (padding rows of the embedding,
// beyond tok.vocab_size()) are never sampled.
GenerateResult generate(Executor& exec, const Tokenizer& tok, const std::vector<int32_t>& prompt,
                        const GenerateOptions& opts);

// How much of `text` may be shown without risking the start of a stop string: the length of
// `text` minus its longest suffix that is a proper prefix of one of `stops`.
size_t stop_safe_length(const std::string& text, const std::vector<std::string>& stops);

}  // namespace dm
