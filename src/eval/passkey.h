// DeciMamba's passkey retrieval grid (decimamba-spec.md §4.2): a 5-digit key hidden at a depth
// inside filler text of a given token length, answered greedily in at most 10 tokens.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/executor.h"
#include "text/tokenizer.h"

namespace dm {

// The prompt pieces, as in the authors' babilong fork.
inline constexpr const char* kPasskeyPrefix =
    "There is an important pass key hidden inside a lot of irrelevant text. "
    "Find it and memorize it:\n";
inline constexpr const char* kPasskeySuffix = "\nAnswer: ";
std::string passkey_needle(const std::string& key);  // "The pass key is K. Remember it. K is ..."

// The built-in filler: plain sentences, repeated as needed.
const std::vector<std::string>& builtin_filler();
// A filler file's text cut into sentences (at . ! ? followed by white space), white space
// collapsed. Throws dm::Error when it holds none.
std::vector<std::string> split_sentences(const std::string& text, const std::string& origin);

struct PasskeyPrompt {
  std::string text;
  std::vector<int32_t> ids;
  int64_t filler_sentences = 0;  // sentences in the prompt
  int64_t needle_after = 0;      // sentences before the needle
  // Token span of the needle sentence in ids: [needle_begin, needle_end). Found by encoding the
  // text before and through the needle, so a token straddling a boundary counts as inside.
  int64_t needle_begin = 0, needle_end = 0;
};

// Filler sentences (cycled) fill the prompt up to at most `target_tokens` tokens, as close as
// whole sentences allow; the needle goes between sentences, `depth` of the way through the
// filler (0: first, 1: last). Throws dm::Error when even an empty filler does not fit.
PasskeyPrompt build_passkey_prompt(const Tokenizer& tok, const std::vector<std::string>& filler,
                                   int64_t target_tokens, double depth, const std::string& key);

// Which rule finds `key` in the answer: "words" (one of its white-space separated words, the
// authors' rule), "substring" (only inside a longer word, e.g. "12345."), or "" (not found).
std::string passkey_match(const std::string& output, const std::string& key);

struct PasskeyOptions {
  std::vector<double> depths{0, 0.25, 0.5, 0.75, 1};
  std::vector<int64_t> lengths{1024, 2048, 4096};
  int keys_per_cell = 1;
  uint64_t seed = 0;
  std::vector<std::string> filler;  // empty: builtin_filler()
  int64_t max_new_tokens = 10;
  int32_t eos_id = -1;
  int64_t protect_tail = 1;  // prompt tokens never decimated (GenerateOptions::protect_tail)
};

struct PasskeySample {
  double depth = 0;
  int64_t length = 0;         // the asked context length
  int64_t prompt_tokens = 0;  // what the prompt came to (≤ length)
  std::string key;
  std::string output;
  std::string rule;  // as passkey_match
  double seconds = 0;
  // With decimation on: how many of the needle's tokens survived every decimating layer (the
  // 5-digit key appears twice in it), of needle_tokens. -1 when no layer decimated.
  int64_t needle_tokens = 0;
  int64_t needle_kept = -1;
};

struct PasskeyCell {
  double depth = 0;
  int64_t length = 0;
  int n = 0;
  int by_words = 0;      // found as a whole word (the spec's rule)
  int by_substring = 0;  // found only as a substring
  int needle_whole = 0;  // samples whose needle survived decimation whole (decimated ones only)
  int decimated = 0;     // samples in which some layer decimated
  double success() const { return n ? double(by_words + by_substring) / n : 0; }
};

struct PasskeyResult {
  std::vector<PasskeySample> samples;
  std::vector<PasskeyCell> cells;  // depth-major: cells[d * lengths + l]
};

// The key of sample `k` in cell (depth index d, length index l): 5 digits, a pure function of
// (seed, d, l, k) so that one cell can be re-run alone.
std::string passkey_key(uint64_t seed, size_t d, size_t l, int k);

// on_sample: after each sample. on_prefill_progress: (prompt tokens, layers done, n_layer)
// during each prefill.
PasskeyResult run_passkey(Executor& exec, const Tokenizer& tok, const PasskeyOptions& opts,
                          const std::function<void(const PasskeySample&)>& on_sample = {},
                          const std::function<void(int64_t, int, int)>& on_prefill_progress = {});

}  // namespace dm
