// Hugging Face tokenizer.json, byte-level BPE (GPT-2 / GPT-NeoX family), id for id identical to
// the `tokenizers` library. What it reads, and nothing else (anything else is a load error that
// names the component):
//   normalizer     null | NFC | Sequence of those
//   pre_tokenizer  ByteLevel (add_prefix_space, use_regex with the GPT-2 split) | Sequence of one
//   model          BPE (vocab, merges "a b" or ["a","b"], ignore_merges, unk_token/fuse_unk)
//   decoder        null | ByteLevel | Sequence of one ByteLevel
//   post_processor null | ByteLevel (offsets only: no ids added)
//   added_tokens   special and not; normalized or not; lstrip / rstrip / single_word
// Encoding: invalid UTF-8 in the input is first replaced, one U+FFFD per maximal invalid
// subpart (what Python's bytes.decode("utf-8", "replace") and Rust's from_utf8_lossy do).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "text/tokenizer.h"

namespace dm {

class HfTokenizer final : public Tokenizer {
 public:
  // Throws dm::Error "[tokenizer] <path>: ..." on anything it cannot read exactly.
  explicit HfTokenizer(const std::string& path);
  ~HfTokenizer() override;

  std::string kind() const override;
  int64_t vocab_size() const override { return int64_t(id_piece_.size()); }
  // User text: special tokens in it are plain text.
  std::vector<int32_t> encode(std::string_view text) const override { return encode(text, false); }
  // parse_special = true splits special added tokens (<|endoftext|>) out of the text as ids,
  // like `tokenizers` does by default; false is `encode_special_tokens = True`.
  std::vector<int32_t> encode(std::string_view text, bool parse_special) const;
  // Ids that name no token (the models' padding rows 50277..50279) decode to nothing, as in
  // `tokenizers`. Invalid UTF-8 left by byte tokens becomes U+FFFD (from_utf8_lossy).
  std::string decode(const std::vector<int32_t>& ids) const override;
  std::string piece(int32_t id) const override;  // the token as the file spells it ("Ġworld")
  int32_t eos_id() const override { return eos_; }
  int32_t bos_id() const override { return bos_; }
  bool add_bos() const override { return add_bos_; }

  // The raw bytes one id decodes to (before UTF-8 repair), empty for a hole.
  const std::string& token_bytes(int32_t id) const;
  // -1 when the text is not a token.
  int32_t token_to_id(const std::string& piece) const;

  struct AddedToken {
    std::string content;  // as in the file
    std::string pattern;  // what is matched: content, or NFC(content) when normalized
    int32_t id = 0;
    bool special = false, normalized = false, lstrip = false, rstrip = false, single_word = false;
  };
  struct Trie;  // leftmost-longest matcher over added-token patterns

 private:
  void split_added(std::string_view text, const Trie& trie, bool parse_special,
                   std::vector<std::pair<std::string_view, int32_t>>& out) const;
  void encode_piece(std::string_view normalized, std::vector<int32_t>& ids) const;
  void encode_word(std::string_view word, std::vector<int32_t>& ids) const;
  void bpe(std::string_view word, std::vector<int32_t>& ids) const;

  std::string path_;
  bool nfc_ = false;
  bool add_prefix_space_ = false;
  bool use_regex_ = true;
  bool ignore_merges_ = false;
  int32_t unk_ = -1;
  bool fuse_unk_ = false;
  int32_t eos_ = -1, bos_ = -1;
  bool add_bos_ = false;

  int32_t byte_id_[256];                                   // initial symbol of each byte, -1 none
  std::unordered_map<std::string, int32_t> vocab_bytes_;   // raw bytes of a model token -> id
  std::unordered_map<uint64_t, uint64_t> merges_;          // (a << 32 | b) -> (rank << 32 | new)
  std::unordered_map<std::string, int32_t> piece_to_id_;   // file spelling -> id (added first)
  std::vector<std::string> id_piece_;                      // id -> file spelling
  std::vector<std::string> id_bytes_;                      // id -> decoded bytes
  std::vector<AddedToken> added_;
  std::unique_ptr<Trie> raw_trie_, norm_trie_;
  bool has_added_ = false;

  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& path);

// One U+FFFD per maximal invalid subpart; valid input comes back unchanged.
std::string utf8_lossy(std::string_view s);
// Unicode NFC as `tokenizers` computes it: its tables are Unicode 9.0 (ICU, filtered).
std::string nfc(std::string_view s);

}  // namespace dm
