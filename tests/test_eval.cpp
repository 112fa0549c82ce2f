// Evaluation helpers: the generation loop, the perplexity protocol and the passkey prompt.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <set>

#include "backend/backend.h"
#include "core/error.h"
#include "eval/generate.h"
#include "eval/passkey.h"
#include "eval/perplexity.h"
#include "model/executor.h"
#include "model/random_model.h"
#include "text/sampler.h"
#include "text/tokenizer.h"
#include "byte_tokenizer.h"
#include "test_paths.h"

namespace fs = std::filesystem;

namespace {

const std::string kFixtureTokenizer = dm::test::data_dir() + "/tokenizer/fixture_sp.model";

using ByteTokenizer = dm::test::ByteTokenizer;

std::vector<int32_t> random_ids(size_t n, int32_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> d(0, vocab - 1);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// The tiny random model on the CPU backend (vocab 512, 2 layers).
struct TinyRun {
  std::unique_ptr<dm::Backend> backend = dm::create_backend("cpu");
  std::unique_ptr<dm::RandomModel> rm = dm::make_random_model("tiny", dm::DType::F32, 7);
  std::unique_ptr<dm::Executor> exec =
      std::make_unique<dm::Executor>(*backend, rm->model, dm::DecimationConfig{});
};

}  // namespace

// ---------------------------------------------------------------- perplexity

TEST(EvalPerplexity, TokenNllIsTheLogSoftmax) {
  const std::vector<float> logits{1.f, 2.f, 3.f};
  const double lse = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
  EXPECT_NEAR(dm::token_nll(logits.data(), 3, 0), lse - 1.0, 1e-12);
  EXPECT_NEAR(dm::token_nll(logits.data(), 3, 2), lse - 3.0, 1e-12);
  // Large logits stay finite (the max is subtracted).
  const std::vector<float> big{1000.f, 0.f};
  EXPECT_NEAR(dm::token_nll(big.data(), 2, 0), 0.0, 1e-12);
  EXPECT_NEAR(dm::token_nll(big.data(), 2, 1), 1000.0, 1e-9);
}

TEST(EvalPerplexity, WindowsFollowTheAuthorsLoop) {
  // (1000 − 100) / 10 = 90: range(0, 900, 90) = 0, 90, …, 810.
  EXPECT_EQ(dm::default_stride(1000, 100), 90);
  const auto w = dm::perplexity_windows(1000, 100, 90);
  ASSERT_EQ(w.size(), 10u);
  EXPECT_EQ(w.front(), 0);
  EXPECT_EQ(w.back(), 810);
  // The minimal stride of 10.
  EXPECT_EQ(dm::default_stride(150, 100), 10);
  EXPECT_EQ(dm::perplexity_windows(150, 100, 10).size(), 5u);
  // Exactly W tokens: one window; fewer: an error.
  EXPECT_EQ(dm::perplexity_windows(100, 100, 10), std::vector<int64_t>{0});
  EXPECT_THROW(dm::perplexity_windows(99, 100, 10), dm::Error);
}

TEST(EvalPerplexity, MatchesAFullForwardScoredByHand) {
  TinyRun run;
  const int64_t W = 48, S = 12;
  const auto ids = random_ids(200, 512, 11);
  dm::PerplexityOptions opts;
  opts.window = W;
  opts.scored = S;
  opts.stride = 50;
  int64_t windows_seen = 0;
  opts.on_window = [&](int64_t done, int64_t total) { windows_seen = done; };
  const dm::PerplexityResult r = dm::perplexity(*run.exec, ids, opts);
  ASSERT_EQ(r.window_starts, (std::vector<int64_t>{0, 50, 100, 150}));
  EXPECT_EQ(windows_seen, 4);

  // Independent: every logit of the window, then the last S targets by hand.
  double total = 0;
  for (size_t w = 0; w < r.window_starts.size(); ++w) {
    const std::vector<int32_t> win(ids.begin() + r.window_starts[w],
                                   ids.begin() + r.window_starts[w] + W);
    auto state = run.exec->new_state();
    dm::PrefillOptions p;
    p.n_logits = W;
    const auto logits = run.exec->prefill(win, *state, p);
    const int64_t V = int64_t(logits.size()) / W;
    double nll = 0;
    for (int64_t t = W - S; t < W; ++t)
      nll += dm::token_nll(&logits[size_t((t - 1) * V)], V, win[t]);
    nll /= double(S);
    EXPECT_NEAR(r.window_nll[w], nll, 1e-5) << "window " << w;
    total += nll;
  }
  EXPECT_NEAR(r.perplexity, std::exp(total / 4), 1e-4 * r.perplexity);
  EXPECT_GT(r.perplexity, 1.0);
}

TEST(EvalPerplexity, DecimationWithALargeBudgetChangesNothing) {
  TinyRun run;
  const auto ids = random_ids(120, 512, 5);
  dm::PerplexityOptions opts;
  opts.window = 100;
  opts.scored = 10;
  const auto vanilla = dm::perplexity(*run.exec, ids, opts);
  dm::DecimationConfig d;
  d.enabled = true;
  d.layers = {1};
  d.L_base = 1000;  // more than the window: keeps everything
  run.exec->set_decimation(d);
  const auto same = dm::perplexity(*run.exec, ids, opts);
  EXPECT_EQ(same.window_nll, vanilla.window_nll);
  d.L_base = 20;  // keeps 20 of the 89 unprotected tokens at layer 1
  run.exec->set_decimation(d);
  const auto decimated = dm::perplexity(*run.exec, ids, opts);
  ASSERT_EQ(decimated.window_nll.size(), vanilla.window_nll.size());
  EXPECT_TRUE(std::isfinite(decimated.perplexity));
  EXPECT_NE(decimated.window_nll, vanilla.window_nll);
}

TEST(EvalPerplexity, RejectsBadOptions) {
  TinyRun run;
  const auto ids = random_ids(60, 512, 1);
  dm::PerplexityOptions opts;
  opts.window = 50;
  opts.scored = 50;  // must be < W
  EXPECT_THROW(dm::perplexity(*run.exec, ids, opts), dm::Error);
  opts.scored = 10;
  opts.window = 61;  // longer than the text
  EXPECT_THROW(dm::perplexity(*run.exec, ids, opts), dm::Error);
}

// ---------------------------------------------------------------- generation loop

TEST(EvalGenerate, StopSafeLengthHoldsBackPossibleStopStarts) {
  EXPECT_EQ(dm::stop_safe_length("hello wor", {"world"}), 6u);
  EXPECT_EQ(dm::stop_safe_length("hello", {"world"}), 5u);
  EXPECT_EQ(dm::stop_safe_length("abcab", {"abc", "bx"}), 3u);
  EXPECT_EQ(dm::stop_safe_length("text", {}), 4u);
}

TEST(EvalGenerate, GreedyMatchesAHandLoopAndStreamsTheSameText) {
  TinyRun run;
  ByteTokenizer tok;
  const auto prompt = random_ids(30, 256, 3);
  dm::GenerateOptions opts;
  opts.max_new_tokens = 12;
  std::string streamed;
  opts.on_text = [&](const std::string& s) { streamed += s; };
  const dm::GenerateResult r = dm::generate(*run.exec, tok, prompt, opts);
  EXPECT_EQ(r.stop_reason, "length");
  EXPECT_EQ(r.prompt_tokens, 30);

  // By hand: prefill, argmax among the ids the tokenizer knows, step.
  std::vector<int32_t> expect;
  auto state = run.exec->new_state();
  std::vector<float> logits = run.exec->prefill(prompt, *state);
  for (int i = 0; i < 12; ++i) {
    const int32_t id = dm::argmax(logits.data(), tok.vocab_size());
    expect.push_back(id);
    logits = run.exec->step(id, *state);
  }
  EXPECT_EQ(r.tokens, expect);
  EXPECT_EQ(r.text, tok.decode(expect));
  EXPECT_EQ(streamed, r.text);

  // EOS: make the third greedy token the end of sequence.
  opts.eos_id = expect[2];
  streamed.clear();
  const auto r_eos = dm::generate(*run.exec, tok, prompt, opts);
  if (expect[0] != expect[2] && expect[1] != expect[2]) {
    EXPECT_EQ(r_eos.stop_reason, "eos");
    EXPECT_EQ(r_eos.tokens, std::vector<int32_t>(expect.begin(), expect.begin() + 2));
  } else {
    EXPECT_EQ(r_eos.stop_reason, "eos");
    EXPECT_LT(r_eos.tokens.size(), 2u);
  }
}

TEST(EvalGenerate, StopStringEndsTheTextBeforeIt) {
  TinyRun run;
  ByteTokenizer tok;
  const auto prompt = random_ids(20, 256, 9);
  dm::GenerateOptions opts;
  opts.max_new_tokens = 10;
  const auto full = dm::generate(*run.exec, tok, prompt, opts);
  ASSERT_EQ(full.text.size(), 10u);
  // Stop at the bytes 4..5 of the free run (its first occurrence).
  const std::string stop = full.text.substr(4, 2);
  const size_t first = full.text.find(stop);
  opts.stop = {stop};
  std::string streamed;
  opts.on_text = [&](const std::string& s) { streamed += s; };
  const auto r = dm::generate(*run.exec, tok, prompt, opts);
  EXPECT_EQ(r.stop_reason, "stop");
  EXPECT_EQ(r.text, full.text.substr(0, first));
  EXPECT_EQ(streamed, r.text);
  EXPECT_EQ(streamed.find(stop), std::string::npos);
}

TEST(EvalGenerate, APromptEndingInByteSpelledCharacterLeaksNothing) {
  // Decodes like SentencePiece's byte fallback: a byte that is not part of a whole character
  // becomes U+FFFD. Sampling is limited to ASCII (vocab 128), the prompt uses any byte.
  class FallbackTokenizer : public ByteTokenizer {
   public:
    int64_t vocab_size() const override { return 128; }
    std::string decode(const std::vector<int32_t>& ids) const override {
      const std::string raw = ByteTokenizer::decode(ids);
      std::string out;
      for (size_t i = 0; i < raw.size();) {
        const unsigned char c = static_cast<unsigned char>(raw[i]);
        const size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
        bool whole = c < 0x80 || ((c & 0xC0) == 0xC0 && i + n <= raw.size());
        for (size_t k = 1; whole && k < n; ++k)
          whole = (static_cast<unsigned char>(raw[i + k]) & 0xC0) == 0x80;
        if (whole) {
          out += raw.substr(i, n);
          i += n;
        } else {
          out += "\xEF\xBF\xBD";
          i += 1;
        }
      }
      return out;
    }
  };
  TinyRun run;
  FallbackTokenizer tok;
  const auto prompt = tok.encode("tea in 日本");  // ends with the 3 byte pieces of 本
  dm::GenerateOptions opts;
  opts.max_new_tokens = 6;
  std::string streamed;
  opts.on_text = [&](const std::string& s) { streamed += s; };
  const auto r = dm::generate(*run.exec, tok, prompt, opts);
  ASSERT_EQ(r.tokens.size(), 6u);
  EXPECT_EQ(r.text, tok.decode(r.tokens));
  EXPECT_EQ(streamed, r.text);
  EXPECT_EQ(r.text.find("\xEF\xBF\xBD"), std::string::npos);
}

TEST(EvalGenerate, EmptyPromptIsAnError) {
  TinyRun run;
  ByteTokenizer tok;
  EXPECT_THROW(dm::generate(*run.exec, tok, {}, {}), dm::Error);
}

// ---------------------------------------------------------------- passkey

TEST(EvalPasskey, MatchRules) {
  EXPECT_EQ(dm::passkey_match("12345", "12345"), "words");
  EXPECT_EQ(dm::passkey_match(" 12345 is it", "12345"), "words");
  EXPECT_EQ(dm::passkey_match("The key: 12345.", "12345"), "substring");
  EXPECT_EQ(dm::passkey_match("123456", "12345"), "substring");
  EXPECT_EQ(dm::passkey_match("1234 5", "12345"), "");
  EXPECT_EQ(dm::passkey_match("", "12345"), "");
}

TEST(EvalPasskey, KeysAreFiveDigitsAndReproducible) {
  EXPECT_EQ(dm::passkey_key(1, 0, 0, 0), dm::passkey_key(1, 0, 0, 0));
  std::set<std::string> keys;
  for (int k = 0; k < 50; ++k) {
    const std::string key = dm::passkey_key(1, 2, 3, k);
    EXPECT_EQ(key.size(), 5u);
    EXPECT_EQ(key.find_first_not_of("0123456789"), std::string::npos);
    EXPECT_NE(key[0], '0');
    keys.insert(key);
  }
  EXPECT_GT(keys.size(), 45u);
  EXPECT_NE(dm::passkey_key(1, 0, 0, 0), dm::passkey_key(2, 0, 0, 0));
}

TEST(EvalPasskey, SplitSentences) {
  const auto s = dm::split_sentences("  One two.  Three\nfour! Five?Six. seven", "t");
  EXPECT_EQ(s, (std::vector<std::string>{"One two.", "Three four!", "Five?Six.", "seven"}));
  EXPECT_THROW(dm::split_sentences(" \n\t ", "t"), dm::Error);
}

TEST(EvalPasskey, PromptFillsTheLengthAndPlacesTheNeedle) {
  ByteTokenizer tok;  // tokens are bytes: the length is exact arithmetic
  const auto& filler = dm::builtin_filler();
  EXPECT_GE(filler.size(), 30u);
  const std::string key = "54321";
  const std::string needle = dm::passkey_needle(key);
  EXPECT_EQ(needle, "The pass key is 54321. Remember it. 54321 is the pass key. ");
  for (int64_t len : {400, 1000, 3000}) {
    for (double depth : {0.0, 0.5, 1.0}) {
      const auto p = dm::build_passkey_prompt(tok, filler, len, depth, key);
      EXPECT_LE(int64_t(p.ids.size()), len);
      EXPECT_GT(int64_t(p.ids.size()), len - 80) << "a sentence more would have fitted";
      EXPECT_EQ(p.text.rfind(dm::kPasskeyPrefix, 0), 0u);
      EXPECT_EQ(p.text.substr(p.text.size() - std::string(dm::kPasskeySuffix).size()),
                dm::kPasskeySuffix);
      const size_t at = p.text.find(needle);
      ASSERT_NE(at, std::string::npos);
      const double rel = double(at - std::string(dm::kPasskeyPrefix).size()) /
                         double(p.text.size() - std::string(dm::kPasskeyPrefix).size() -
                                std::string(dm::kPasskeySuffix).size() - needle.size());
      // Whole sentences: the needle lands within one sentence of the asked depth.
      EXPECT_NEAR(rel, depth, 1.0 / double(std::max<int64_t>(p.filler_sentences, 1)) + 0.02)
          << "len " << len << " depth " << depth;
    }
  }
  EXPECT_THROW(dm::build_passkey_prompt(tok, filler, 50, 0.5, key), dm::Error);
}

TEST(EvalPasskey, PromptWithTheFixtureTokenizer) {
  if (!fs::exists(kFixtureTokenizer)) GTEST_SKIP() << "fixture tokenizer absent";
  const auto tok = dm::load_sentencepiece(kFixtureTokenizer);
  for (int64_t len : {256, 1024, 4096}) {
    const auto p = dm::build_passkey_prompt(*tok, dm::builtin_filler(), len, 0.25, "10203");
    EXPECT_EQ(tok->encode(p.text), p.ids);
    EXPECT_LE(int64_t(p.ids.size()), len);
    EXPECT_GT(int64_t(p.ids.size()), len - 40);
  }
}

TEST(EvalPasskey, GridRunsEveryCell) {
  TinyRun run;
  ByteTokenizer tok;
  dm::PasskeyOptions opts;
  opts.depths = {0, 1};
  opts.lengths = {300, 400};
  opts.keys_per_cell = 2;
  opts.max_new_tokens = 3;
  int samples = 0;
  const auto r =
      dm::run_passkey(*run.exec, tok, opts, [&](const dm::PasskeySample& s) { ++samples; });
  EXPECT_EQ(samples, 8);
  ASSERT_EQ(r.cells.size(), 4u);
  EXPECT_EQ(r.cells[1].depth, 0);
  EXPECT_EQ(r.cells[1].length, 400);
  for (const auto& c : r.cells) EXPECT_EQ(c.n, 2);
  for (const auto& s : r.samples) {
    EXPECT_LE(s.prompt_tokens, s.length);
    EXPECT_LE(s.output.size(), 3u);  // 3 byte tokens at most
    EXPECT_EQ(s.rule, dm::passkey_match(s.output, s.key));
  }
}

TEST(EvalPasskey, NeedleSurvivalIsCountedThroughDecimation) {
  TinyRun run;
  ByteTokenizer tok;
  dm::PasskeyOptions opts;
  opts.depths = {0, 0.5, 1};
  opts.lengths = {400};
  opts.max_new_tokens = 2;
  // Off: nothing is decimated, so nothing is counted.
  for (const auto& s : dm::run_passkey(*run.exec, tok, opts).samples) EXPECT_EQ(s.needle_kept, -1);

  // The needle span is the needle's bytes (one token a byte, one extra at the front).
  const auto p = dm::build_passkey_prompt(tok, dm::builtin_filler(), 400, 0.5, "12345");
  const size_t at = p.text.find(dm::passkey_needle("12345"));
  EXPECT_EQ(p.needle_begin, int64_t(at) - 1);
  EXPECT_EQ(p.needle_end, int64_t(at + dm::passkey_needle("12345").size()));

  // Keep 100 of ~400 at layer 1: counts are within the span; the tail is always kept, so the
  // needle at depth 1 (just before the suffix) survives at least in part only if scored high;
  // every count is checked against a direct recount from the kept indices.
  dm::DecimationConfig d;
  d.enabled = true;
  d.layers = {1};
  d.L_base = 100;
  run.exec->set_decimation(d);
  struct Recount : dm::PrefillTap {
    dm::Backend* be;
    std::vector<int32_t> kept;
    void on_kept(int, const dm::Tensor& t) override {
      kept.resize(size_t(t.rows));
      be->download(*t.buf, t.offset, kept.data(), kept.size() * 4);
    }
  };
  const auto r = dm::run_passkey(*run.exec, tok, opts);
  for (size_t i = 0; i < r.samples.size(); ++i) {
    const auto& s = r.samples[i];
    ASSERT_GE(s.needle_kept, 0);
    EXPECT_LE(s.needle_kept, s.needle_tokens);
    const auto q = dm::build_passkey_prompt(tok, dm::builtin_filler(), 400, s.depth, s.key);
    Recount tap;
    tap.be = run.backend.get();
    auto state = run.exec->new_state();
    dm::PrefillOptions po;
    po.tap = &tap;
    po.protect_tail = 1;
    run.exec->prefill(q.ids, *state, po);
    ASSERT_EQ(tap.kept.size(), 101u);
    int64_t n = 0;
    for (int32_t k : tap.kept) n += k >= q.needle_begin && k < q.needle_end;
    EXPECT_EQ(s.needle_kept, n) << "depth " << s.depth;
  }
  int whole = 0;
  for (const auto& c : r.cells) {
    EXPECT_EQ(c.decimated, 1);
    whole += c.needle_whole;
  }
  int direct = 0;
  for (const auto& s : r.samples) direct += s.needle_kept == s.needle_tokens;
  EXPECT_EQ(whole, direct);
}
