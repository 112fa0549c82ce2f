// Streaming detokenisation. Decoding id by id breaks characters that a tokenizer spells as
// several byte pieces (SentencePiece byte fallback, byte-level BPE), so the decoder re-decodes
// the ids it holds and only hands out text that later ids cannot change.
#include <string>

#include "text/tokenizer.h"

namespace dm {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
// A character is at most 4 bytes, so at most 3 pending byte pieces can still be completed.
constexpr int kMaxPendingBytes = 3;

// Bytes at the end of `s` that may still change when more ids arrive: an incomplete UTF-8
// sequence (tokenizers that return raw bytes), or the U+FFFD that SentencePiece writes for each
// byte piece of a character not yet complete.
size_t unstable_tail(const std::string& s) {
  // An incomplete multi-byte sequence at the very end.
  size_t n = s.size();
  for (size_t back = 1; back <= 4 && back <= n; ++back) {
    const unsigned char c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    size_t need = 1;
    if ((c & 0xE0) == 0xC0)
      need = 2;
    else if ((c & 0xF0) == 0xE0)
      need = 3;
    else if ((c & 0xF8) == 0xF0)
      need = 4;
    if (need > back) return back;
    break;
  }
  // Trailing replacement characters (at most three can still turn into one real character).
  size_t tail = 0;
  for (int i = 0; i < kMaxPendingBytes; ++i) {
    const size_t end = n - tail;
    if (end < kReplacement.size() ||
        std::string_view(s).substr(end - kReplacement.size(), kReplacement.size()) != kReplacement)
      break;
    tail += kReplacement.size();
  }
  return tail;
}

}  // namespace

std::string StreamDecoder::push(int32_t id) {
  ids_.push_back(id);
  const std::string text = tok_.decode(ids_);
  const size_t stable = text.size() - unstable_tail(text);
  std::string out;
  if (stable > emitted_) {
    out = text.substr(emitted_, stable - emitted_);
    emitted_ = stable;
  }
  // Keep re-decoding cheap: once nothing is pending, only the last id is needed as context
  // (SentencePiece decides a piece's leading space from whether it starts the text).
  if (ids_.size() >= 64 && stable == text.size()) {
    const int32_t last = ids_.back();
    ids_.assign(1, last);
    emitted_ = tok_.decode(ids_).size();
  }
  return out;
}

std::string StreamDecoder::finish() {
  const std::string text = tok_.decode(ids_);
  std::string out = text.size() > emitted_ ? text.substr(emitted_) : std::string();
  ids_.clear();
  emitted_ = 0;
  return out;
}

}  // namespace dm
