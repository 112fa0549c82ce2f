// decimamba tokenize: the ids (and pieces) a text becomes, for debugging prompts.
//   decimamba tokenize [--model DIR | --tokenizer FILE] [--parse-special] [--ids-only] TEXT...
// Without TEXT it reads standard input. One line per token: id, the piece as the tokenizer file
// spells it, and the bytes it stands for (escaped where not printable or not whole UTF-8).
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <memory>

#include "commands.h"
#include "core/error.h"
#include "text/hf_tokenizer.h"
#include "text/tokenizer.h"

namespace dmcli {
namespace {

struct TokenizeCli {
  std::string model_dir = DM_DEFAULT_MODEL_DIR;
  std::string tokenizer_file;
  std::vector<std::string> text;
  bool parse_special = false;
  bool ids_only = false;
};

std::string shown(const std::string& bytes) {
  const std::string valid = dm::utf8_lossy(bytes);
  std::string out;
  if (valid != bytes) {  // part of a character: show the bytes
    for (unsigned char c : bytes) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", c);
      out += buf;
    }
    return out;
  }
  for (unsigned char c : bytes) {
    if (c == '\n')
      out += "\\n";
    else if (c == '\t')
      out += "\\t";
    else if (c == '\r')
      out += "\\r";
    else if (c == '\\')
      out += "\\\\";
    else if (c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", c);
      out += buf;
    } else {
      out += char(c);
    }
  }
  return out;
}

int run(TokenizeCli& c) {
  std::unique_ptr<dm::Tokenizer> tok;
  if (!c.tokenizer_file.empty()) {
    const std::filesystem::path p(c.tokenizer_file);
    tok = p.extension() == ".json" ? dm::load_hf_tokenizer(c.tokenizer_file)
                                   : dm::load_sentencepiece(c.tokenizer_file);
  } else {
    if (!std::filesystem::is_directory(c.model_dir))
      dm::fail("[model] ", c.model_dir, ": no such directory");
    tok = dm::load_tokenizer(c.model_dir);
  }
  std::string text;
  if (c.text.empty()) {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  } else {
    for (size_t i = 0; i < c.text.size(); ++i) text += (i ? " " : "") + c.text[i];
  }
  const auto* hf = dynamic_cast<const dm::HfTokenizer*>(tok.get());
  if (c.parse_special && !hf)
    dm::fail("[tokenize] --parse-special applies to tokenizer.json tokenizers only");
  const std::vector<int32_t> ids = hf ? hf->encode(text, c.parse_special) : tok->encode(text);
  if (c.ids_only) {
    for (size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", i ? " " : "", ids[i]);
    std::printf("\n");
    return 0;
  }
  std::printf("# %s\n", tok->kind().c_str());
  for (int32_t id : ids) {
    const std::string bytes = hf ? hf->token_bytes(id) : tok->decode({id});
    std::printf("%7d  %-20s  \"%s\"\n", id, shown(tok->piece(id)).c_str(), shown(bytes).c_str());
  }
  std::printf("# %zu tokens, %zu bytes%s\n", ids.size(), text.size(),
              c.parse_special ? ", special tokens parsed" : "");
  return 0;
}

}  // namespace

RunFn add_tokenize(CLI::App& app) {
  auto c = std::make_shared<TokenizeCli>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Print the token ids and pieces of a text");
  cmd->add_option("-m,--model", c->model_dir, "Model directory whose tokenizer to use")
      ->capture_default_str();
  cmd->add_option("--tokenizer", c->tokenizer_file,
                  "A tokenizer.json or SentencePiece .model file (instead of --model)");
  cmd->add_flag("--parse-special", c->parse_special,
                "Turn special tokens written in the text (<|endoftext|>) into their ids; by "
                "default they are plain text, as in prompts");
  cmd->add_flag("--ids-only", c->ids_only, "Print only the ids, on one line");
  cmd->add_option("text", c->text, "The text (standard input when absent)");
  return [c] { return run(*c); };
}

}  // namespace dmcli
