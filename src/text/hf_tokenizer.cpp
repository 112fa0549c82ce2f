// Hugging Face tokenizer.json, byte-level BPE. Each step follows what `tokenizers` does, in its
// order: special/non-normalized added tokens split on the raw text (leftmost-longest), each other
// piece NFC-normalized, normalized added tokens split there, ByteLevel pre-tokenization (the
// GPT-2 split, written out by hand over Unicode categories), then BPE per word, lowest rank first
// with the same tie-breaking (leftmost) and the same stale-entry rule as `tokenizers`' Word.
#include "text/hf_tokenizer.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/uniset.h>
#include <unicode/unistr.h>
#include <unicode/uchar.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace dm {

namespace fs = std::filesystem;
using json = nlohmann::json;

// ------------------------------------------------------------------------------- UTF-8, Unicode

namespace {

void append_utf8(std::string& out, uint32_t cp) {
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

// Decodes one code point of valid UTF-8 at s[i]; returns its byte length.
inline size_t decode_at(std::string_view s, size_t i, uint32_t& cp) {
  const unsigned char b = static_cast<unsigned char>(s[i]);
  if (b < 0x80) {
    cp = b;
    return 1;
  }
  if (b < 0xE0) {
    cp = ((b & 0x1Fu) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3Fu);
    return 2;
  }
  if (b < 0xF0) {
    cp = ((b & 0x0Fu) << 12) | ((static_cast<unsigned char>(s[i + 1]) & 0x3Fu) << 6) |
         (static_cast<unsigned char>(s[i + 2]) & 0x3Fu);
    return 3;
  }
  cp = ((b & 0x07u) << 18) | ((static_cast<unsigned char>(s[i + 1]) & 0x3Fu) << 12) |
       ((static_cast<unsigned char>(s[i + 2]) & 0x3Fu) << 6) |
       (static_cast<unsigned char>(s[i + 3]) & 0x3Fu);
  return 4;
}

// Length of the valid UTF-8 sequence at s[i], or 0 with `bad` = bytes of the maximal invalid
// subpart (each replaced by one U+FFFD).
inline size_t valid_at(std::string_view s, size_t i, size_t& bad) {
  const size_t n = s.size();
  const unsigned char b = static_cast<unsigned char>(s[i]);
  if (b < 0x80) return 1;
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b >= 0xC2 && b <= 0xDF) {
    need = 1;
  } else if (b == 0xE0) {
    need = 2, lo = 0xA0;
  } else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) {
    need = 2;
  } else if (b == 0xED) {
    need = 2, hi = 0x9F;
  } else if (b == 0xF0) {
    need = 3, lo = 0x90;
  } else if (b >= 0xF1 && b <= 0xF3) {
    need = 3;
  } else if (b == 0xF4) {
    need = 3, hi = 0x8F;
  } else {
    bad = 1;
    return 0;
  }
  size_t j = i + 1, k = 0;
  for (; k < need && j < n; ++k, ++j) {
    const unsigned char c = static_cast<unsigned char>(s[j]);
    if (k == 0 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) break;
  }
  if (k == need) return need + 1;
  bad = j - i;
  return 0;
}

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

// The GPT-2 split's character classes. Oniguruma's \s in Unicode mode is White_Space.
enum : uint8_t { kOther = 0, kLetter = 1, kNumber = 2, kSpace = 3 };

inline bool is_white_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

// `tokenizers` splits with Oniguruma 6.9.10, whose tables are Unicode 16.0; ICU 72 (Debian 12)
// knows Unicode 15.0. These are the letters and numbers of Unicode 15.1 and 16.0, found by
// comparing every code point with `tokenizers` 0.23.3 (tools/tokenizer/README.md). Characters of
// Unicode versions after 16.0 are unassigned (other) to Oniguruma, whatever a newer ICU says.
struct ClassRange {
  uint32_t lo, hi;
  uint8_t cls;
};
constexpr ClassRange kUnicode16Additions[] = {
    {0x1C89, 0x1C8A, kLetter},
    {0xA7CB, 0xA7CD, kLetter},
    {0xA7DA, 0xA7DC, kLetter},
    {0x105C0, 0x105F3, kLetter},
    {0x10D40, 0x10D49, kNumber},
    {0x10D4A, 0x10D65, kLetter},
    {0x10D6F, 0x10D85, kLetter},
    {0x10EC2, 0x10EC4, kLetter},
    {0x11380, 0x11389, kLetter},
    {0x1138B, 0x1138B, kLetter},
    {0x1138E, 0x1138E, kLetter},
    {0x11390, 0x113B5, kLetter},
    {0x113B7, 0x113B7, kLetter},
    {0x113D1, 0x113D1, kLetter},
    {0x113D3, 0x113D3, kLetter},
    {0x116D0, 0x116E3, kNumber},
    {0x11BC0, 0x11BE0, kLetter},
    {0x11BF0, 0x11BF9, kNumber},
    {0x13460, 0x143FA, kLetter},
    {0x16100, 0x1611D, kLetter},
    {0x16130, 0x16139, kNumber},
    {0x16D40, 0x16D6C, kLetter},
    {0x16D70, 0x16D79, kNumber},
    {0x18CFF, 0x18CFF, kLetter},
    {0x1CCF0, 0x1CCF9, kNumber},
    {0x1E5D0, 0x1E5ED, kLetter},
    {0x1E5F0, 0x1E5F0, kLetter},
    {0x1E5F1, 0x1E5FA, kNumber},
    {0x2EBF0, 0x2EE5D, kLetter}};

uint8_t compute_class(uint32_t c) {
  if (is_white_space(c)) return kSpace;
  for (const ClassRange& r : kUnicode16Additions)
    if (c >= r.lo && c <= r.hi) return r.cls;
  UVersionInfo age;
  u_charAge(UChar32(c), age);
  if (age[0] > 16) return kOther;
  const uint32_t mask = U_GET_GC_MASK(UChar32(c));
  if (mask & U_GC_L_MASK) return kLetter;
  if (mask & U_GC_N_MASK) return kNumber;
  return kOther;
}

struct ClassTable {
  std::array<uint8_t, 0x10000> bmp;
  ClassTable() {
    for (uint32_t c = 0; c < 0x10000; ++c) bmp[c] = compute_class(c);
  }
};

inline uint8_t char_class(uint32_t c) {
  static const ClassTable table;
  return c < 0x10000 ? table.bmp[c] : compute_class(c);
}

// The word characters (Rust regex \w) of Unicode 15.1 and 16.0, which `tokenizers`' regex crate
// knows and ICU 72 does not: found by comparing every code point with `tokenizers` 0.23.3.
constexpr std::pair<uint32_t, uint32_t> kUnicode16WordAdditions[] = {
    {0x897, 0x897},
    {0x1C89, 0x1C8A},
    {0xA7CB, 0xA7CD},
    {0xA7DA, 0xA7DC},
    {0x105C0, 0x105F3},
    {0x10D40, 0x10D65},
    {0x10D69, 0x10D6D},
    {0x10D6F, 0x10D85},
    {0x10EC2, 0x10EC4},
    {0x10EFC, 0x10EFC},
    {0x11380, 0x11389},
    {0x1138B, 0x1138B},
    {0x1138E, 0x1138E},
    {0x11390, 0x113B5},
    {0x113B7, 0x113C0},
    {0x113C2, 0x113C2},
    {0x113C5, 0x113C5},
    {0x113C7, 0x113CA},
    {0x113CC, 0x113D3},
    {0x113E1, 0x113E2},
    {0x116D0, 0x116E3},
    {0x11BC0, 0x11BE0},
    {0x11BF0, 0x11BF9},
    {0x11F5A, 0x11F5A},
    {0x13460, 0x143FA},
    {0x16100, 0x16139},
    {0x16D40, 0x16D6C},
    {0x16D70, 0x16D79},
    {0x18CFF, 0x18CFF},
    {0x1CCF0, 0x1CCF9},
    {0x1E5D0, 0x1E5FA},
    {0x2EBF0, 0x2EE5D}};

// Rust regex \w (Unicode): Alphabetic, marks, decimal digits, connector punctuation, joiners.
bool is_word_char(uint32_t c) {
  for (const auto& [lo, hi] : kUnicode16WordAdditions)
    if (c >= lo && c <= hi) return true;
  UVersionInfo age;
  u_charAge(UChar32(c), age);
  if (age[0] > 16) return false;
  if (u_hasBinaryProperty(UChar32(c), UCHAR_ALPHABETIC)) return true;
  const uint32_t mask = U_GET_GC_MASK(UChar32(c));
  if (mask & (U_GC_M_MASK | U_GC_ND_MASK | U_GC_PC_MASK)) return true;
  return u_hasBinaryProperty(UChar32(c), UCHAR_JOIN_CONTROL);
}

// Last code point of a valid UTF-8 prefix.
uint32_t last_cp(std::string_view s) {
  size_t i = s.size() - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  uint32_t cp;
  decode_at(s, i, cp);
  return cp;
}

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the rest map to
// U+0100.. in byte order.
struct ByteMap {
  std::array<uint32_t, 256> to_cp;
  std::unordered_map<uint32_t, uint8_t> to_byte;
  ByteMap() {
    std::array<bool, 256> printable{};
    for (int b = '!'; b <= '~'; ++b) printable[b] = true;
    for (int b = 0xA1; b <= 0xAC; ++b) printable[b] = true;
    for (int b = 0xAE; b <= 0xFF; ++b) printable[b] = true;
    uint32_t n = 0;
    for (int b = 0; b < 256; ++b) to_cp[b] = printable[b] ? uint32_t(b) : 256 + n++;
    for (int b = 0; b < 256; ++b) to_byte[to_cp[b]] = uint8_t(b);
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

// A byte-level spelling ("Ġworld") back to its bytes; false when a character is not one of the
// 256 byte characters.
bool byte_level_to_bytes(std::string_view s, std::string& out) {
  out.clear();
  const auto& to_byte = byte_map().to_byte;
  for (size_t i = 0; i < s.size();) {
    size_t bad = 0;
    const size_t len = valid_at(s, i, bad);
    if (len == 0) return false;
    uint32_t cp;
    decode_at(s, i, cp);
    const auto it = to_byte.find(cp);
    if (it == to_byte.end()) return false;
    out += char(it->second);
    i += len;
  }
  return true;
}

}  // namespace

std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    // ASCII runs in one go.
    size_t j = i;
    while (j < n && static_cast<unsigned char>(s[j]) < 0x80) ++j;
    out.append(s.data() + i, j - i);
    i = j;
    if (i >= n) break;
    size_t bad = 0;
    const size_t len = valid_at(s, i, bad);
    if (len) {
      out.append(s.data() + i, len);
      i += len;
    } else {
      out += kReplacement;
      i += bad;
    }
  }
  return out;
}

namespace {

// `tokenizers` normalizes with the unicode-normalization-alignments crate, whose tables are
// Unicode 9.0: a character assigned later has combining class 0 and no decomposition there, so it
// is neither reordered nor composed. ICU's NFC filtered to the characters of Unicode <= 9.0 does
// the same: a character outside the filter is a boundary that normalization passes through.
const icu::Normalizer2* nfc_unicode9() {
  struct Holder {
    std::unique_ptr<icu::UnicodeSet> set;
    std::unique_ptr<icu::FilteredNormalizer2> norm;
    std::string error;
    Holder() {
      UErrorCode err = U_ZERO_ERROR;
      const icu::Normalizer2* base = icu::Normalizer2::getNFCInstance(err);
      if (U_FAILURE(err)) {
        error = u_errorName(err);
        return;
      }
      set = std::make_unique<icu::UnicodeSet>(icu::UnicodeString(u"[:age=9.0:]"), err);
      if (U_FAILURE(err)) {
        error = u_errorName(err);
        return;
      }
      set->freeze();
      norm = std::make_unique<icu::FilteredNormalizer2>(*base, *set);
    }
  };
  static const Holder h;
  if (!h.norm) fail("[tokenizer] ICU NFC: ", h.error);
  return h.norm.get();
}

}  // namespace

std::string nfc(std::string_view s) {
  // Below U+0300 (lead bytes < 0xCC) every character is NFC-stable and composes with nothing.
  bool simple = true;
  for (unsigned char c : s) {
    if (c >= 0xCC) {
      simple = false;
      break;
    }
  }
  if (simple) return std::string(s);
  const icu::Normalizer2* n = nfc_unicode9();
  UErrorCode err = U_ZERO_ERROR;
  const icu::StringPiece piece(s.data(), int32_t(s.size()));
  if (n->isNormalizedUTF8(piece, err) && U_SUCCESS(err)) return std::string(s);
  err = U_ZERO_ERROR;
  std::string out;
  icu::StringByteSink<std::string> sink(&out, int32_t(s.size()));
  n->normalizeUTF8(0, piece, sink, nullptr, err);
  if (U_FAILURE(err)) fail("[tokenizer] ICU NFC: ", u_errorName(err));
  return out;
}

// ------------------------------------------------------------------------------- added tokens

struct HfTokenizer::Trie {
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> kids;
    int32_t token = -1;  // index into added_
  };
  std::vector<Node> nodes = std::vector<Node>(1);
  std::array<bool, 256> first{};
  bool empty = true;

  void add(std::string_view pattern, int32_t token) {
    if (pattern.empty()) return;
    empty = false;
    first[static_cast<unsigned char>(pattern[0])] = true;
    int32_t at = 0;
    for (unsigned char c : pattern) {
      int32_t next = -1;
      for (const auto& [k, v] : nodes[at].kids)
        if (k == c) next = v;
      if (next < 0) {
        next = int32_t(nodes.size());
        nodes[at].kids.emplace_back(c, next);
        nodes.emplace_back();
      }
      at = next;
    }
    if (nodes[at].token < 0) nodes[at].token = token;  // the first of equal patterns wins
  }

  // Longest pattern starting at s[pos]: its length (0 if none) and token.
  size_t longest(std::string_view s, size_t pos, int32_t& token) const {
    int32_t at = 0;
    size_t best = 0;
    for (size_t i = pos; i < s.size(); ++i) {
      const unsigned char c = static_cast<unsigned char>(s[i]);
      int32_t next = -1;
      for (const auto& [k, v] : nodes[at].kids)
        if (k == c) {
          next = v;
          break;
        }
      if (next < 0) break;
      at = next;
      if (nodes[at].token >= 0) {
        best = i + 1 - pos;
        token = nodes[at].token;
      }
    }
    return best;
  }
};

HfTokenizer::~HfTokenizer() = default;

// `tokenizers`' AddedVocabulary::find_matches: leftmost-longest, non-overlapping; a match that is
// then refused (special while parse_special is off, single_word not alone) still consumes its
// text, as the Aho-Corasick iterator there does. Pieces get id -1 when they are plain text.
void HfTokenizer::split_added(std::string_view s, const Trie& trie, bool parse_special,
                              std::vector<std::pair<std::string_view, int32_t>>& out) const {
  if (trie.empty) {
    out.emplace_back(s, -1);
    return;
  }
  size_t start_offset = 0, pos = 0;
  const size_t n = s.size();
  while (pos < n) {
    size_t len = 0;
    int32_t tok = -1;
    size_t at = pos;
    for (; at < n; ++at) {
      if (!trie.first[static_cast<unsigned char>(s[at])]) continue;
      len = trie.longest(s, at, tok);
      if (len) break;
    }
    if (!len) break;
    size_t start = at, stop = at + len;
    pos = stop;
    const AddedToken& t = added_[size_t(tok)];
    if (t.special && !parse_special) continue;
    if (t.single_word) {
      const bool start_space = start == 0 || !is_word_char(last_cp(s.substr(0, start)));
      uint32_t cp = 0;
      if (stop < n) decode_at(s, stop, cp);
      const bool stop_space = stop == n || !is_word_char(cp);
      if (!start_space || !stop_space) continue;
    }
    if (t.lstrip) {
      size_t b = start;
      while (b > 0) {
        size_t i = b - 1;
        while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
        uint32_t cp;
        decode_at(s, i, cp);
        if (!is_white_space(cp)) break;
        b = i;
      }
      start = std::max(b, start_offset);
    }
    if (t.rstrip) {
      while (stop < n) {
        uint32_t cp;
        const size_t l = decode_at(s, stop, cp);
        if (!is_white_space(cp)) break;
        stop += l;
      }
    }
    if (start_offset < start) out.emplace_back(s.substr(start_offset, start - start_offset), -1);
    out.emplace_back(s.substr(start, stop - start), t.id);
    start_offset = stop;
  }
  if (start_offset < n) out.emplace_back(s.substr(start_offset), -1);
}

// ------------------------------------------------------------------------------- encode

std::vector<int32_t> HfTokenizer::encode(std::string_view text, bool parse_special) const {
  const std::string valid = utf8_lossy(text);
  std::vector<int32_t> ids;
  ids.reserve(valid.size() / 3 + 4);
  std::vector<std::pair<std::string_view, int32_t>> raw, norm;
  split_added(valid, *raw_trie_, parse_special, raw);
  std::string normalized;
  for (const auto& [piece, id] : raw) {
    if (id >= 0) {
      ids.push_back(id);
      continue;
    }
    std::string_view p = piece;
    if (nfc_) {
      normalized = nfc(piece);
      p = normalized;
    }
    norm.clear();
    split_added(p, *norm_trie_, parse_special, norm);
    for (const auto& [sub, sid] : norm) {
      if (sid >= 0)
        ids.push_back(sid);
      else
        encode_piece(sub, ids);
    }
  }
  return ids;
}

// ByteLevel pre-tokenizer: optional prefix space, then the GPT-2 split
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// as Oniguruma runs it (leftmost alternative that matches, greedy runs, and the look-ahead that
// leaves the last white-space character of a run for the next word).
void HfTokenizer::encode_piece(std::string_view s, std::vector<int32_t>& ids) const {
  std::string prefixed;
  if (add_prefix_space_ && (s.empty() || s[0] != ' ')) {
    prefixed.reserve(s.size() + 1);
    prefixed += ' ';
    prefixed += s;
    s = prefixed;
  }
  if (!use_regex_) {
    if (!s.empty()) encode_word(s, ids);
    return;
  }
  const size_t n = s.size();
  auto run = [&](size_t i, uint8_t cls) {
    while (i < n) {
      const unsigned char b = static_cast<unsigned char>(s[i]);
      uint32_t cp;
      size_t l;
      if (b < 0x80) {
        cp = b;
        l = 1;
      } else {
        l = decode_at(s, i, cp);
      }
      if (char_class(cp) != cls) break;
      i += l;
    }
    return i;
  };
  size_t i = 0;
  while (i < n) {
    const size_t start = i;
    uint32_t c;
    const size_t l = decode_at(s, i, c);
    const uint8_t cls = char_class(c);
    size_t end = 0;
    if (c == '\'' && i + 1 < n) {
      const char d = s[i + 1];
      if (d == 's' || d == 't' || d == 'm' || d == 'd') {
        end = i + 2;
      } else if (i + 2 < n) {
        const char e = s[i + 2];
        if ((d == 'r' && e == 'e') || (d == 'v' && e == 'e') || (d == 'l' && e == 'l'))
          end = i + 3;
      }
    }
    if (!end && c == ' ' && i + 1 < n) {
      uint32_t c2;
      decode_at(s, i + 1, c2);
      const uint8_t cls2 = char_class(c2);
      if (cls2 != kSpace) end = run(i + 1, cls2);
    }
    if (!end && cls != kSpace) end = run(i, cls);
    if (!end) {
      // \s+(?!\S) backs off one character unless the run ends the text; \s+ takes a run of one.
      size_t j = i, last = i, count = 0;
      while (j < n) {
        uint32_t cp;
        const size_t lj = decode_at(s, j, cp);
        if (!is_white_space(cp)) break;
        last = j;
        j += lj;
        ++count;
      }
      end = (j == n || count == 1) ? j : last;
    }
    (void)l;
    encode_word(s.substr(start, end - start), ids);
    i = end;
  }
}

void HfTokenizer::encode_word(std::string_view word, std::vector<int32_t>& ids) const {
  constexpr size_t kMaxCachedWord = 256, kCacheCapacity = 1 << 17;
  if (word.size() == 1) {  // one byte: no merge can apply
    const int32_t id = byte_id_[static_cast<unsigned char>(word[0])];
    if (id >= 0)
      ids.push_back(id);
    else if (unk_ >= 0)
      ids.push_back(unk_);
    return;
  }
  const bool cacheable = word.size() <= kMaxCachedWord;
  std::string key;
  if (cacheable) {
    key.assign(word);
    std::lock_guard<std::mutex> lock(cache_mu_);
    const auto it = cache_.find(key);
    if (it != cache_.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t before = ids.size();
  bpe(word, ids);
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (cache_.size() < kCacheCapacity)
      cache_.emplace(std::move(key), std::vector<int32_t>(ids.begin() + long(before), ids.end()));
  }
}

// `tokenizers`' BPE::merge_word + Word::merge_all without dropout.
void HfTokenizer::bpe(std::string_view word, std::vector<int32_t>& ids) const {
  if (ignore_merges_) {
    const auto it = vocab_bytes_.find(std::string(word));
    if (it != vocab_bytes_.end()) {
      ids.push_back(it->second);
      return;
    }
  }
  struct Sym {
    int32_t c;
    int32_t prev, next;
    int32_t len;
  };
  std::vector<Sym> sym;
  sym.reserve(word.size());
  for (unsigned char b : word) {
    int32_t id = byte_id_[b];
    if (id < 0) {
      if (unk_ < 0) continue;  // `tokenizers` drops a character with no token and no unk
      if (fuse_unk_ && !sym.empty() && sym.back().c == unk_) {
        sym.back().len += 1;
        continue;
      }
      id = unk_;
    }
    const int32_t idx = int32_t(sym.size());
    sym.push_back({id, idx - 1, idx + 1, 1});
  }
  if (sym.empty()) return;
  sym.back().next = -1;

  struct Merge {
    uint32_t rank;
    int32_t pos;
    int32_t new_id;
  };
  // Min-heap on (rank, pos).
  auto later = [](const Merge& a, const Merge& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  };
  auto lookup = [&](int32_t a, int32_t b, uint64_t& v) {
    const auto it = merges_.find((uint64_t(uint32_t(a)) << 32) | uint32_t(b));
    if (it == merges_.end()) return false;
    v = it->second;
    return true;
  };
  std::vector<Merge> heap;
  heap.reserve(sym.size() * 2);
  uint64_t v;
  for (size_t i = 0; i + 1 < sym.size(); ++i) {
    if (lookup(sym[i].c, sym[i + 1].c, v))
      heap.push_back({uint32_t(v >> 32), int32_t(i), int32_t(uint32_t(v))});
  }
  std::make_heap(heap.begin(), heap.end(), later);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const Merge top = heap.back();
    heap.pop_back();
    Sym& cur = sym[size_t(top.pos)];
    if (cur.len == 0 || cur.next == -1) continue;
    const int32_t next_pos = cur.next;
    const Sym right = sym[size_t(next_pos)];
    if (!lookup(cur.c, right.c, v) || int32_t(uint32_t(v)) != top.new_id) continue;
    cur.c = top.new_id;
    cur.len += right.len;
    cur.next = right.next;
    sym[size_t(next_pos)].len = 0;
    if (right.next > -1 && size_t(right.next) < sym.size()) sym[size_t(right.next)].prev = top.pos;
    if (cur.prev >= 0) {
      if (lookup(sym[size_t(cur.prev)].c, cur.c, v)) {
        heap.push_back({uint32_t(v >> 32), cur.prev, int32_t(uint32_t(v))});
        std::push_heap(heap.begin(), heap.end(), later);
      }
    }
    if (cur.next >= 0 && size_t(cur.next) < sym.size()) {
      if (lookup(cur.c, sym[size_t(cur.next)].c, v)) {
        heap.push_back({uint32_t(v >> 32), top.pos, int32_t(uint32_t(v))});
        std::push_heap(heap.begin(), heap.end(), later);
      }
    }
  }
  for (const Sym& s : sym)
    if (s.len != 0) ids.push_back(s.c);
}

// ------------------------------------------------------------------------------- decode

std::string HfTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (id >= 0 && size_t(id) < id_bytes_.size()) bytes += id_bytes_[size_t(id)];
  }
  return utf8_lossy(bytes);
}

const std::string& HfTokenizer::token_bytes(int32_t id) const {
  static const std::string none;
  return id >= 0 && size_t(id) < id_bytes_.size() ? id_bytes_[size_t(id)] : none;
}

std::string HfTokenizer::piece(int32_t id) const {
  if (id < 0 || size_t(id) >= id_piece_.size())
    fail("[tokenizer] ", path_, ": token id ", id, " is outside the vocabulary (",
         id_piece_.size(), " ids)");
  return id_piece_[size_t(id)];
}

int32_t HfTokenizer::token_to_id(const std::string& piece) const {
  const auto it = piece_to_id_.find(piece);
  return it == piece_to_id_.end() ? -1 : it->second;
}

std::string HfTokenizer::kind() const {
  return "hugging face byte-level BPE (" + fs::path(path_).filename().string() + ", " +
         std::to_string(id_piece_.size()) + " ids, " + std::to_string(merges_.size()) +
         " merges)";
}

// ------------------------------------------------------------------------------- load

namespace {

std::string type_of(const json& j) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) return "<no type>";
  return j["type"].get<std::string>();
}

}  // namespace

HfTokenizer::HfTokenizer(const std::string& path) : path_(path) {
  auto bad = [&](const auto&... parts) { fail("[tokenizer] ", path_, ": ", parts...); };
  std::ifstream in(path, std::ios::binary);
  if (!in) bad("cannot open");
  json j;
  try {
    j = json::parse(in);
  } catch (const std::exception& e) {
    bad("not valid JSON: ", e.what());
  }
  if (!j.is_object()) bad("not a JSON object");
  auto get = [&](const json& obj, const char* key) -> const json& {
    static const json null_value;
    const auto it = obj.find(key);
    return it == obj.end() ? null_value : *it;
  };
  auto flag = [&](const json& obj, const char* key, bool dflt, const char* where) {
    const json& v = get(obj, key);
    if (v.is_null()) return dflt;
    if (!v.is_boolean()) bad(where, ".", key, " is not a boolean");
    return v.get<bool>();
  };

  if (!get(j, "model").is_object()) bad("no \"model\": not a Hugging Face tokenizer.json");
  if (!get(j, "truncation").is_null())
    bad("truncation is set: not implemented (it would cut encodings)");
  if (!get(j, "padding").is_null()) bad("padding is set: not implemented");

  // normalizer
  std::function<void(const json&)> normalizer = [&](const json& n) {
    if (n.is_null()) return;
    const std::string t = type_of(n);
    if (t == "NFC") {
      nfc_ = true;
    } else if (t == "Sequence") {
      const json& list = get(n, "normalizers");
      if (!list.is_array()) bad("normalizer Sequence without a normalizers list");
      for (const json& x : list) normalizer(x);
    } else {
      bad("normalizer type ", t, " is not implemented (only NFC and Sequence of NFC)");
    }
  };
  normalizer(get(j, "normalizer"));

  // pre-tokenizer
  const json* bl = nullptr;
  {
    const json& p = get(j, "pre_tokenizer");
    const std::string t = type_of(p);
    if (t == "ByteLevel") {
      bl = &p;
    } else if (t == "Sequence") {
      const json& list = get(p, "pretokenizers");
      if (!list.is_array() || list.size() != 1 || type_of(list[0]) != "ByteLevel")
        bad("pre_tokenizer Sequence is implemented only as one ByteLevel, got ", list.dump());
      bl = &list[0];
    } else {
      bad("pre_tokenizer type ", p.is_null() ? "null" : t,
          " is not implemented (only ByteLevel, or a Sequence of one ByteLevel)");
    }
    if (get(*bl, "add_prefix_space").is_null()) bad("pre_tokenizer ByteLevel lacks add_prefix_space");
    add_prefix_space_ = flag(*bl, "add_prefix_space", false, "pre_tokenizer");
    use_regex_ = flag(*bl, "use_regex", true, "pre_tokenizer");
  }

  // decoder and post-processor
  {
    const json& d = get(j, "decoder");
    const std::string t = type_of(d);
    bool ok = t == "ByteLevel";
    if (t == "Sequence") {
      const json& list = get(d, "decoders");
      ok = list.is_array() && list.size() == 1 && type_of(list[0]) == "ByteLevel";
    }
    if (!ok)
      bad("decoder type ", d.is_null() ? "null" : t,
          " is not implemented (only ByteLevel, or a Sequence of one ByteLevel)");
    const json& pp = get(j, "post_processor");
    if (!pp.is_null() && type_of(pp) != "ByteLevel")
      bad("post_processor type ", type_of(pp), " is not implemented (only ByteLevel or null)");
  }

  // model
  const json& m = get(j, "model");
  if (type_of(m) != "BPE") bad("model type ", type_of(m), " is not implemented (only BPE)");
  {
    const json& dropout = get(m, "dropout");
    if (!dropout.is_null() && !(dropout.is_number() && dropout.get<double>() == 0.0))
      bad("model.dropout ", dropout.dump(), " is not implemented (it makes encoding random)");
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      const json& v = get(m, key);
      if (!v.is_null() && !(v.is_string() && v.get<std::string>().empty()))
        bad("model.", key, " ", v.dump(), " is not implemented");
    }
    if (flag(m, "byte_fallback", false, "model")) bad("model.byte_fallback is not implemented");
    ignore_merges_ = flag(m, "ignore_merges", false, "model");
    fuse_unk_ = flag(m, "fuse_unk", false, "model");
  }
  const json& vocab = get(m, "vocab");
  if (!vocab.is_object()) bad("model.vocab is not an object");
  std::unordered_map<std::string, int32_t> vocab_map;  // file spelling -> id
  vocab_map.reserve(vocab.size());
  int64_t max_id = -1;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer()) bad("model.vocab[", it.key(), "] is not an integer");
    const int64_t id = it.value().get<int64_t>();
    if (id < 0 || id > INT32_MAX) bad("model.vocab[", it.key(), "] = ", id, " is out of range");
    vocab_map[it.key()] = int32_t(id);
    max_id = std::max(max_id, id);
  }
  {
    const json& unk = get(m, "unk_token");
    if (!unk.is_null()) {
      if (!unk.is_string()) bad("model.unk_token is not a string");
      const auto it = vocab_map.find(unk.get<std::string>());
      if (it == vocab_map.end()) bad("model.unk_token ", unk.dump(), " is not in the vocabulary");
      unk_ = it->second;
    }
  }

  // added tokens
  const json& added = get(j, "added_tokens");
  if (!added.is_null() && !added.is_array()) bad("added_tokens is not a list");
  if (added.is_array()) {
    for (const json& a : added) {
      AddedToken t;
      if (!get(a, "content").is_string() || !get(a, "id").is_number_integer())
        bad("an added token lacks content or id: ", a.dump());
      t.content = a["content"].get<std::string>();
      const int64_t id = a["id"].get<int64_t>();
      if (id < 0 || id > INT32_MAX) bad("added token id ", id, " is out of range");
      t.id = int32_t(id);
      t.special = flag(a, "special", false, "added_tokens");
      t.normalized = flag(a, "normalized", !t.special, "added_tokens");
      t.lstrip = flag(a, "lstrip", false, "added_tokens");
      t.rstrip = flag(a, "rstrip", false, "added_tokens");
      t.single_word = flag(a, "single_word", false, "added_tokens");
      t.pattern = t.normalized && nfc_ ? nfc(t.content) : t.content;
      max_id = std::max(max_id, id);
      added_.push_back(std::move(t));
    }
  }

  // id tables
  id_piece_.assign(size_t(max_id + 1), std::string());
  for (const auto& [piece, id] : vocab_map) id_piece_[size_t(id)] = piece;
  for (const AddedToken& t : added_) id_piece_[size_t(t.id)] = t.content;
  piece_to_id_ = vocab_map;
  for (const AddedToken& t : added_) piece_to_id_[t.content] = t.id;
  id_bytes_.assign(id_piece_.size(), std::string());
  std::string raw;
  for (size_t id = 0; id < id_piece_.size(); ++id) {
    // The ByteLevel decoder: a token all of byte characters gives those bytes, any other token
    // (an added "<|endoftext|>" is all byte characters, a run of spaces is not) its own UTF-8.
    if (byte_level_to_bytes(id_piece_[id], raw))
      id_bytes_[id] = raw;
    else
      id_bytes_[id] = id_piece_[id];
  }
  for (const auto& [piece, id] : vocab_map) {
    if (byte_level_to_bytes(piece, raw)) vocab_bytes_.emplace(raw, id);
  }
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    append_utf8(ch, byte_map().to_cp[size_t(b)]);
    const auto it = vocab_map.find(ch);
    byte_id_[b] = it == vocab_map.end() ? -1 : it->second;
  }

  // merges: rank = position; the last of duplicate pairs wins, as in a Rust HashMap collect
  const json& merges = get(m, "merges");
  if (!merges.is_array()) bad("model.merges is not a list");
  merges_.reserve(merges.size() * 2);
  uint32_t rank = 0;
  for (const json& mg : merges) {
    std::string a, b;
    if (mg.is_string()) {
      const std::string s = mg.get<std::string>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        bad("merge ", rank, " \"", s, "\" is not two tokens separated by one space");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string()) {
      a = mg[0].get<std::string>();
      b = mg[1].get<std::string>();
    } else {
      bad("merge ", rank, " is neither \"a b\" nor [\"a\", \"b\"]: ", mg.dump());
    }
    const auto ia = vocab_map.find(a), ib = vocab_map.find(b), in = vocab_map.find(a + b);
    if (ia == vocab_map.end()) bad("merge ", rank, ": token ", json(a).dump(), " is not in vocab");
    if (ib == vocab_map.end()) bad("merge ", rank, ": token ", json(b).dump(), " is not in vocab");
    if (in == vocab_map.end())
      bad("merge ", rank, ": merged token ", json(a + b).dump(), " is not in vocab");
    merges_[(uint64_t(uint32_t(ia->second)) << 32) | uint32_t(ib->second)] =
        (uint64_t(rank) << 32) | uint32_t(in->second);
    ++rank;
  }

  // matchers: special tokens first, then the others, in file order; normalized ones go to the
  // matcher that runs on normalized text
  raw_trie_ = std::make_unique<Trie>();
  norm_trie_ = std::make_unique<Trie>();
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t i = 0; i < added_.size(); ++i) {
      const AddedToken& t = added_[i];
      if (t.special != (pass == 0)) continue;
      (t.normalized ? norm_trie_ : raw_trie_)->add(t.pattern, int32_t(i));
    }
  }

  // eos / bos: tokenizer_config.json beside the file when present, else <|endoftext|>-style names
  auto id_of_config_token = [&](const json& v) -> int32_t {
    std::string s;
    if (v.is_string())
      s = v.get<std::string>();
    else if (v.is_object() && v.contains("content") && v["content"].is_string())
      s = v["content"].get<std::string>();
    else
      return -1;
    return token_to_id(s);
  };
  const fs::path config = fs::path(path).parent_path() / "tokenizer_config.json";
  bool have_config = false;
  if (fs::is_regular_file(config)) {
    std::ifstream cin(config);
    json c = json::parse(cin, nullptr, false);
    if (c.is_object()) {
      have_config = true;
      eos_ = id_of_config_token(get(c, "eos_token"));
      bos_ = id_of_config_token(get(c, "bos_token"));
      const json& ab = get(c, "add_bos_token");
      add_bos_ = ab.is_boolean() && ab.get<bool>() && bos_ >= 0;
    }
  }
  if (!have_config) {
    for (const char* name : {"<|endoftext|>", "</s>", "<eos>"}) {
      for (const AddedToken& t : added_)
        if (t.special && t.content == name && eos_ < 0) eos_ = t.id;
    }
  }
}

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& path) {
  if (!fs::is_regular_file(path)) fail("[tokenizer] ", path, ": no such file");
  return std::make_unique<HfTokenizer>(path);
}

}  // namespace dm
