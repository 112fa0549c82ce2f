// Hugging Face tokenizer.json (byte-level BPE) against oracle fixtures made with the Python
// `tokenizers` library (tools/tokenizer/make_fixtures.py). The GPT-NeoX-20B file is read from
// ../shared/data/gpt-neox-20b/ beside the repository when present (never copied into it); the
// small tokenizer trained here (tests/data/tokenizer/small_bpe.json) always runs.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "test_hf_tokenizer_corpus.h"
#include "test_paths.h"
#include "text/hf_tokenizer.h"
#include "text/tokenizer.h"

namespace fs = std::filesystem;

namespace {

std::string neox_path() {
  return (fs::path(dm::test::source_dir()) / ".." / "shared" / "data" / "gpt-neox-20b" /
          "tokenizer.json")
      .lexically_normal()
      .string();
}
std::string small_path() { return dm::test::data_dir() + "/tokenizer/small_bpe.json"; }

std::string escaped(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7F && c != '\\') {
      out += char(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", c);
      out += buf;
    }
  }
  return out;
}

std::string ids_str(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) {
    if (!s.empty()) s += ' ';
    s += std::to_string(id);
  }
  return s;
}

const dm::HfTokenizer& cached(const std::string& path) {
  static std::map<std::string, std::unique_ptr<dm::HfTokenizer>> all;
  auto& t = all[path];
  if (!t) t = std::make_unique<dm::HfTokenizer>(path);
  return *t;
}

// Every text of the seeded corpus against the digests `tokenizers` gave for it.
void check_fixture(const std::string& tokenizer_json, const std::string& fixture) {
  std::ifstream in(fixture, std::ios::binary);
  ASSERT_TRUE(in) << "missing fixture " << fixture;
  char magic[8];
  uint32_t n = 0;
  uint64_t seed = 0;
  char version[32];
  in.read(magic, 8);
  in.read(reinterpret_cast<char*>(&n), 4);
  in.read(reinterpret_cast<char*>(&seed), 8);
  in.read(version, 32);
  ASSERT_TRUE(in && std::memcmp(magic, "DMTOKFX1", 8) == 0) << fixture;
  std::vector<uint64_t> digests(size_t(n) * 2);
  in.read(reinterpret_cast<char*>(digests.data()), std::streamsize(digests.size() * 8));
  ASSERT_TRUE(in) << fixture << " is truncated";
  ASSERT_GE(n, 10000u);

  const dm::HfTokenizer& tok = cached(tokenizer_json);
  const auto texts = dm::test::corpus(seed, n);
  int failures = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    for (int special = 0; special < 2; ++special) {
      const auto ids = tok.encode(texts[i], special == 1);
      if (dm::test::ids_digest(ids) != digests[2 * i + size_t(special)] && ++failures <= 10) {
        ADD_FAILURE() << "text " << i << (special ? " (parse_special)" : " (user text)")
                      << " differs from tokenizers " << version << ": \"" << escaped(texts[i])
                      << "\"\n  decimamba ids: " << ids_str(ids)
                      << "\n  oracle: python3 tools/tokenizer/oracle.py ids " << tokenizer_json
                      << " '...'";
      }
    }
  }
  EXPECT_EQ(failures, 0) << "of " << n << " texts x 2 (tokenizers " << version << ")";
}

// decode(encode(s)) == NFC(s) (after invalid UTF-8 became U+FFFD), and streamed decoding hands
// out exactly that text, never half a character.
void check_round_trip(const std::string& tokenizer_json) {
  const dm::HfTokenizer& tok = cached(tokenizer_json);
  const auto texts = dm::test::corpus(7, 3000);
  int failures = 0;
  for (const auto& text : texts) {
    // An added token with lstrip/rstrip (the small file's [MASK]) takes the white space around
    // it into its id, in `tokenizers` too: no round trip there.
    if (text.find("[MASK]") != std::string::npos) continue;
    const auto ids = tok.encode(text);
    const std::string want = dm::nfc(dm::utf8_lossy(text));
    const std::string got = tok.decode(ids);
    dm::StreamDecoder stream(tok);
    std::string streamed;
    bool whole = true;
    for (int32_t id : ids) {
      const std::string piece = stream.push(id);
      whole = whole && dm::utf8_lossy(piece) == piece;
      streamed += piece;
    }
    streamed += stream.finish();
    if ((got != want || streamed != want || !whole) && ++failures <= 5) {
      ADD_FAILURE() << "\"" << escaped(text) << "\"\n  decode   \"" << escaped(got)
                    << "\"\n  streamed \"" << escaped(streamed) << "\"\n  NFC      \""
                    << escaped(want) << "\"" << (whole ? "" : "\n  a streamed piece split a character");
    }
  }
  EXPECT_EQ(failures, 0);
}

#define NEOX_OR_SKIP()                                                                       \
  if (!fs::exists(neox_path()))                                                              \
  GTEST_SKIP() << "GPT-NeoX-20B tokenizer.json absent (" << neox_path()                      \
               << "): its cases are skipped"

}  // namespace

TEST(HfTokenizer, NeoxMatchesTokenizersOnTheFixtureCorpus) {
  NEOX_OR_SKIP();
  check_fixture(neox_path(), dm::test::data_dir() + "/tokenizer/neox_oracle.bin");
}

TEST(HfTokenizer, SmallMatchesTokenizersOnTheFixtureCorpus) {
  check_fixture(small_path(), dm::test::data_dir() + "/tokenizer/small_bpe_oracle.bin");
}

TEST(HfTokenizer, NeoxKnownIds) {
  NEOX_OR_SKIP();
  const dm::HfTokenizer& tok = cached(neox_path());
  using V = std::vector<int32_t>;
  EXPECT_EQ(tok.encode("Hello world"), (V{12092, 1533}));
  EXPECT_EQ(tok.encode("What is the pass key? The pass key is"),
            (V{1276, 310, 253, 1509, 2234, 32, 380, 1509, 2234, 310}));
  EXPECT_EQ(tok.encode("a   b\n\n\tc  d"), (V{66, 50275, 67, 535, 186, 68, 50276, 69}));
  EXPECT_EQ(tok.encode(" leading space"), (V{4283, 2317}));
  EXPECT_EQ(tok.encode("<|endoftext|>x<|padding|>", true), (V{0, 89, 1}));
  EXPECT_EQ(tok.vocab_size(), 50277);
  EXPECT_EQ(tok.eos_id(), 0);
  EXPECT_EQ(tok.bos_id(), -1);
  EXPECT_FALSE(tok.add_bos());
  EXPECT_EQ(tok.piece(1533), "\xC4\xA0world");  // "Ġworld"
  EXPECT_EQ(tok.decode({12092, 1533, 0}), "Hello world<|endoftext|>");
  EXPECT_EQ(tok.decode({12092, 50277, 50279}), "Hello");  // padding rows name no token
}

TEST(HfTokenizer, UserTextCannotInjectSpecialTokens) {
  for (const std::string& path : {small_path(), neox_path()}) {
    if (!fs::exists(path)) continue;
    const dm::HfTokenizer& tok = cached(path);
    const int32_t eot = tok.token_to_id("<|endoftext|>");
    ASSERT_GE(eot, 0);
    const auto user = tok.encode("a<|endoftext|>b");
    EXPECT_EQ(std::count(user.begin(), user.end(), eot), 0) << path;
    EXPECT_EQ(tok.decode(user), "a<|endoftext|>b");
    const auto parsed = tok.encode("a<|endoftext|>b", true);
    EXPECT_EQ(std::count(parsed.begin(), parsed.end(), eot), 1) << path;
    // The Tokenizer interface is user text.
    const dm::Tokenizer& base = tok;
    EXPECT_EQ(base.encode("a<|endoftext|>b"), user);
  }
}

TEST(HfTokenizer, NeoxRoundTripAndStreaming) {
  NEOX_OR_SKIP();
  check_round_trip(neox_path());
}

TEST(HfTokenizer, SmallRoundTripAndStreaming) { check_round_trip(small_path()); }

TEST(HfTokenizer, ByteTokensThatSplitACharacterStreamWhole) {
  const dm::HfTokenizer& tok = cached(small_path());
  // A rare CJK character and an emoji are spelled as several byte tokens by a 2k vocabulary.
  const std::string text = "\xE9\xBE\x98\xF0\x9F\xA7\xAC!";
  const auto ids = tok.encode(text);
  ASSERT_GT(ids.size(), 3u);
  dm::StreamDecoder stream(tok);
  std::vector<std::string> pieces;
  for (int32_t id : ids) pieces.push_back(stream.push(id));
  pieces.push_back(stream.finish());
  std::string all;
  for (const auto& p : pieces) {
    EXPECT_EQ(dm::utf8_lossy(p), p) << "half a character: " << escaped(p);
    all += p;
  }
  EXPECT_EQ(all, text);
  // A lone byte token decodes to U+FFFD, as `tokenizers`' from_utf8_lossy does.
  EXPECT_EQ(tok.decode({ids[0]}), "\xEF\xBF\xBD");
}

TEST(HfTokenizer, InvalidUtf8IsReplacedPerMaximalSubpart) {
  EXPECT_EQ(dm::utf8_lossy("a\xF0\x9F\x98" "b"), "a\xEF\xBF\xBD" "b");
  EXPECT_EQ(dm::utf8_lossy("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(dm::utf8_lossy("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(dm::utf8_lossy("\xE2\x82\xAC"), "\xE2\x82\xAC");
  const dm::HfTokenizer& tok = cached(small_path());
  EXPECT_EQ(tok.encode("x\xFFy"), tok.encode("x\xEF\xBF\xBDy"));
}

TEST(HfTokenizer, NfcFollowsTokenizersUnicode9Tables) {
  EXPECT_EQ(dm::nfc("e\xCC\x81"), "\xC3\xA9");
  EXPECT_EQ(dm::nfc("a\xCC\x81\xCC\xA3"), "\xE1\xBA\xA1\xCC\x81");  // reordered, composed
  // U+1AC0 (Unicode 13) has combining class 220 in ICU but 0 in `tokenizers`: not reordered.
  EXPECT_EQ(dm::nfc("\xE1\xAA\xB4\xE1\xAB\x80"), "\xE1\xAA\xB4\xE1\xAB\x80");
}

TEST(HfTokenizer, LoadTokenizerPicksTokenizerJson) {
  const fs::path dir = fs::temp_directory_path() / "dm_hf_tok_pick";
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::copy_file(small_path(), dir / "tokenizer.json");
  const auto tok = dm::load_tokenizer(dir.string());
  EXPECT_NE(tok->kind().find("tokenizer.json"), std::string::npos) << tok->kind();
  EXPECT_EQ(tok->eos_id(), 0);
  EXPECT_EQ(tok->vocab_size(), 2058);
  fs::remove_all(dir);
}

TEST(HfTokenizer, UnimplementedComponentsAreNamedLoadErrors) {
  std::ifstream in(small_path());
  const std::string base((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const fs::path file = fs::temp_directory_path() / "dm_hf_tok_bad.json";
  auto expect_error = [&](const std::string& from, const std::string& to,
                          const std::string& message) {
    std::string text = base;
    const size_t at = text.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    text.replace(at, from.size(), to);
    std::ofstream(file) << text;
    try {
      dm::HfTokenizer tok(file.string());
      ADD_FAILURE() << "loaded with " << to;
    } catch (const dm::Error& e) {
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).rfind("[tokenizer] ", 0), 0u) << e.what();
    }
  };
  expect_error("\"type\": \"NFC\"", "\"type\": \"NFKC\"", "normalizer type NFKC");
  expect_error("\"type\": \"BPE\"", "\"type\": \"WordPiece\"", "model type WordPiece");
  expect_error("\"pre_tokenizer\": {\n    \"type\": \"ByteLevel\"",
               "\"pre_tokenizer\": {\n    \"type\": \"Metaspace\"", "pre_tokenizer type Metaspace");
  expect_error("\"decoder\": {\n    \"type\": \"ByteLevel\"",
               "\"decoder\": {\n    \"type\": \"WordPiece\"", "decoder type WordPiece");
  expect_error("\"byte_fallback\": false", "\"byte_fallback\": true", "byte_fallback");
  fs::remove(file);
}
