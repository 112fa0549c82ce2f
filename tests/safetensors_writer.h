// A tiny safetensors writer for tests: builds well-formed files the way the safetensors library
// does (header padded with spaces to 8 bytes, tensors packed in the order given: put wider
// dtypes first to keep every tensor aligned, as the library does), and lets a
// test break any part of one (raw header, header length, truncation) to exercise the reader's
// error paths. Also a self-deleting temp directory and float → bytes helpers.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace dm::test {

struct TensorSpec {
  std::string name;
  std::string dtype;  // "F32", "F16", "BF16", "I32" — or anything, for bad cases
  std::vector<int64_t> shape;
  std::string bytes;  // raw little-endian element bytes
};

struct WriteOptions {
  std::map<std::string, std::string> metadata;  // "__metadata__"; omitted when empty
  std::optional<std::string> raw_header;        // written verbatim instead of the generated one
  std::optional<uint64_t> header_len;           // the 8-byte prefix, instead of the true length
  bool pad_header = true;                       // pad the header to 8 bytes as safetensors does
  std::optional<size_t> truncate_to;            // cut the finished file to this many bytes

  // Chainable setters: WriteOptions().truncated(20).
  WriteOptions& with_metadata(std::map<std::string, std::string> m) {
    metadata = std::move(m);
    return *this;
  }
  WriteOptions& with_raw_header(std::string h) {
    raw_header = std::move(h);
    return *this;
  }
  WriteOptions& with_header_len(uint64_t n) {
    header_len = n;
    return *this;
  }
  WriteOptions& unpadded() {
    pad_header = false;
    return *this;
  }
  WriteOptions& truncated(size_t n) {
    truncate_to = n;
    return *this;
  }
};

inline std::string json_quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// The header JSON the safetensors library would write for these tensors, packed in order.
inline std::string safetensors_header(const std::vector<TensorSpec>& tensors,
                                      const std::map<std::string, std::string>& metadata = {}) {
  std::string h = "{";
  bool first = true;
  if (!metadata.empty()) {
    h += "\"__metadata__\":{";
    bool f = true;
    for (const auto& [k, v] : metadata) {
      if (!f) h += ",";
      h += json_quote(k) + ":" + json_quote(v);
      f = false;
    }
    h += "}";
    first = false;
  }
  size_t offset = 0;
  for (const TensorSpec& t : tensors) {
    if (!first) h += ",";
    first = false;
    h += json_quote(t.name) + ":{\"dtype\":" + json_quote(t.dtype) + ",\"shape\":[";
    for (size_t i = 0; i < t.shape.size(); ++i) {
      if (i) h += ",";
      h += std::to_string(t.shape[i]);
    }
    h += "],\"data_offsets\":[" + std::to_string(offset) + "," +
         std::to_string(offset + t.bytes.size()) + "]}";
    offset += t.bytes.size();
  }
  return h + "}";
}

// The whole file as bytes.
inline std::string safetensors_bytes(const std::vector<TensorSpec>& tensors,
                                     const WriteOptions& opt = {}) {
  std::string header = opt.raw_header ? *opt.raw_header : safetensors_header(tensors, opt.metadata);
  if (opt.pad_header)
    while (header.size() % 8 != 0) header += ' ';
  const uint64_t len = opt.header_len ? *opt.header_len : header.size();
  std::string out;
  for (int i = 0; i < 8; ++i) out += char((len >> (8 * i)) & 0xff);
  out += header;
  for (const TensorSpec& t : tensors) out += t.bytes;
  if (opt.truncate_to && *opt.truncate_to < out.size()) out.resize(*opt.truncate_to);
  return out;
}

inline void write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
  if (!f) throw std::runtime_error("test: cannot write " + path.string());
}

inline void write_safetensors(const std::filesystem::path& path,
                              const std::vector<TensorSpec>& tensors,
                              const WriteOptions& opt = {}) {
  write_file(path, safetensors_bytes(tensors, opt));
}

// Element bytes of a float array stored as F32, F16 or BF16 (rounded as torch rounds).
inline std::string float_bytes(const std::vector<float>& v, DType t) {
  std::string out;
  for (float x : v) {
    if (t == DType::F32) {
      out.append(reinterpret_cast<const char*>(&x), 4);
    } else {
      const uint16_t h = t == DType::F16 ? f32_to_f16(x) : f32_to_bf16(x);
      out.append(reinterpret_cast<const char*>(&h), 2);
    }
  }
  return out;
}

inline std::string i32_bytes(const std::vector<int32_t>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}

inline TensorSpec float_tensor(std::string name, std::vector<int64_t> shape,
                               const std::vector<float>& values, DType t = DType::F32) {
  return {std::move(name), std::string(dtype_name(t)), std::move(shape), float_bytes(values, t)};
}

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/dm_test_XXXXXX";
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("test: mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace dm::test
