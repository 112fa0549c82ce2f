#include "eval/passkey.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>
#include <sstream>

#include "core/error.h"
#include "eval/generate.h"

namespace dm {

std::string passkey_needle(const std::string& key) {
  return "The pass key is " + key + ". Remember it. " + key + " is the pass key. ";
}

const std::vector<std::string>& builtin_filler() {
  // Deliberately dull and free of digits, so the only number in a prompt is the key.
  static const std::vector<std::string> sentences = {
      "The grass is green and the sky is blue.",
      "A light rain fell over the fields in the early morning.",
      "The old road runs along the river for several miles.",
      "Most of the houses in the village have red tiled roofs.",
      "The baker opens his shop before the sun comes up.",
      "A gentle wind moved the leaves of the tall trees.",
      "The children walked to school along the quiet lane.",
      "In the autumn the farmers bring in the last of the harvest.",
      "The library keeps its older books on the upper shelves.",
      "A small boat drifted slowly across the calm lake.",
      "The market square fills with people on most weekends.",
      "Clouds gathered over the hills late in the afternoon.",
      "The cat slept in a patch of warm sunlight by the window.",
      "Travellers often stop at the inn beside the bridge.",
      "The garden was planted with roses, herbs and beans.",
      "An old clock ticked steadily in the hall.",
      "The mountain path is steep but the view is worth the climb.",
      "Snow covered the fields for most of the winter.",
      "The teacher wrote the lesson on the board in neat letters.",
      "Birds sang in the hedges as the day grew warmer.",
      "The train left the station a little after noon.",
      "A line of poplars marks the edge of the farm.",
      "The fisherman mended his nets on the pier.",
      "Evening light turned the walls of the town a soft gold.",
      "The well in the courtyard has not been used for years.",
      "Sheep grazed on the slopes above the valley.",
      "The shopkeeper arranged apples in a neat pyramid.",
      "A narrow stair leads up to the top of the tower.",
      "The stream is cold even in the middle of summer.",
      "Lamps were lit one by one along the street at dusk.",
      "Here we go, there and back again.",
  };
  return sentences;
}

std::vector<std::string> split_sentences(const std::string& text, const std::string& origin) {
  std::vector<std::string> out;
  std::string cur;
  bool pending_space = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
      pending_space = !cur.empty();
      continue;
    }
    if (pending_space) cur += ' ';
    pending_space = false;
    cur += c;
    const bool end = c == '.' || c == '!' || c == '?';
    const bool next_space =
        i + 1 == text.size() || std::isspace(static_cast<unsigned char>(text[i + 1]));
    if (end && next_space) {
      out.push_back(cur);
      cur.clear();
    }
  }
  if (!cur.empty()) out.push_back(cur);
  if (out.empty()) fail("[passkey] ", origin, ": no filler sentences in it");
  return out;
}

namespace {

std::string assemble(const std::vector<std::string>& filler, int64_t m, int64_t before,
                     const std::string& key) {
  std::string text = kPasskeyPrefix;
  for (int64_t i = 0; i < m; ++i) {
    if (i == before) text += passkey_needle(key);
    text += filler[size_t(i) % filler.size()];
    text += ' ';
  }
  if (before >= m) text += passkey_needle(key);
  text += kPasskeySuffix;
  return text;
}

int64_t needle_index(double depth, int64_t m) {
  return std::clamp<int64_t>(int64_t(std::llround(depth * double(m))), 0, m);
}

}  // namespace

PasskeyPrompt build_passkey_prompt(const Tokenizer& tok, const std::vector<std::string>& filler,
                                   int64_t target_tokens, double depth, const std::string& key) {
  if (filler.empty()) fail("[passkey] the filler has no sentences");
  if (!(depth >= 0 && depth <= 1)) fail("[passkey] depth must be in [0, 1], got ", depth);

  PasskeyPrompt p;
  auto build = [&](int64_t m) {
    p.filler_sentences = m;
    p.needle_after = needle_index(depth, m);
    p.text = assemble(filler, m, p.needle_after, key);
    p.ids = tok.encode(p.text);
  };
  build(0);
  if (int64_t(p.ids.size()) > target_tokens)
    fail("[passkey] a context of ", target_tokens,
         " tokens cannot hold the prompt without "
         "filler (",
         p.ids.size(), " tokens)");
  const int64_t fixed = int64_t(p.ids.size());

  // Estimate from per-sentence counts, then correct with the true count of the joined text
  // (tokenisation across sentence joins differs slightly from the sum of the parts).
  std::vector<int64_t> cost(filler.size());
  for (size_t i = 0; i < filler.size(); ++i) cost[i] = int64_t(tok.encode(filler[i]).size());
  int64_t m = 0;
  for (int64_t used = fixed; used + cost[size_t(m) % cost.size()] <= target_tokens; ++m)
    used += cost[size_t(m) % cost.size()];
  const double avg = std::max(
      1.0, double(std::accumulate(cost.begin(), cost.end(), int64_t(0))) / double(cost.size()));
  for (int iter = 0; iter < 64; ++iter) {
    build(m);
    const int64_t n = int64_t(p.ids.size());
    if (n <= target_tokens) break;
    m -= std::max<int64_t>(1, int64_t(std::ceil(double(n - target_tokens) / avg)));
    if (m <= 0) {
      build(0);
      break;
    }
  }
  DM_ASSERT(int64_t(p.ids.size()) <= target_tokens);
  const std::string needle = passkey_needle(key);
  const size_t at = p.text.find(needle);
  DM_ASSERT(at != std::string::npos);
  p.needle_begin = int64_t(tok.encode(p.text.substr(0, at)).size());
  p.needle_end = std::min<int64_t>(int64_t(tok.encode(p.text.substr(0, at + needle.size())).size()),
                                   int64_t(p.ids.size()));
  // A token that merges across the boundary shifts the count by one: count it inside.
  p.needle_begin = std::max<int64_t>(0, p.needle_begin - 1);
  return p;
}

std::string passkey_match(const std::string& output, const std::string& key) {
  std::istringstream words(output);
  std::string w;
  while (words >> w) {
    if (w == key) return "words";
  }
  return output.find(key) != std::string::npos ? "substring" : "";
}

std::string passkey_key(uint64_t seed, size_t d, size_t l, int k) {
  std::seed_seq seq{uint32_t(seed), uint32_t(seed >> 32), uint32_t(d), uint32_t(l), uint32_t(k)};
  std::mt19937_64 rng(seq);
  std::uniform_int_distribution<int> digits(10000, 99999);
  return std::to_string(digits(rng));
}

namespace {

// Follows the kept positions through every decimating layer, back to prompt positions.
struct SurvivorTap : PrefillTap {
  Backend* backend = nullptr;
  std::vector<int64_t> pos;  // prompt position of each row of the current length
  bool decimated = false;
  void reset(int64_t n) {
    pos.resize(size_t(n));
    std::iota(pos.begin(), pos.end(), int64_t(0));
    decimated = false;
  }
  void on_kept(int, const Tensor& kept) override {
    std::vector<int32_t> idx(size_t(kept.rows));
    backend->download(*kept.buf, kept.offset, idx.data(), idx.size() * sizeof(int32_t));
    std::vector<int64_t> next(idx.size());
    for (size_t i = 0; i < idx.size(); ++i) next[i] = pos.at(size_t(idx[i]));
    decimated = decimated || next.size() < pos.size();
    pos = std::move(next);
  }
  int64_t survivors(int64_t begin, int64_t end) const {
    return std::count_if(pos.begin(), pos.end(),
                         [&](int64_t p) { return p >= begin && p < end; });
  }
};

}  // namespace

PasskeyResult run_passkey(Executor& exec, const Tokenizer& tok, const PasskeyOptions& opts,
                          const std::function<void(const PasskeySample&)>& on_sample,
                          const std::function<void(int64_t, int, int)>& on_prefill_progress) {
  if (opts.depths.empty() || opts.lengths.empty()) fail("[passkey] no depths or no lengths");
  if (opts.keys_per_cell < 1) fail("[passkey] keys per cell must be >= 1");
  const auto& filler = opts.filler.empty() ? builtin_filler() : opts.filler;

  GenerateOptions gen;
  gen.max_new_tokens = opts.max_new_tokens;  // greedy: the default sampler config
  gen.eos_id = opts.eos_id;
  gen.protect_tail = opts.protect_tail;

  SurvivorTap tap;
  tap.backend = &exec.backend();
  gen.tap = &tap;

  PasskeyResult res;
  for (size_t d = 0; d < opts.depths.size(); ++d) {
    for (size_t l = 0; l < opts.lengths.size(); ++l) {
      PasskeyCell cell;
      cell.depth = opts.depths[d];
      cell.length = opts.lengths[l];
      for (int k = 0; k < opts.keys_per_cell; ++k) {
        PasskeySample s;
        s.depth = cell.depth;
        s.length = cell.length;
        s.key = passkey_key(opts.seed, d, l, k);
        const auto t0 = std::chrono::steady_clock::now();
        const PasskeyPrompt prompt = build_passkey_prompt(tok, filler, cell.length, s.depth, s.key);
        s.prompt_tokens = int64_t(prompt.ids.size());
        if (on_prefill_progress) {
          gen.on_prefill_progress = [&, n = s.prompt_tokens](int done, int total) {
            on_prefill_progress(n, done, total);
          };
        }
        tap.reset(s.prompt_tokens);
        s.output = generate(exec, tok, prompt.ids, gen).text;
        s.rule = passkey_match(s.output, s.key);
        s.needle_tokens = prompt.needle_end - prompt.needle_begin;
        if (tap.decimated) {
          s.needle_kept = tap.survivors(prompt.needle_begin, prompt.needle_end);
          ++cell.decimated;
          if (s.needle_kept == s.needle_tokens) ++cell.needle_whole;
        }
        s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        ++cell.n;
        if (s.rule == "words") ++cell.by_words;
        if (s.rule == "substring") ++cell.by_substring;
        if (on_sample) on_sample(s);
        res.samples.push_back(std::move(s));
      }
      res.cells.push_back(cell);
    }
  }
  return res;
}

}  // namespace dm
