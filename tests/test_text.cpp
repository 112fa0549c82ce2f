// Tokenizer, streaming detokenisation and sampling.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <regex>
#include <tuple>

#include "core/error.h"
#include "text/sampler.h"
#include "text/tokenizer.h"
#include "byte_tokenizer.h"
#include "test_paths.h"

namespace fs = std::filesystem;

namespace {

const std::string kFixtureModel = dm::test::data_dir() + "/tokenizer/fixture_sp.model";

// A fresh empty directory under the system temp dir, removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() /
           ("dm_text_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

bool valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80             ? 1
               : (c & 0xE0) == 0xC0 ? 2
               : (c & 0xF0) == 0xE0 ? 3
               : (c & 0xF8) == 0xF0 ? 4
                                    : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += n;
  }
  return true;
}

using RawByteTokenizer = dm::test::ByteTokenizer;

// Like RawByteTokenizer, but an incomplete character at the end turns into one U+FFFD per
// byte, which is what SentencePiece's byte fallback does.
class ReplacementByteTokenizer : public RawByteTokenizer {
 public:
  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string s = RawByteTokenizer::decode(ids);
    size_t lead = s.size();
    while (lead > 0 && (static_cast<unsigned char>(s[lead - 1]) & 0xC0) == 0x80) --lead;
    if (lead == 0) return s;
    const unsigned char c = static_cast<unsigned char>(s[lead - 1]);
    const size_t need = (c & 0xE0) == 0xC0   ? 2
                        : (c & 0xF0) == 0xE0 ? 3
                        : (c & 0xF8) == 0xF0 ? 4
                                             : 1;
    const size_t have = s.size() - (lead - 1);
    if (need <= have) return s;
    std::string out = s.substr(0, lead - 1);
    for (size_t i = 0; i < have; ++i) out += "\xEF\xBF\xBD";
    return out;
  }
};

std::string stream_all(const dm::Tokenizer& tok, const std::vector<int32_t>& ids,
                       std::vector<std::string>* pieces = nullptr) {
  dm::StreamDecoder dec(tok);
  std::string out;
  for (int32_t id : ids) {
    const std::string p = dec.push(id);
    if (pieces) pieces->push_back(p);
    out += p;
  }
  const std::string rest = dec.finish();
  if (pieces) pieces->push_back(rest);
  return out + rest;
}

}  // namespace

// ---------------------------------------------------------------- tokenizer

TEST(TextTokenizer, RoundTripsWithTheFixtureModel) {
  if (!fs::exists(kFixtureModel)) GTEST_SKIP() << "fixture tokenizer absent: " << kFixtureModel;
  const auto tok = dm::load_sentencepiece(kFixtureModel);
  EXPECT_GT(tok->vocab_size(), 0);
  EXPECT_NE(tok->kind().find("sentencepiece"), std::string::npos);
  for (const std::string text :
       {"Hello world.", "The pass key is 12345. Remember it.", "naïve café, 日本語 and 𝄞!",
        "dashes-and (parens), [brackets]; \"quotes\"", "x"}) {
    const auto ids = tok->encode(text);
    ASSERT_FALSE(ids.empty()) << text;
    for (int32_t id : ids) {
      EXPECT_GE(id, 0);
      EXPECT_LT(id, tok->vocab_size());
    }
    EXPECT_EQ(tok->decode(ids), text);
  }
}

TEST(TextTokenizer, ControlSymbolsInUserTextStayText) {
  if (!fs::exists(kFixtureModel)) GTEST_SKIP() << "fixture tokenizer absent: " << kFixtureModel;
  const auto tok = dm::load_sentencepiece(kFixtureModel);
  const std::string text = "a <s> b </s> c <unk>";
  const auto ids = tok->encode(text);
  for (int32_t id : ids) {
    if (tok->bos_id() >= 0) {
      EXPECT_NE(id, tok->bos_id()) << "<s> became the control id";
    }
    if (tok->eos_id() >= 0) {
      EXPECT_NE(id, tok->eos_id()) << "</s> became the control id";
    }
  }
  EXPECT_EQ(tok->decode(ids), text);
}

TEST(TextTokenizer, RejectsIdsOutsideTheVocabulary) {
  if (!fs::exists(kFixtureModel)) GTEST_SKIP() << "fixture tokenizer absent: " << kFixtureModel;
  const auto tok = dm::load_sentencepiece(kFixtureModel);
  EXPECT_THROW(tok->decode({int32_t(tok->vocab_size())}), dm::Error);
  EXPECT_THROW(tok->decode({-1}), dm::Error);
}

TEST(TextTokenizer, LoadTokenizerPicksTheModelFile) {
  if (!fs::exists(kFixtureModel)) GTEST_SKIP() << "fixture tokenizer absent: " << kFixtureModel;
  TempDir dir;
  fs::copy_file(kFixtureModel, dir.path / "spiece.model");  // the one .model, any name
  const auto tok = dm::load_tokenizer(dir.path.string());
  EXPECT_NE(tok->kind().find("spiece.model"), std::string::npos) << tok->kind();
  fs::copy_file(kFixtureModel, dir.path / "tokenizer.model");  // tokenizer.model wins
  EXPECT_NE(dm::load_tokenizer(dir.path.string())->kind().find("tokenizer.model"),
            std::string::npos);
}

TEST(TextTokenizer, LoadTokenizerErrorsNameTheProblem) {
  TempDir dir;
  try {
    dm::load_tokenizer(dir.path.string());
    FAIL() << "an empty directory loaded";
  } catch (const dm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("[tokenizer] "), std::string::npos) << e.what();
  }
  std::ofstream(dir.path / "tokenizer.json") << "{}";
  try {
    dm::load_tokenizer(dir.path.string());
    FAIL() << "an empty tokenizer.json loaded";
  } catch (const dm::Error& e) {
    // tokenizer.json wins over a .model file; an empty object is not a Hugging Face tokenizer.
    EXPECT_EQ(std::string(e.what()), "[tokenizer] " + (dir.path / "tokenizer.json").string() +
                                         ": no \"model\": not a Hugging Face tokenizer.json");
  }
  std::ofstream(dir.path / "tokenizer.model") << "not a protobuf";
  EXPECT_THROW(dm::load_tokenizer(dir.path.string()), dm::Error);
  EXPECT_THROW(dm::load_tokenizer((dir.path / "missing").string()), dm::Error);
}

// ---------------------------------------------------------------- stream decoder

TEST(TextStreamDecoder, HoldsBackIncompleteUtf8FromRawBytes) {
  RawByteTokenizer tok;
  const std::string text = "a é 日本 𝄞 z";
  std::vector<std::string> pieces;
  EXPECT_EQ(stream_all(tok, tok.encode(text), &pieces), text);
  for (const auto& p : pieces) EXPECT_TRUE(valid_utf8(p)) << "a piece split a character";
  // "a " then the 2 bytes of é: the first byte alone gives nothing.
  EXPECT_EQ(pieces[0], "a");
  EXPECT_EQ(pieces[2], "");
  EXPECT_EQ(pieces[3], "é");
}

TEST(TextStreamDecoder, HoldsBackReplacementCharactersOfPendingBytes) {
  ReplacementByteTokenizer tok;
  const std::string text = "x𝄞y";  // 𝄞 is 4 bytes
  std::vector<std::string> pieces;
  EXPECT_EQ(stream_all(tok, tok.encode(text), &pieces), text);
  EXPECT_EQ(pieces[0], "x");
  EXPECT_EQ(pieces[1], "");
  EXPECT_EQ(pieces[2], "");
  EXPECT_EQ(pieces[3], "");
  EXPECT_EQ(pieces[4], "𝄞");
  EXPECT_EQ(pieces[5], "y");
}

TEST(TextStreamDecoder, FinishFlushesAnUnfinishedCharacter) {
  ReplacementByteTokenizer tok;
  dm::StreamDecoder dec(tok);
  EXPECT_EQ(dec.push('o'), "o");
  EXPECT_EQ(dec.push(0xE6), "");  // first byte of a 3-byte character, never completed
  EXPECT_EQ(dec.finish(), "\xEF\xBF\xBD");
}

TEST(TextStreamDecoder, LongStreamsMatchTheWholeDecode) {
  RawByteTokenizer tok;
  std::string text;
  for (int i = 0; i < 50; ++i) text += "word " + std::to_string(i) + " ünï ";
  EXPECT_EQ(stream_all(tok, tok.encode(text)), text);
}

TEST(TextStreamDecoder, ByteFallbackPiecesOfTheFixtureNeverSplitACharacter) {
  if (!fs::exists(kFixtureModel)) GTEST_SKIP() << "fixture tokenizer absent: " << kFixtureModel;
  const auto tok = dm::load_sentencepiece(kFixtureModel);
  // Characters a small vocabulary cannot hold come out as <0xNN> byte pieces.
  const std::string text = "The clef 𝄞 and 🦜 are rare; ǅ too.";
  const auto ids = tok->encode(text);
  const std::regex byte_piece("<0x[0-9A-F]{2}>");
  int bytes = 0;
  for (int32_t id : ids) bytes += std::regex_match(tok->piece(id), byte_piece);
  if (bytes < 2) GTEST_SKIP() << "the fixture vocabulary holds these characters; no byte pieces";
  std::vector<std::string> pieces;
  EXPECT_EQ(stream_all(*tok, ids, &pieces), tok->decode(ids));
  for (const auto& p : pieces) {
    EXPECT_TRUE(valid_utf8(p));
    EXPECT_EQ(p.find("\xEF\xBF\xBD"), std::string::npos) << "a pending byte leaked as U+FFFD";
  }
}

// ---------------------------------------------------------------- sampler

namespace {

std::vector<float> random_logits(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.f, 3.f);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(rng);
  return v;
}

}  // namespace

TEST(TextSampler, ArgmaxTiesGoToTheLowestIndex) {
  const std::vector<float> v{1.f, 5.f, 2.f, 5.f, 5.f};
  EXPECT_EQ(dm::argmax(v.data(), int64_t(v.size())), 1);
  const std::vector<float> neg{-3.f, -1.f, -1.f};
  EXPECT_EQ(dm::argmax(neg.data(), 3), 1);
}

TEST(TextSampler, ArgmaxRanksNanBelowEveryNumber) {
  const float nan = std::nanf("");
  const std::vector<float> a{nan, 1.f, 2.f}, b{nan, nan}, c{-INFINITY, nan}, d{1.f, nan, 1.f},
      e{-0.f, 0.f}, f{nan, -INFINITY, nan};
  EXPECT_EQ(dm::argmax(a.data(), 3), 2);  // a NaN first no longer wins
  EXPECT_EQ(dm::argmax(b.data(), 2), 0);  // all NaN: the first
  EXPECT_EQ(dm::argmax(c.data(), 2), 0);
  EXPECT_EQ(dm::argmax(d.data(), 3), 0);
  EXPECT_EQ(dm::argmax(e.data(), 2), 0);  // -0 == +0: the first
  EXPECT_EQ(dm::argmax(f.data(), 3), 1);
}

TEST(TextSampler, GreedyMeansPlainArgmax) {
  EXPECT_TRUE(dm::Sampler(dm::SamplerConfig{}).greedy());
  dm::SamplerConfig pen;
  pen.repetition_penalty = 1.3f;
  EXPECT_FALSE(dm::Sampler(pen).greedy());
  pen.repetition_window = 0;  // a penalty over no tokens changes nothing
  EXPECT_TRUE(dm::Sampler(pen).greedy());
  dm::SamplerConfig hot;
  hot.temperature = 0.7f;
  EXPECT_FALSE(dm::Sampler(hot).greedy());
}

// The sampler as first written (a comparison sort of every candidate), for finite logits: the
// radix-sorted path (top-k off) and the top-k path must draw the same tokens from the same seed.
int32_t reference_sample(const std::vector<float>& logits, const dm::SamplerConfig& cfg,
                         std::mt19937_64& rng) {
  const int64_t n = int64_t(logits.size());
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  int64_t keep = cfg.top_k > 0 && cfg.top_k < n ? cfg.top_k : n;
  std::partial_sort(order.begin(), order.begin() + keep, order.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  order.resize(keep);
  const double inv_t = 1.0 / double(cfg.temperature), top = double(logits[order[0]]) * inv_t;
  std::vector<double> p(keep);
  double sum = 0;
  for (int64_t i = 0; i < keep; ++i) sum += p[i] = std::exp(double(logits[order[i]]) * inv_t - top);
  for (double& x : p) x /= sum;
  if (cfg.top_p < 1.f) {
    double cum = 0;
    int64_t cut = keep;
    for (int64_t i = 0; i < keep; ++i)
      if ((cum += p[i]) >= double(cfg.top_p)) {
        cut = i + 1;
        break;
      }
    p.resize(cut);
    order.resize(cut);
  }
#ifdef __GLIBCXX__
  std::discrete_distribution<int64_t> pick(p.begin(), p.end());
  return order[pick(rng)];
#else  // discrete_draw follows libstdc++'s arithmetic, which other libraries need not share
  return order[dm::discrete_draw(p.data(), int64_t(p.size()), rng)];
#endif
}

// discrete_draw is std::discrete_distribution's draw without its table: the same index and the
// same numbers taken from the generator, over sizes 0-5003, weights with zeros, ties, a sorted
// decreasing run (the sampler's case) and a heavy tail.
TEST(TextSampler, DiscreteDrawIsTheLibrarys) {
#ifndef __GLIBCXX__
  GTEST_SKIP() << "discrete_draw follows libstdc++'s std::discrete_distribution";
#endif
  std::mt19937 g(5);
  std::normal_distribution<double> nd(0.0, 3.0);
  std::uniform_real_distribution<double> ud(0.0, 1.0);
  int checked = 0;
  for (const int64_t n : {0, 1, 2, 3, 17, 256, 5003}) {
    for (int kind = 0; kind < 4; ++kind) {
      std::vector<double> w(static_cast<size_t>(n), 0.0);
      for (double& x : w) {
        x = kind == 0 ? ud(g) : kind == 1 ? std::exp(nd(g)) : (ud(g) < 0.3 ? 0.0 : std::round(ud(g) * 4));
      }
      if (kind == 3) {  // sorted, decreasing, the top one: the sampler's probabilities
        for (double& x : w) x = std::exp(-std::abs(nd(g)));
        std::sort(w.begin(), w.end(), std::greater<double>());
        if (n > 0) w[0] = 1.0;
      }
      if (n > 0 && std::accumulate(w.begin(), w.end(), 0.0) == 0.0) w[0] = 1.0;
      for (uint64_t seed = 0; seed < 40; ++seed) {
        std::mt19937_64 a(seed), b(seed);
        std::discrete_distribution<int64_t> lib(w.begin(), w.end());
        const int64_t want = lib(a);
        const int64_t got = dm::discrete_draw(w.data(), n, b);
        ASSERT_EQ(got, want) << "n " << n << " kind " << kind << " seed " << seed;
        ASSERT_EQ(a(), b()) << "n " << n << " kind " << kind << " seed " << seed;
        ++checked;
      }
    }
  }
  EXPECT_EQ(checked, 7 * 4 * 40);
}

TEST(TextSampler, SameDrawsAsTheComparisonSort) {
  std::mt19937 g(11);
  std::normal_distribution<float> nd(0.f, 2.f);
  std::vector<float> v(5003);
  for (float& x : v) x = std::round(nd(g) * 8.f) / 8.f;  // many ties, ±0 among them
  v[17] = -0.f;
  v[18] = 0.f;
  for (const auto& [k, top_p, t] : std::vector<std::tuple<int, float, float>>{
           {0, 1.f, 1.f}, {0, 0.9f, 0.8f}, {0, 0.5f, 2.f}, {40, 0.95f, 0.8f}, {5003, 1.f, 0.7f},
           {0, 0.99999994f, 1.f}, {0, 0.9f, 0.05f}, {0, 0.999f, 30.f}, {1, 1.f, 1.f},
           {2, 1.f, 3.f}, {17, 1.f, 0.5f}, {5002, 0.9f, 1.f}, {64, 1.f, 40.f}}) {
    dm::SamplerConfig cfg;
    cfg.temperature = t;
    cfg.top_k = k;
    cfg.top_p = top_p;
    cfg.seed = 5;
    dm::Sampler s(cfg);
    std::mt19937_64 rng(cfg.seed);
    for (int i = 0; i < 200; ++i) {
      v[size_t(i * 37) % v.size()] += 0.125f;  // a slightly different distribution each draw
      ASSERT_EQ(s.sample(v, {}), reference_sample(v, cfg, rng)) << "top_k " << k << " top_p " << top_p
                                                                 << " draw " << i;
    }
  }
}

TEST(TextSampler, NonFiniteLogitsNeverCrashOrWin) {
  const float nan = std::nanf(""), inf = INFINITY;
  for (int k : {0, 2}) {
    dm::SamplerConfig cfg;
    cfg.temperature = 1.f;
    cfg.top_k = k;
    dm::Sampler s(cfg);
    for (int i = 0; i < 50; ++i) {
      const int32_t a = s.sample({nan, 1.f, nan, 2.f, nan}, {});
      EXPECT_TRUE(a == 1 || a == 3) << a;
      EXPECT_EQ(s.sample({nan, nan, nan}, {}), 0);          // nothing to weigh: the first
      EXPECT_EQ(s.sample({-inf, -inf, -inf}, {}), 0);
      const int32_t b = s.sample({1.f, inf, 3.f, inf}, {});  // the infinite ones share the mass
      EXPECT_TRUE(b == 1 || b == 3) << b;
      const int32_t c = s.sample({1.f, 2.f, nan, 5.f, nan, 3.f, nan}, {});  // NaN past the first k
      EXPECT_TRUE(k == 0 ? (c == 0 || c == 1 || c == 3 || c == 5) : (c == 3 || c == 5)) << c;
    }
  }
}

TEST(TextSampler, TemperatureZeroIsArgmax) {
  dm::Sampler s(dm::SamplerConfig{});
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const auto v = random_logits(100, seed);
    EXPECT_EQ(s.sample(v, {}), dm::argmax(v.data(), 100));
  }
  EXPECT_EQ(s.sample({2.f, 7.f, 7.f, 1.f}, {}), 1);
}

TEST(TextSampler, SameSeedSameSequence) {
  dm::SamplerConfig cfg;
  cfg.temperature = 1.f;
  cfg.seed = 42;
  dm::Sampler a(cfg), b(cfg);
  cfg.seed = 43;
  dm::Sampler c(cfg);
  const auto v = random_logits(50, 7);
  std::vector<int32_t> sa, sb, sc;
  for (int i = 0; i < 200; ++i) {
    sa.push_back(a.sample(v, {}));
    sb.push_back(b.sample(v, {}));
    sc.push_back(c.sample(v, {}));
  }
  EXPECT_EQ(sa, sb);
  EXPECT_NE(sa, sc);
}

TEST(TextSampler, TopKOneIsGreedy) {
  dm::SamplerConfig cfg;
  cfg.temperature = 1.5f;
  cfg.top_k = 1;
  cfg.seed = 1;
  dm::Sampler s(cfg);
  for (uint64_t seed = 0; seed < 50; ++seed) {
    const auto v = random_logits(64, seed);
    EXPECT_EQ(s.sample(v, {}), dm::argmax(v.data(), 64));
  }
}

TEST(TextSampler, TinyTopPIsGreedy) {
  dm::SamplerConfig cfg;
  cfg.temperature = 2.f;
  cfg.top_p = 1e-6f;
  cfg.seed = 3;
  dm::Sampler s(cfg);
  for (uint64_t seed = 0; seed < 50; ++seed) {
    const auto v = random_logits(64, seed + 100);
    EXPECT_EQ(s.sample(v, {}), dm::argmax(v.data(), 64));
  }
}

TEST(TextSampler, TopKAndTopPNeverPickOutsideTheirSet) {
  const std::vector<float> v{std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  dm::SamplerConfig k2;
  k2.temperature = 1.f;
  k2.top_k = 2;
  dm::SamplerConfig p75;
  p75.temperature = 1.f;
  p75.top_p = 0.75f;  // 0.5 < 0.75 <= 0.8: the nucleus is {0, 1}
  dm::Sampler sk(k2), sp(p75);
  std::map<int32_t, int> ck, cp;
  for (int i = 0; i < 2000; ++i) {
    ++ck[sk.sample(v, {})];
    ++cp[sp.sample(v, {})];
  }
  EXPECT_EQ(ck.size(), 2u);
  EXPECT_EQ(cp.size(), 2u);
  EXPECT_GT(ck[1], 0);
  EXPECT_GT(cp[1], 0);
  EXPECT_EQ(ck.count(2) + ck.count(3) + cp.count(2) + cp.count(3), 0u);
}

TEST(TextSampler, RepetitionPenaltyLowersARepeatedToken) {
  dm::SamplerConfig cfg;
  cfg.repetition_penalty = 1.5f;
  cfg.repetition_window = 4;
  dm::Sampler s(cfg);
  // Positive logit: 3.0 / 1.5 = 2.0 < 2.5.
  EXPECT_EQ(s.sample({1.f, 3.f, 2.5f}, {}), 1);
  EXPECT_EQ(s.sample({1.f, 3.f, 2.5f}, {1}), 2);
  // Negative logit: -1.0 · 1.5 = -1.5 < -1.2 (dividing would have raised it).
  EXPECT_EQ(s.sample({-1.f, -1.2f, -5.f}, {0}), 1);
  // A token counted once however often it repeats: 3.0 / 1.5 = 2.0 > 1.9.
  EXPECT_EQ(s.sample({1.f, 3.f, 1.9f}, {1, 1, 1, 1}), 1);
  // Outside the window the penalty does not apply.
  EXPECT_EQ(s.sample({1.f, 3.f, 2.5f}, {1, 0, 0, 0, 0}), 1);
}

TEST(TextSampler, TemperatureShapesTheDistribution) {
  // Chi-square goodness of fit with a fixed seed: deterministic, and a wrong softmax or
  // temperature misses the bound by orders of magnitude.
  const std::vector<double> p{0.5, 0.3, 0.15, 0.05};
  std::vector<float> logits;
  for (double x : p) logits.push_back(float(std::log(x)));
  for (float t : {1.f, 0.5f, 2.f}) {
    std::vector<double> q;
    for (double x : p) q.push_back(std::pow(x, 1.0 / t));
    const double z = std::accumulate(q.begin(), q.end(), 0.0);
    for (double& x : q) x /= z;

    dm::SamplerConfig cfg;
    cfg.temperature = t;
    cfg.seed = 2024;
    dm::Sampler s(cfg);
    const int n = 20000;
    std::vector<int> count(p.size(), 0);
    for (int i = 0; i < n; ++i) ++count[size_t(s.sample(logits, {}))];
    double chi2 = 0;
    for (size_t i = 0; i < p.size(); ++i) {
      const double e = n * q[i];
      chi2 += (count[i] - e) * (count[i] - e) / e;
    }
    EXPECT_LT(chi2, 16.3) << "temperature " << t;  // 3 dof, p = 0.001
  }
}

TEST(TextSampler, RejectsBadSettings) {
  dm::SamplerConfig c;
  c.temperature = -1.f;
  EXPECT_THROW(dm::Sampler{c}, dm::Error);
  c = {};
  c.top_p = 0.f;
  EXPECT_THROW(dm::Sampler{c}, dm::Error);
  c = {};
  c.top_k = -2;
  EXPECT_THROW(dm::Sampler{c}, dm::Error);
  c = {};
  c.repetition_penalty = 0.f;
  EXPECT_THROW(dm::Sampler{c}, dm::Error);
}
