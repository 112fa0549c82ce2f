// A Tokenizer for tests: one id per byte, decode() returns the raw bytes (as a byte-level BPE
// detokeniser does), so token counts are byte counts.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "text/tokenizer.h"

namespace dm::test {

class ByteTokenizer : public Tokenizer {
 public:
  std::string kind() const override { return "bytes"; }
  int64_t vocab_size() const override { return 256; }
  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> ids;
    for (unsigned char c : text) ids.push_back(c);
    return ids;
  }
  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string s;
    for (int32_t id : ids) s += char(id);
    return s;
  }
  std::string piece(int32_t id) const override { return std::string(1, char(id)); }
  int32_t eos_id() const override { return -1; }
  int32_t bos_id() const override { return -1; }
};

}  // namespace dm::test
