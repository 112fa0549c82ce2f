// Tokenizer over a SentencePiece .model file (libsentencepiece), and the model-directory lookup
// that picks a tokenizer by the files present.
#include <sentencepiece_processor.h>

#include <algorithm>
#include <filesystem>

#include "core/error.h"
#include "text/hf_tokenizer.h"
#include "text/tokenizer.h"

namespace dm {
namespace {

namespace fs = std::filesystem;

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& path) : path_(path) {
    const auto status = sp_.Load(path);
    if (!status.ok()) fail("[tokenizer] ", path, ": ", status.ToString());
    size_ = sp_.GetPieceSize();
    if (size_ <= 0) fail("[tokenizer] ", path, ": the model has no pieces");
  }

  std::string kind() const override {
    return "sentencepiece (" + fs::path(path_).filename().string() + ", " + std::to_string(size_) +
           " pieces)";
  }
  int64_t vocab_size() const override { return size_; }

  // SentencePiece's plain Encode matches user-defined symbols but never control symbols, so
  // "<s>" typed by a user stays text; only add_bos() inserts the control id.
  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int> ids;
    const auto status = sp_.Encode(absl::string_view(text.data(), text.size()), &ids);
    if (!status.ok()) fail("[tokenizer] ", path_, ": encode: ", status.ToString());
    return {ids.begin(), ids.end()};
  }

  std::string decode(const std::vector<int32_t>& ids) const override {
    std::vector<int> in;
    in.reserve(ids.size());
    for (int32_t id : ids) {
      check_id(id);
      in.push_back(id);
    }
    std::string text;
    const auto status = sp_.Decode(in, &text);
    if (!status.ok()) fail("[tokenizer] ", path_, ": decode: ", status.ToString());
    return text;
  }

  std::string piece(int32_t id) const override {
    check_id(id);
    return sp_.IdToPiece(id);
  }
  int32_t eos_id() const override { return sp_.eos_id(); }
  int32_t bos_id() const override { return sp_.bos_id(); }

 private:
  void check_id(int32_t id) const {
    if (id < 0 || id >= size_)
      fail("[tokenizer] ", path_, ": token id ", id, " is outside the vocabulary (", size_,
           " pieces)");
  }

  std::string path_;
  sentencepiece::SentencePieceProcessor sp_;
  int64_t size_ = 0;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& path) {
  if (!fs::is_regular_file(path)) fail("[tokenizer] ", path, ": no such file");
  return std::make_unique<SentencePieceTokenizer>(path);
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& model_dir) {
  std::error_code ec;
  if (!fs::is_directory(model_dir, ec)) fail("[tokenizer] ", model_dir, ": no such directory");
  const fs::path dir(model_dir);
  // A Hugging Face tokenizer.json describes the whole pipeline (added tokens included): it wins.
  if (fs::is_regular_file(dir / "tokenizer.json")) {
    return load_hf_tokenizer((dir / "tokenizer.json").string());
  }
  if (fs::is_regular_file(dir / "tokenizer.model")) {
    return load_sentencepiece((dir / "tokenizer.model").string());
  }
  std::vector<fs::path> models;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.is_regular_file() && entry.path().extension() == ".model")
      models.push_back(entry.path());
  }
  if (models.size() == 1) return load_sentencepiece(models[0].string());
  if (models.size() > 1) {
    std::sort(models.begin(), models.end());
    fail("[tokenizer] ", model_dir, ": several .model files (", models[0].filename().string(), ", ",
         models[1].filename().string(), ", ...) and no tokenizer.model to pick");
  }
  fail("[tokenizer] ", model_dir,
       ": no tokenizer.json, tokenizer.model or other SentencePiece .model file");
}

}  // namespace dm
