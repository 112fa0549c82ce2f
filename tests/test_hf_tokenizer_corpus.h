// A seeded generator of varied tokenizer inputs, the same on every platform (own PRNG, no std
// distributions): the oracle fixtures store ids only and the texts are regenerated from the seed.
// Changing anything here changes the texts: regenerate the fixtures (tools/tokenizer/).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dm::test {

class CorpusRng {
 public:
  explicit CorpusRng(uint64_t seed) : s_(seed) {}
  uint64_t next() {  // splitmix64
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint32_t below(uint32_t n) { return uint32_t(next() % n); }
  uint32_t range(uint32_t lo, uint32_t hi) { return lo + below(hi - lo + 1); }  // inclusive
  bool chance(uint32_t percent) { return below(100) < percent; }
  template <typename T>
  const T& pick(const std::vector<T>& v) { return v[below(uint32_t(v.size()))]; }

 private:
  uint64_t s_;
};

inline void put_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

// Code-point ranges of many scripts (assigned blocks, Unicode <= 13 so that every Unicode
// library version agrees on them).
struct CpRange {
  uint32_t lo, hi;
};
inline const std::vector<CpRange>& script_ranges() {
  static const std::vector<CpRange> r = {
      {0x0041, 0x007A}, {0x00C0, 0x024F}, {0x0370, 0x03FF}, {0x0400, 0x04FF}, {0x0530, 0x058F},
      {0x0591, 0x05F4}, {0x0600, 0x06FF}, {0x0750, 0x077F}, {0x0900, 0x097F}, {0x0980, 0x09FE},
      {0x0A00, 0x0A76}, {0x0B80, 0x0BFA}, {0x0C00, 0x0C7F}, {0x0D00, 0x0D7F}, {0x0E00, 0x0E5B},
      {0x0F00, 0x0FDA}, {0x10A0, 0x10FF}, {0x1100, 0x11FF}, {0x1200, 0x137C}, {0x13A0, 0x13F5},
      {0x1780, 0x17F9}, {0x1E00, 0x1EFF}, {0x1F00, 0x1FFE}, {0x2000, 0x206F}, {0x20A0, 0x20C0},
      {0x2100, 0x218B}, {0x2190, 0x23FF}, {0x2460, 0x24FF}, {0x2500, 0x27BF}, {0x3000, 0x303F},
      {0x3040, 0x30FF}, {0x3130, 0x318F}, {0x4E00, 0x9FFC}, {0xA000, 0xA48C}, {0xAC00, 0xD7A3},
      {0xF900, 0xFAD9}, {0xFB00, 0xFB4F}, {0xFE70, 0xFEFC}, {0xFF00, 0xFFEF}, {0x10000, 0x1007F},
      {0x10400, 0x1044F}, {0x1D400, 0x1D7FF}, {0x1F300, 0x1F64F}, {0x1F680, 0x1F6D7},
      {0x1F900, 0x1F9FF}, {0x20000, 0x2A6DD}, {0x0300, 0x036F}, {0x1AB0, 0x1AC0},
      {0x0080, 0x00BF}, {0x0000, 0x001F}};
  return r;
}

inline std::string corpus_text(CorpusRng& rng) {
  static const std::vector<std::string> words = {
      "the", "of", "and", "to", "in", "is", "that", "it", "was", "for", "on", "are", "as", "with",
      "his", "they", "at", "be", "this", "from", "have", "or", "by", "one", "had", "not", "but",
      "what", "all", "were", "when", "we", "there", "can", "an", "your", "which", "their", "said",
      "if", "do", "will", "each", "about", "how", "up", "out", "them", "then", "she", "many",
      "some", "so", "these", "would", "other", "into", "has", "more", "her", "two", "like", "him",
      "see", "time", "could", "no", "make", "than", "first", "been", "its", "who", "now",
      "people", "my", "made", "over", "did", "down", "only", "way", "find", "use", "may",
      "water", "long", "little", "very", "after", "words", "called", "just", "where", "most",
      "know", "passkey", "Mamba", "tokenizer", "Hello", "World", "THE", "Pass", "KEY",
      "antidisestablishmentarianism", "naïve", "café", "résumé", "Zürich", "São", "Ångström",
      "straße", "façade", "coöperate", "Œuvre", "ﬁnance", "Ｆｕｌｌ", "x86_64", "utf-8"};
  static const std::vector<std::string> contractions = {
      "don't", "I'm", "they're", "we've", "she'll", "he'd", "it's", "'s", "'t", "'re", "'ve",
      "'m", "'ll", "'d", "'S", "'T", "'RE", "O'Neil", "rock'n'roll", "’s", "can’t", "''",
      "'", "y'all", "'tis", "'99", "it'sn't"};
  static const std::vector<std::string> code = {
      "def f(x):\n    return x * 2\n", "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
      "if (a != b && c >= d) { return; }", "#include <stdio.h>\n", "x = [1, 2, 3]  # list",
      "SELECT * FROM t WHERE id = 42;", "fn main() -> Result<(), Box<dyn Error>> {",
      "    \"key\": \"value\",\n", "a->b->c", "std::vector<int32_t>", "    }\n  }\n}\n",
      "console.log(`${x}`);", "<div class=\"a\">&nbsp;</div>", "0x1F600", "i++; j--;",
      "\t\t\tindent", "lambda: None", "@decorator\n", "$HOME/.bashrc", "x:=y"};
  static const std::vector<std::string> specials = {
      "<|endoftext|>", "<|padding|>", "<|endoftext", "endoftext|>", "<|", "|>", "<|endo",
      "<|endoftext|><|endoftext|>", "<|padding|><|endoftext|>", "<|<|endoftext|>|>",
      "<|ENDOFTEXT|>", "< |endoftext|>", "<|endoftext|>\n", "[MASK]", "  [MASK]\n", "<sep>",
      " <sep> ", "x<sep>", "thee", " thee ", "thee's", "prithee", "thee\xCC\x81"};
  static const std::vector<uint32_t> spaces = {0x20,   0x20,   0x20,   0x20,   0x09,   0x0A,
                                               0x0D,   0x0B,   0x0C,   0x85,   0xA0,   0x1680,
                                               0x2000, 0x2009, 0x200A, 0x2028, 0x2029, 0x202F,
                                               0x205F, 0x3000, 0x200B, 0xFEFF, 0x1C,   0x1F};
  static const std::vector<std::string> emoji = {
      "😀", "😂", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "🏳️‍🌈", "❤️", "🤖", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𝟘𝟙𝟚", "𠀀𠀁", "🧬",
      "✨", "☕", "🎉🎉🎉", "💩", "🫠"};
  static const std::vector<std::string> nfd = {
      "e\xCC\x81", "a\xCC\x88", "o\xCC\x82\xCC\x81", "a\xCC\xA3\xCC\x81", "a\xCC\x81\xCC\xA3",
      "\xE1\x84\x80\xE1\x85\xA1", "\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8", "n\xCC\x83",
      "A\xCC\x8A", "\xCE\xB1\xCC\x81", "\xD0\xB8\xCC\x86", "\xE3\x81\x8B\xE3\x82\x99",
      "\xE2\x84\xAB", "\xEF\xAC\x81", "\xE2\x84\xA6", "\xCC\x81", "\xCC\x81\xCC\x81x",
      "\xE0\xA4\x95\xE0\xA4\xBC", "\xE2\x80\x8D", "i\xCC\x87"};
  static const std::vector<std::string> rtl = {
      "مرحبا بالعالم", "السَّلَامُ عَلَيْكُمْ", "שָׁלוֹם עוֹלָם", "١٢٣٤٥", "۱۲۳", "English مع عربي 123",
      "עברית (ניסוי) 42", "\xE2\x80\x8F", "\xE2\x80\x8E", "\xE2\x80\xAE" "abc"};
  static const std::vector<std::string> cjk = {
      "你好，世界！", "日本語のテキストです。", "한국어 텍스트", "中文English混合", "ｶﾀｶﾅ",
      "第１２３号", "〇一二三", "東京タワー 333m", "「引用」", "汉字漢字"};
  static const std::vector<std::string> invalid = {
      "\x80", "\xBF", "\xC0\xAF", "\xC3", "\xE2\x82", "\xF0\x9F\x98", "\xED\xA0\x80",
      "\xF5\x80\x80\x80", "\xFF", "\xFE\xFF", "\xE0\x80\x80", "\xF4\x90\x80\x80", "\xC2\x41",
      "\xE2\x28\xA1", "\xF0\x28\x8C\x28"};

  std::string out;
  const uint32_t kind = rng.below(18);
  const uint32_t parts = rng.range(1, 12);
  for (uint32_t p = 0; p < parts; ++p) {
    // Mostly the kind's own material, sometimes anything.
    const uint32_t k = rng.chance(70) ? kind : rng.below(18);
    if (!out.empty() && rng.chance(60)) out += ' ';
    switch (k) {
      case 0:
      case 1: {  // prose
        const uint32_t nw = rng.range(1, 12);
        for (uint32_t w = 0; w < nw; ++w) {
          if (w) out += ' ';
          std::string word = rng.pick(words);
          if (rng.chance(10) && word[0] >= 'a' && word[0] <= 'z') word[0] = char(word[0] - 32);
          out += word;
          if (rng.chance(12)) out += rng.pick(std::vector<std::string>{",", ".", ";", "!", "?",
                                                                       ":", "...", " -", "—"});
        }
        break;
      }
      case 2:
        out += rng.pick(code);
        break;
      case 3: {  // numbers and passkeys
        const uint32_t form = rng.below(5);
        if (form == 0) out += "The pass key is " + std::to_string(rng.range(0, 99999)) + ".";
        if (form == 1) out += std::to_string(rng.next() % 100000000000ull);
        // One rng call per statement: the order of operands of + is unspecified in C++.
        if (form == 2) {
          out += std::to_string(rng.range(0, 999));
          out += '.';
          out += std::to_string(rng.range(0, 9999));
        }
        if (form == 3) {
          out += "+1 (";
          out += std::to_string(rng.range(100, 999));
          out += ") 555-0";
          out += std::to_string(rng.range(100, 199));
        }
        if (form == 4) {
          out += 'v';
          out += std::to_string(rng.below(20));
          out += '.';
          out += std::to_string(rng.below(20));
          out += ",000,000";
        }
        break;
      }
      case 4: {  // white-space runs
        const uint32_t n = rng.range(1, 40);
        const bool plain = rng.chance(50);
        for (uint32_t i = 0; i < n; ++i) put_utf8(out, plain ? 0x20 : rng.pick(spaces));
        if (rng.chance(70)) out += rng.pick(words);
        break;
      }
      case 5:  // leading / trailing spaces and tabs, newlines
      {
        const uint32_t lead = rng.range(1, 30);
        out += std::string(lead, rng.chance(50) ? ' ' : '\t');
        out += rng.pick(words);
        out += std::string(rng.range(0, 3), '\n');
        out += std::string(rng.range(0, 3), ' ');
        break;
      }
      case 6:
        out += rng.pick(contractions);
        break;
      case 7:
        out += rng.pick(emoji);
        break;
      case 8:
        out += rng.pick(nfd);
        break;
      case 9:
        out += rng.pick(cjk);
        break;
      case 10:
        out += rng.pick(rtl);
        break;
      case 11: {  // random code points from many scripts
        const CpRange& r = rng.pick(script_ranges());
        const uint32_t n = rng.range(1, 8);
        for (uint32_t i = 0; i < n; ++i) {
          uint32_t cp = rng.range(r.lo, r.hi);
          if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;
          put_utf8(out, cp);
        }
        break;
      }
      case 12: {  // control characters
        const uint32_t n = rng.range(1, 4);
        for (uint32_t i = 0; i < n; ++i) {
          const uint32_t form = rng.below(4);
          put_utf8(out, form == 0   ? rng.range(0, 0x1F)
                        : form == 1 ? 0x7F
                        : form == 2 ? rng.range(0x80, 0x9F)
                                    : rng.pick(std::vector<uint32_t>{0x200B, 0x200C, 0x200D,
                                                                     0x2060, 0xFEFF, 0x00AD}));
        }
        break;
      }
      case 13:  // invalid UTF-8
        out += rng.pick(invalid);
        break;
      case 14:
        out += rng.pick(specials);
        break;
      case 15: {  // long runs of spaces (the GPT-NeoX space tokens) between words
        out += rng.pick(words);
        out += std::string(rng.range(2, 60), ' ');
        out += rng.pick(words);
        break;
      }
      case 16: {  // mixed scripts glued together
        const uint32_t n = rng.range(2, 6);
        for (uint32_t i = 0; i < n; ++i) {
          const uint32_t which = rng.below(5);
          out += which == 0   ? rng.pick(words)
                 : which == 1 ? rng.pick(cjk)
                 : which == 2 ? rng.pick(rtl)
                 : which == 3 ? rng.pick(emoji)
                              : rng.pick(nfd);
        }
        break;
      }
      default: {  // random bytes, mostly ASCII
        const uint32_t n = rng.range(1, 12);
        for (uint32_t i = 0; i < n; ++i)
          out += char(rng.chance(80) ? rng.range(0x20, 0x7E) : rng.range(0, 255));
        break;
      }
    }
  }
  return out;
}

inline std::vector<std::string> corpus(uint64_t seed, size_t n) {
  CorpusRng rng(seed);
  std::vector<std::string> texts;
  texts.reserve(n);
  // A few fixed edge cases first.
  const std::vector<std::string> fixed = {
      "", " ", "  ", "\n", "Hello world", "What is the pass key? The pass key is",
      "a   b\n\n\tc  d", " leading space", "<|endoftext|>x<|padding|>", "trailing space ",
      "       ", "\t", "x\r\ny", "'s's's", " 's", "  'll", "a\xCC\x81", "\xF0\x9F\x98\x80",
      "\xFF\xFE", std::string("nul\0byte", 8)};
  for (const auto& f : fixed)
    if (texts.size() < n) texts.push_back(f);
  while (texts.size() < n) texts.push_back(corpus_text(rng));
  return texts;
}

// FNV-1a 64 over the ids as little-endian u32 (the fixtures store this per text).
inline uint64_t ids_digest(const std::vector<int32_t>& ids) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (int32_t id : ids) {
    const uint32_t u = uint32_t(id);
    for (int b = 0; b < 4; ++b) {
      h ^= (u >> (8 * b)) & 0xFF;
      h *= 0x100000001B3ull;
    }
  }
  return h;
}

}  // namespace dm::test
