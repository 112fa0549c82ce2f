// Text <-> token ids: SentencePiece .model files, and Hugging Face tokenizer.json byte-level BPE
// (text/hf_tokenizer.h). The model directory picks the tokenizer by file.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace dm {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::string kind() const = 0;  // "sentencepiece (tokenizer.model, 4096 pieces)"
  virtual int64_t vocab_size() const = 0;
  // User text: special tokens in it are plain text, never control ids.
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  virtual std::string piece(int32_t id) const = 0;  // for `tokenize`-style debugging
  virtual int32_t eos_id() const = 0;               // -1 when none
  virtual int32_t bos_id() const = 0;               // -1 when none
  virtual bool add_bos() const { return false; }    // prepend bos_id() to prompts
};

// Looks in model_dir for tokenizer.json (Hugging Face byte-level BPE), else tokenizer.model
// (SentencePiece) or another *.model file.
// Throws dm::Error "[tokenizer] <dir>: ..." when none is found or it does not load.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& model_dir);
std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& path);

// Turns a stream of ids into text pieces that never split a UTF-8 character: push() returns the
// new complete text since the last call (possibly empty); finish() returns what is left.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok) : tok_(tok) {}
  std::string push(int32_t id);
  std::string finish();

 private:
  const Tokenizer& tok_;
  std::vector<int32_t> ids_;
  size_t emitted_ = 0;  // bytes of decode(ids_) already returned
};

}  // namespace dm
