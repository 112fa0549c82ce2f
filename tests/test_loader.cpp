// Model loading: config dialects, the safetensors reader (mapping, every malformed case), the
// sharded index, and binding weights to a tiny Mamba-1 layout built here with known values.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>

#include "core/error.h"
#include "model/config.h"
#include "model/safetensors.h"
#include "model/weights.h"
#include "safetensors_writer.h"
#include "test_paths.h"

namespace dm {
namespace {

using test::float_tensor;
using test::TempDir;
using test::TensorSpec;
using test::write_file;
using test::write_safetensors;
using test::WriteOptions;

// The call throws dm::Error with a one-line message that contains every part.
void expect_error(const std::function<void()>& call, const std::vector<std::string>& parts) {
  try {
    call();
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg << "\nlacks: " << p;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "not one line: " << msg;
    return;
  }
  ADD_FAILURE() << "no dm::Error thrown; expected one containing \"" << parts.front() << "\"";
}

// Whether /proc/self/maps lists `p` inside a mapping of the file `path`.
bool mapped_from(const void* p, const std::string& path) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  const auto addr = reinterpret_cast<uintptr_t>(p);
  while (std::getline(maps, line)) {
    uintptr_t lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx", &lo, &hi) != 2) continue;
    const size_t slash = line.find('/');
    if (slash != std::string::npos && line.substr(slash) == path && lo <= addr && addr < hi)
      return true;
  }
  return false;
}

std::vector<float> ramp(size_t n, float start, float step) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = start + step * float(i);
  return v;
}

// ---------------------------------------------------------------------------------------------
// config.json

TEST(LoaderConfig, HfMissingKeysTakeTransformersDefaults) {
  const ModelConfig c = parse_config(R"({"model_type": "mamba", "hidden_size": 64,
                                         "num_hidden_layers": 3})",
                                     "cfg");
  EXPECT_EQ(c.dialect, "hf");
  EXPECT_EQ(c.d_model, 64);
  EXPECT_EQ(c.n_layer, 3);
  EXPECT_EQ(c.vocab_size, 50280);
  EXPECT_EQ(c.padded_vocab, 50280);  // until bind_weights sees the embedding
  EXPECT_EQ(c.d_state, 16);
  EXPECT_EQ(c.expand, 2);
  EXPECT_EQ(c.d_inner, 128);
  EXPECT_EQ(c.d_conv, 4);
  EXPECT_EQ(c.dt_rank, 4);  // "auto" = ceil(64 / 16)
  EXPECT_FALSE(c.proj_bias);
  EXPECT_TRUE(c.conv_bias);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_TRUE(c.residual_in_fp32);
  EXPECT_FLOAT_EQ(c.norm_eps, 1e-5f);
  EXPECT_EQ(c.declared_dtype, "");
  EXPECT_EQ(c.eos_token_id, -1);
}

TEST(LoaderConfig, HfExplicitValues) {
  const ModelConfig c = parse_config(R"({
      "hidden_size": 72, "num_hidden_layers": 5, "vocab_size": 1000, "state_size": 8,
      "expand": 3, "intermediate_size": 200, "conv_kernel": 2, "time_step_rank": "auto",
      "use_bias": true, "use_conv_bias": false, "layer_norm_epsilon": 1e-6,
      "tie_word_embeddings": false, "residual_in_fp32": false, "dtype": "bfloat16",
      "eos_token_id": 7, "bos_token_id": [3, 4], "pad_token_id": null})",
                                     "cfg");
  EXPECT_EQ(c.vocab_size, 1000);
  EXPECT_EQ(c.d_state, 8);
  EXPECT_EQ(c.expand, 3);
  EXPECT_EQ(c.d_inner, 200);  // the saved intermediate_size wins over expand · hidden_size
  EXPECT_EQ(c.d_conv, 2);
  EXPECT_EQ(c.dt_rank, 5);  // ceil(72 / 16), rounds up
  EXPECT_TRUE(c.proj_bias);
  EXPECT_FALSE(c.conv_bias);
  EXPECT_FALSE(c.tie_embeddings);
  EXPECT_FALSE(c.residual_in_fp32);
  EXPECT_FLOAT_EQ(c.norm_eps, 1e-6f);
  EXPECT_EQ(c.declared_dtype, "bfloat16");
  EXPECT_EQ(c.eos_token_id, 7);
  EXPECT_EQ(c.bos_token_id, 3);
}

TEST(LoaderConfig, HfTorchDtypeAndIntegerRank) {
  const ModelConfig c =
      parse_config(R"({"hidden_size": 32, "time_step_rank": 7, "torch_dtype": "float16"})", "cfg");
  EXPECT_EQ(c.n_layer, 32);  // transformers' default
  EXPECT_EQ(c.dt_rank, 7);
  EXPECT_EQ(c.declared_dtype, "float16");
}

TEST(LoaderConfig, MambaSsmDefaultsAndPaddedVocab) {
  // state-spaces/mamba-130m's config.json.
  const ModelConfig c = parse_config(R"({"d_model": 768, "n_layer": 24, "vocab_size": 50277,
      "ssm_cfg": {}, "rms_norm": true, "residual_in_fp32": true, "fused_add_norm": true,
      "pad_vocab_size_multiple": 8})",
                                     "cfg");
  EXPECT_EQ(c.dialect, "mamba_ssm");
  EXPECT_EQ(c.d_model, 768);
  EXPECT_EQ(c.n_layer, 24);
  EXPECT_EQ(c.vocab_size, 50277);
  EXPECT_EQ(c.padded_vocab, 50280);
  EXPECT_EQ(c.d_state, 16);
  EXPECT_EQ(c.d_conv, 4);
  EXPECT_EQ(c.d_inner, 1536);
  EXPECT_EQ(c.dt_rank, 48);
  EXPECT_FALSE(c.proj_bias);
  EXPECT_TRUE(c.conv_bias);
  EXPECT_TRUE(c.tie_embeddings);
}

TEST(LoaderConfig, MambaSsmMissingKeysTakeItsDefaults) {
  const ModelConfig c = parse_config(R"({"n_layer": 2})", "cfg");
  EXPECT_EQ(c.dialect, "mamba_ssm");
  EXPECT_EQ(c.d_model, 2560);
  EXPECT_EQ(c.vocab_size, 50277);
  EXPECT_EQ(c.padded_vocab, 50280);
  EXPECT_EQ(c.dt_rank, 160);
  EXPECT_EQ(c.d_inner, 5120);
  EXPECT_TRUE(c.tie_embeddings);
}

TEST(LoaderConfig, MambaSsmSsmCfgValues) {
  const ModelConfig c = parse_config(R"({"d_model": 40, "n_layer": 1, "vocab_size": 33,
      "pad_vocab_size_multiple": 16, "tie_embeddings": false, "residual_in_fp32": false,
      "ssm_cfg": {"layer": "Mamba1", "d_state": 8, "d_conv": 3, "expand": 3, "dt_rank": 6,
                  "bias": true, "conv_bias": false, "dt_min": 0.001}})",
                                     "cfg");
  EXPECT_EQ(c.padded_vocab, 48);
  EXPECT_EQ(c.d_state, 8);
  EXPECT_EQ(c.d_conv, 3);
  EXPECT_EQ(c.expand, 3);
  EXPECT_EQ(c.d_inner, 120);
  EXPECT_EQ(c.dt_rank, 6);
  EXPECT_TRUE(c.proj_bias);
  EXPECT_FALSE(c.conv_bias);
  EXPECT_FALSE(c.tie_embeddings);
  EXPECT_FALSE(c.residual_in_fp32);
}

TEST(LoaderConfig, MalformedConfigs) {
  auto parse = [](const char* text) { return [text] { parse_config(text, "dir/config.json"); }; };
  expect_error(parse(R"({"hidden_size": 64,)"),
               {"[config] dir/config.json", "invalid JSON", "line 1"});
  expect_error(parse(R"([1, 2])"), {"dir/config.json", "JSON object"});
  expect_error(parse(R"({"vocab_size": 10})"), {"dir/config.json", "not a Mamba config"});
  expect_error(parse(R"({"d_model": 8, "hidden_size": 8})"), {"dir/config.json", "both"});
  expect_error(parse(R"({"hidden_size": "64"})"),
               {"dir/config.json", "hidden_size must be an integer"});
  expect_error(parse(R"({"hidden_size": 64.0})"),
               {"dir/config.json", "hidden_size must be an integer"});
  expect_error(parse(R"({"hidden_size": 64, "use_bias": 1})"),
               {"dir/config.json", "use_bias must be true or false"});
  expect_error(parse(R"({"hidden_size": 0})"), {"dir/config.json", "hidden_size must be positive"});
  expect_error(parse(R"({"d_model": 8, "n_layer": -2})"), {"n_layer must be positive"});
  expect_error(parse(R"({"d_model": 8, "ssm_cfg": {"d_state": 0}})"),
               {"dir/config.json", "ssm_cfg.d_state must be positive"});
  expect_error(parse(R"({"hidden_size": 8, "time_step_rank": "big"})"),
               {"time_step_rank must be \"auto\" or an integer"});
  expect_error(parse(R"({"d_model": 8, "rms_norm": false})"),
               {"dir/config.json", "LayerNorm models are not supported"});
  expect_error(parse(R"({"d_model": 8, "ssm_cfg": {"layer": "Mamba2"}})"),
               {"dir/config.json", "Mamba2", "only Mamba-1"});
  expect_error(parse(R"({"d_model": 8, "ssm_cfg": []})"), {"ssm_cfg must be an object"});
  expect_error(parse(R"({"model_type": "mamba2", "hidden_size": 8})"),
               {"dir/config.json", "model_type is \"mamba2\""});
  expect_error(parse(R"({"d_model": 8, "pad_vocab_size_multiple": 0})"),
               {"pad_vocab_size_multiple must be positive"});
  expect_error(parse(R"({"hidden_size": 8, "layer_norm_epsilon": -1})"),
               {"epsilon must be a positive"});
}

TEST(LoaderConfig, LoadConfigNamesTheFile) {
  TempDir dir;
  expect_error([&] { load_config(dir / "absent.json"); }, {dir / "absent.json", "cannot open"});
  write_file(dir / "config.json", "{\"d_model\": 8,\n \"n_layer\": }");
  expect_error([&] { load_config(dir / "config.json"); },
               {dir / "config.json", "invalid JSON", "line 2"});
}

// ---------------------------------------------------------------------------------------------
// safetensors

TEST(LoaderSafetensors, ReadsEveryDtypeAndMetadata) {
  TempDir dir;
  const auto a = ramp(6, -1.5f, 0.5f);
  write_safetensors(dir / "t.safetensors",
                    {float_tensor("a", {2, 3}, a, DType::F32),
                     {"ids", "I32", {3}, test::i32_bytes({7, -2, 40000})},
                     float_tensor("h", {2, 2}, {1.f, -2.5f, 0.099975586f, 65504.f}, DType::F16),
                     float_tensor("b", {4}, {1.f, -3.f, 0.15625f, 1e30f}, DType::BF16),
                     float_tensor("empty", {0, 4}, {}, DType::F32)},
                    WriteOptions().with_metadata({{"format", "pt"}}));
  auto f = SafeTensorsFile::open(dir / "t.safetensors");
  ASSERT_EQ(f->tensors().size(), 5u);
  EXPECT_EQ(f->metadata().at("format"), "pt");

  const HostTensor& ta = f->tensors().at("a");
  EXPECT_EQ(ta.dtype, DType::F32);
  EXPECT_EQ(ta.shape_str(), "[2, 3]");
  EXPECT_EQ(ta.numel(), 6);
  EXPECT_EQ(ta.bytes, 24u);
  EXPECT_EQ(ta.file, dir / "t.safetensors");
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(load_as_f32(ta.data, ta.dtype, i), a[i]);

  const HostTensor& ids = f->tensors().at("ids");
  EXPECT_EQ(ids.dtype, DType::I32);
  EXPECT_EQ(static_cast<const int32_t*>(ids.data)[2], 40000);

  const HostTensor& h = f->tensors().at("h");
  EXPECT_EQ(h.dtype, DType::F16);
  EXPECT_EQ(load_as_f32(h.data, h.dtype, 1), -2.5f);
  EXPECT_EQ(load_as_f32(h.data, h.dtype, 2), 0.099975586f);  // exactly representable in f16
  EXPECT_EQ(load_as_f32(h.data, h.dtype, 3), 65504.f);

  const HostTensor& b = f->tensors().at("b");
  EXPECT_EQ(b.dtype, DType::BF16);
  EXPECT_EQ(load_as_f32(b.data, b.dtype, 2), 0.15625f);
  EXPECT_NEAR(load_as_f32(b.data, b.dtype, 3), 1e30f, 1e28f);

  EXPECT_EQ(f->tensors().at("empty").numel(), 0);
  EXPECT_EQ(f->tensors().at("empty").bytes, 0u);
}

TEST(LoaderSafetensors, TensorsAreViewsIntoTheMapping) {
  TempDir dir;
  const TensorSpec x = float_tensor("x", {3}, {1, 2, 3});
  const TensorSpec y = float_tensor("y", {5}, {4, 5, 6, 7, 8});
  const TensorSpec z = float_tensor("z", {2}, {9, 10});
  // Packed x, y, z: y starts 12 bytes after x, z 20 bytes after y.
  write_safetensors(dir / "t.safetensors", {x, y, z});
  auto f = SafeTensorsFile::open(dir / "t.safetensors");
  const auto* px = static_cast<const char*>(f->tensors().at("x").data);
  const auto* py = static_cast<const char*>(f->tensors().at("y").data);
  const auto* pz = static_cast<const char*>(f->tensors().at("z").data);
  EXPECT_EQ(py - px, 12);
  EXPECT_EQ(pz - py, 20);
  // And the address lies in the kernel's mapping of that very file, not in a heap copy.
  EXPECT_TRUE(mapped_from(px, std::filesystem::canonical(dir / "t.safetensors").string()));
  EXPECT_TRUE(mapped_from(pz, std::filesystem::canonical(dir / "t.safetensors").string()));
}

TEST(LoaderSafetensors, UnalignedTensorIsCopiedAligned) {
  TempDir dir;
  // An unpadded header of odd length leaves the F32 data 1 byte off alignment; the F16 then
  // puts the second F32 tensor 2 bytes off even without that.
  std::vector<TensorSpec> ts = {float_tensor("h", {1}, {0.5f}, DType::F16),
                                float_tensor("w", {3}, {1.25f, -2.f, 3.5f})};
  std::string header = test::safetensors_header(ts);
  if (header.size() % 2 == 0) header += ' ';
  write_safetensors(dir / "t.safetensors", ts, WriteOptions().unpadded().with_raw_header(header));
  auto f = SafeTensorsFile::open(dir / "t.safetensors");
  for (const auto& [name, t] : f->tensors())
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % dtype_size(t.dtype), 0u) << name;
  const HostTensor& w = f->tensors().at("w");
  EXPECT_EQ(load_as_f32(w.data, w.dtype, 0), 1.25f);
  EXPECT_EQ(load_as_f32(w.data, w.dtype, 2), 3.5f);
  EXPECT_EQ(load_as_f32(f->tensors().at("h").data, DType::F16, 0), 0.5f);
}

class LoaderSafetensorsBad : public ::testing::Test {
 protected:
  // Writes the file, opens it, and expects an error naming the file and containing `what`.
  void expect_bad(const std::vector<TensorSpec>& ts, const WriteOptions& opt,
                  const std::vector<std::string>& what) {
    write_safetensors(path, ts, opt);
    std::vector<std::string> parts = {"[safetensors] " + path};
    parts.insert(parts.end(), what.begin(), what.end());
    expect_error([&] { SafeTensorsFile::open(path); }, parts);
  }
  // Raw header JSON over `data_bytes` zero bytes of data.
  void expect_bad_header(const std::string& header, size_t data_bytes,
                         const std::vector<std::string>& what) {
    expect_bad({{"pad", "U8", {}, std::string(data_bytes, '\0')}},
               WriteOptions().with_raw_header(header), what);
  }

  TempDir dir;
  std::string path = dir / "model.safetensors";
  std::vector<TensorSpec> good = {float_tensor("a", {2, 2}, {1, 2, 3, 4}),
                                  float_tensor("b", {3}, {5, 6, 7})};
};

TEST_F(LoaderSafetensorsBad, ShorterThanEightBytes) {
  write_file(path, "abc");
  expect_error([&] { SafeTensorsFile::open(path); }, {path, "truncated", "3 bytes"});
  write_file(path, "");
  expect_error([&] { SafeTensorsFile::open(path); }, {path, "truncated", "0 bytes"});
}

TEST_F(LoaderSafetensorsBad, DataCutShort) {
  const size_t full = test::safetensors_bytes(good).size();
  expect_bad(good, WriteOptions().truncated(full - 1),
             {"tensor b", "past the end of the data section"});
}

TEST_F(LoaderSafetensorsBad, HeaderLengthPastTheEnd) {
  expect_bad(good, WriteOptions().with_header_len(1000), {"header length 1000 runs past the end"});
  expect_bad(good, WriteOptions().with_header_len(~0ull), {"runs past the end"});
  // Cut inside the header.
  expect_bad(good, WriteOptions().truncated(20), {"runs past the end"});
}

TEST_F(LoaderSafetensorsBad, BadJsonHeader) {
  expect_bad_header(R"({"a": {"dtype": "F32", )", 0, {"invalid JSON header", "line 1"});
  expect_bad_header(R"([1, 2])", 0, {"not a JSON object"});
  expect_bad_header(R"({"a": 3})", 0, {"tensor a", "needs dtype, shape and data_offsets"});
  expect_bad_header(R"({"a": {"dtype": 1, "shape": [1], "data_offsets": [0, 4]}})", 4,
                    {"tensor a", "dtype is not a string"});
  expect_bad_header(R"({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", 4,
                    {"tensor a", "not a non-negative integer"});
  expect_bad_header(R"({"a": {"dtype": "F32", "shape": 4, "data_offsets": [0, 16]}})", 16,
                    {"tensor a", "shape is not an array"});
  expect_bad_header(R"({"__metadata__": {"format": 1}})", 0, {"__metadata__", "not a string"});
  expect_bad_header(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                        "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                    8, {"tensor a appears twice"});
}

TEST_F(LoaderSafetensorsBad, OffsetsNotAPairOfIntegers) {
  for (const char* off : {"[0]", "[0, 4, 8]", "[0, 4.0]", "[-4, 0]", "\"0-4\"", "[0, \"4\"]"})
    expect_bad_header(
        std::string(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": )") + off + "}}", 4,
        {"tensor a", "is not [begin, end]"});
}

TEST_F(LoaderSafetensorsBad, OffsetsOutOfRange) {
  expect_bad_header(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})", 12,
                    {"tensor a", "run past the end of the data section (12 bytes"});
  expect_bad_header(R"({"a": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}})", 12,
                    {"tensor a", "begin > end"});
}

TEST_F(LoaderSafetensorsBad, OverlappingOffsets) {
  expect_bad_header(R"({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]},
                        "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})",
                    16, {"tensors a [0, 12) and b [8, 16) overlap"});
  // Listed in the other order in the header, and one inside the other.
  expect_bad_header(R"({"x": {"dtype": "F16", "shape": [2], "data_offsets": [4, 8]},
                        "y": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})",
                    16, {"overlap", "x", "y"});
}

TEST_F(LoaderSafetensorsBad, SizeNotShapeTimesDtype) {
  expect_bad_header(R"({"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}})", 12,
                    {"tensor a", "size mismatch", "12 bytes", "needs 4 x 4"});
  expect_bad({{"w", "BF16", {3}, std::string(4, '\0')}}, {}, {"tensor w", "size mismatch"});
  expect_bad_header(
      R"({"a": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})", 0,
      {"tensor a", "overflows"});
}

TEST_F(LoaderSafetensorsBad, UnsupportedDtype) {
  expect_bad({{"w", "F64", {2}, std::string(16, '\0')}}, {},
             {"unsupported dtype F64 for tensor w"});
  expect_bad({{"q", "I8", {4}, std::string(4, '\0')}}, {}, {"unsupported dtype I8 for tensor q"});
  expect_bad({{"f8", "F8_E4M3", {4}, std::string(4, '\0')}}, {},
             {"unsupported dtype F8_E4M3 for tensor f8"});
}

TEST_F(LoaderSafetensorsBad, MissingFile) {
  expect_error([&] { SafeTensorsFile::open(dir / "none.safetensors"); },
               {"[safetensors] " + dir / "none.safetensors", "cannot open"});
}

// ---------------------------------------------------------------------------------------------
// A tiny Mamba-1 model with known values, in either naming, written as a model directory.

struct Tiny {
  std::string dialect = "hf";
  int64_t d_model = 8, n_layer = 2, vocab = 10, d_state = 4, d_conv = 3, expand = 2, dt_rank = 2;
  int64_t pad_multiple = 8;  // mamba_ssm only
  int64_t emb_rows = -1;     // -1: vocab (hf) or vocab padded (mamba_ssm)
  bool untied = false;
  bool proj_bias = false, conv_bias = true;
  bool conv_3d = true;
  DType dtype = DType::F32;

  int64_t d_inner() const { return expand * d_model; }
  int64_t rows() const {
    if (emb_rows >= 0) return emb_rows;
    return dialect == "hf" ? vocab : (vocab + pad_multiple - 1) / pad_multiple * pad_multiple;
  }

  std::string config_json() const {
    const std::string b = [](bool v) { return v ? "true" : "false"; }(proj_bias);
    const std::string cb = conv_bias ? "true" : "false";
    const std::string tie = untied ? "false" : "true";
    if (dialect == "hf")
      return "{\"model_type\": \"mamba\", \"hidden_size\": " + std::to_string(d_model) +
             ", \"num_hidden_layers\": " + std::to_string(n_layer) +
             ", \"vocab_size\": " + std::to_string(vocab) +
             ", \"state_size\": " + std::to_string(d_state) +
             ", \"conv_kernel\": " + std::to_string(d_conv) +
             ", \"expand\": " + std::to_string(expand) +
             ", \"time_step_rank\": " + std::to_string(dt_rank) + ", \"use_bias\": " + b +
             ", \"use_conv_bias\": " + cb + ", \"tie_word_embeddings\": " + tie + "}";
    return "{\"d_model\": " + std::to_string(d_model) +
           ", \"n_layer\": " + std::to_string(n_layer) +
           ", \"vocab_size\": " + std::to_string(vocab) +
           ", \"pad_vocab_size_multiple\": " + std::to_string(pad_multiple) +
           ", \"tie_embeddings\": " + tie +
           ", \"ssm_cfg\": {\"d_state\": " + std::to_string(d_state) +
           ", \"d_conv\": " + std::to_string(d_conv) + ", \"expand\": " + std::to_string(expand) +
           ", \"dt_rank\": " + std::to_string(dt_rank) + ", \"bias\": " + b +
           ", \"conv_bias\": " + cb + "}}";
  }

  // Element i of every tensor is seed + i/1024: distinct per tensor, exact in F16 and BF16
  // for small i, so a test can tell which bytes it got.
  TensorSpec tensor(const std::string& name, std::vector<int64_t> shape, float seed) const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return float_tensor(name, std::move(shape), ramp(size_t(n), seed, 1.f / 1024), dtype);
  }

  // Element i of a tensor with this seed, as stored in this dtype and read back.
  float value(float seed, size_t i) const {
    const std::string b = test::float_bytes({seed + (1.f / 1024) * float(i)}, dtype);
    return load_as_f32(b.data(), dtype, 0);
  }

  std::vector<TensorSpec> tensors() const {
    const int64_t D = d_model, E = d_inner(), N = d_state, R = dt_rank, K = d_conv;
    std::vector<TensorSpec> t;
    const std::string emb =
        dialect == "hf" ? "backbone.embeddings.weight" : "backbone.embedding.weight";
    t.push_back(tensor(emb, {rows(), D}, 1.f));
    for (int64_t i = 0; i < n_layer; ++i) {
      const std::string p = "backbone.layers." + std::to_string(i) + ".";
      const float s = 2.f + float(i);
      t.push_back(tensor(p + "norm.weight", {D}, s));
      t.push_back(tensor(p + "mixer.in_proj.weight", {2 * E, D}, s + 0.1f));
      if (proj_bias) t.push_back(tensor(p + "mixer.in_proj.bias", {2 * E}, s + 0.2f));
      t.push_back(tensor(p + "mixer.conv1d.weight",
                         conv_3d ? std::vector<int64_t>{E, 1, K} : std::vector<int64_t>{E, K},
                         s + 0.3f));
      if (conv_bias) t.push_back(tensor(p + "mixer.conv1d.bias", {E}, s + 0.4f));
      t.push_back(tensor(p + "mixer.x_proj.weight", {R + 2 * N, E}, s + 0.5f));
      t.push_back(tensor(p + "mixer.dt_proj.weight", {E, R}, s + 0.6f));
      t.push_back(tensor(p + "mixer.dt_proj.bias", {E}, s + 0.7f));
      t.push_back(tensor(p + "mixer.A_log", {E, N}, s + 0.8f));
      t.push_back(tensor(p + "mixer.D", {E}, s + 0.9f));
      t.push_back(tensor(p + "mixer.out_proj.weight", {D, E}, s + 0.95f));
      if (proj_bias) t.push_back(tensor(p + "mixer.out_proj.bias", {D}, s + 0.97f));
    }
    t.push_back(tensor("backbone.norm_f.weight", {D}, 0.5f));
    if (untied) t.push_back(tensor("lm_head.weight", {rows(), D}, -1.f));
    return t;
  }

  // Counted from the formula, independently of the loader's bookkeeping.
  int64_t parameter_count() const {
    const int64_t D = d_model, E = d_inner(), N = d_state, R = dt_rank, K = d_conv;
    const int64_t layer = D + 2 * E * D + (proj_bias ? 2 * E + D : 0) + E * K +
                          (conv_bias ? E : 0) + (R + 2 * N) * E + E * R + E + E * N + E + D * E;
    return rows() * D * (untied ? 2 : 1) + D + n_layer * layer;
  }

  void write(const TempDir& dir, const std::vector<TensorSpec>& ts) const {
    write_file(dir / "config.json", config_json());
    write_safetensors(dir / "model.safetensors", ts);
  }
  void write(const TempDir& dir) const { write(dir, tensors()); }
};

std::vector<TensorSpec> without(std::vector<TensorSpec> ts, const std::string& name) {
  std::erase_if(ts, [&](const TensorSpec& t) { return t.name == name; });
  return ts;
}

std::vector<TensorSpec> replaced(std::vector<TensorSpec> ts, const TensorSpec& t) {
  for (TensorSpec& x : ts)
    if (x.name == t.name) x = t;
  return ts;
}

// ---------------------------------------------------------------------------------------------
// load_model

void expect_bound(const Model& m, const Tiny& t) {
  const ModelWeights& w = m.weights;
  ASSERT_EQ(w.layers.size(), size_t(t.n_layer));
  EXPECT_EQ(w.dtype, t.dtype);
  EXPECT_EQ(w.tied, !t.untied);
  EXPECT_EQ(m.config.padded_vocab, t.rows());
  EXPECT_EQ(m.parameter_count(), t.parameter_count());
  // Spot values: element i of a tensor is seed + i/1024.
  auto at = [](const HostTensor* h, size_t i) { return load_as_f32(h->data, h->dtype, i); };
  const float s1 = 2.f + float(1);  // layer 1's seed, computed as tensors() does
  EXPECT_EQ(at(w.embedding, 3), t.value(1.f, 3));
  EXPECT_EQ(at(w.layers[1].in_proj, 5), t.value(s1 + 0.1f, 5));
  EXPECT_EQ(at(w.layers[1].conv_weight, 4), t.value(s1 + 0.3f, 4));
  EXPECT_EQ(at(w.layers[1].A_log, 9), t.value(s1 + 0.8f, 9));
  EXPECT_EQ(at(w.layers[0].out_proj, 2), t.value(2.f + float(0) + 0.95f, 2));
  EXPECT_EQ(at(w.norm_f, 7), t.value(0.5f, 7));
  EXPECT_EQ(w.layers[1].in_proj->name, "backbone.layers.1.mixer.in_proj.weight");
  EXPECT_EQ(w.layers[0].dt_bias->name, "backbone.layers.0.mixer.dt_proj.bias");
  if (t.untied) {
    EXPECT_NE(w.lm_head, w.embedding);
    EXPECT_EQ(at(w.lm_head, 1), t.value(-1.f, 1));
  } else {
    EXPECT_EQ(w.lm_head, w.embedding);
  }
}

TEST(LoaderModel, HfTiedF32) {
  TempDir dir;
  Tiny t;
  t.write(dir);
  auto m = load_model(dir.path().string());
  EXPECT_EQ(m->config.dialect, "hf");
  expect_bound(*m, t);
  EXPECT_EQ(m->weights.layers[0].in_proj_bias, nullptr);
  EXPECT_NE(m->weights.layers[0].conv_bias, nullptr);
}

TEST(LoaderModel, MambaSsmUntiedPaddedF16) {
  TempDir dir;
  Tiny t;
  t.dialect = "mamba_ssm";
  t.untied = true;
  t.dtype = DType::F16;
  t.write(dir);
  auto m = load_model(dir.path().string());
  EXPECT_EQ(m->config.dialect, "mamba_ssm");
  EXPECT_EQ(m->config.vocab_size, 10);
  EXPECT_EQ(m->weights.embedding->shape[0], 16);  // 10 padded to a multiple of 8
  expect_bound(*m, t);
}

TEST(LoaderModel, Bf16WithBiasesAndSqueezedConv) {
  TempDir dir;
  Tiny t;
  t.dtype = DType::BF16;
  t.proj_bias = true;
  t.conv_bias = false;
  t.conv_3d = false;
  t.write(dir);
  auto m = load_model(dir.path().string());
  expect_bound(*m, t);
  EXPECT_NE(m->weights.layers[1].in_proj_bias, nullptr);
  EXPECT_NE(m->weights.layers[1].out_proj_bias, nullptr);
  EXPECT_EQ(m->weights.layers[1].conv_bias, nullptr);
}

TEST(LoaderModel, HfPaddedVocabComesFromTheEmbedding) {
  TempDir dir;
  Tiny t;
  t.emb_rows = 16;  // vocab_size 10, saved with 16 rows as mamba_ssm conversions are
  t.untied = true;
  t.write(dir);
  auto m = load_model(dir.path().string());
  EXPECT_EQ(m->config.vocab_size, 10);
  EXPECT_EQ(m->config.padded_vocab, 16);
  expect_bound(*m, t);
}

TEST(LoaderModel, ShardedIndex) {
  TempDir dir;
  Tiny t;
  t.untied = true;
  const auto ts = t.tensors();
  std::vector<TensorSpec> s1(ts.begin(), ts.begin() + 7), s2(ts.begin() + 7, ts.end());
  write_safetensors(dir / "model-00001-of-00002.safetensors", s1);
  write_safetensors(dir / "model-00002-of-00002.safetensors", s2);
  std::string map;
  for (const auto& x : ts) {
    const bool first = &x - ts.data() < 7;
    if (!map.empty()) map += ", ";
    map += test::json_quote(x.name) + ": \"model-0000" + (first ? "1" : "2") +
           "-of-00002.safetensors\"";
  }
  write_file(dir / "model.safetensors.index.json",
             "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {" + map + "}}");
  write_file(dir / "config.json", t.config_json());
  auto m = load_model(dir.path().string());
  expect_bound(*m, t);
  EXPECT_EQ(m->weights.embedding->file, dir / "model-00001-of-00002.safetensors");
  EXPECT_EQ(m->weights.lm_head->file, dir / "model-00002-of-00002.safetensors");
}

class LoaderShardsBad : public ::testing::Test {
 protected:
  void SetUp() override {
    write_safetensors(dir / "s1.safetensors",
                      {float_tensor("a", {1}, {1}), float_tensor("b", {1}, {2})});
    write_safetensors(dir / "s2.safetensors", {float_tensor("c", {1}, {3})});
  }
  void index(const std::string& weight_map) {
    write_file(dir / "model.safetensors.index.json", "{\"weight_map\": {" + weight_map + "}}");
  }
  void expect_bad(const std::vector<std::string>& parts) {
    expect_error([&] { WeightFiles::open_dir(dir.path().string()); }, parts);
  }
  TempDir dir;
  std::string ipath = dir / "model.safetensors.index.json";
};

TEST_F(LoaderShardsBad, Valid) {
  index(R"("a": "s1.safetensors", "b": "s1.safetensors", "c": "s2.safetensors")");
  auto w = WeightFiles::open_dir(dir.path().string());
  EXPECT_EQ(w->all().size(), 3u);
  EXPECT_EQ(w->source(), ipath);
  ASSERT_NE(w->find("c"), nullptr);
  EXPECT_EQ(load_as_f32(w->find("c")->data, DType::F32, 0), 3.f);
  EXPECT_EQ(w->find("d"), nullptr);
}

TEST_F(LoaderShardsBad, MissingShardFile) {
  index(R"("a": "s1.safetensors", "b": "s1.safetensors", "c": "s3.safetensors")");
  expect_bad({ipath, "shard s3.safetensors", "tensor c", "does not exist"});
}

TEST_F(LoaderShardsBad, ListedTensorAbsentFromShard) {
  index(R"("a": "s1.safetensors", "b": "s1.safetensors", "c": "s2.safetensors",
            "d": "s2.safetensors")");
  expect_bad({dir / "s2.safetensors", "tensor d", "absent"});
}

TEST_F(LoaderShardsBad, TensorInTwoShards) {
  write_safetensors(dir / "s2.safetensors",
                    {float_tensor("c", {1}, {3}), float_tensor("a", {1}, {9})});
  index(R"("a": "s1.safetensors", "b": "s1.safetensors", "c": "s2.safetensors")");
  expect_bad({ipath, "tensor a is in two shards"});
}

TEST_F(LoaderShardsBad, TensorNotInIndex) {
  index(R"("a": "s1.safetensors", "c": "s2.safetensors")");
  expect_bad({dir / "s1.safetensors", "tensor b", "not listed"});
}

TEST_F(LoaderShardsBad, MalformedIndex) {
  write_file(ipath, "{\"weight_map\": ");
  expect_bad({"[safetensors] " + ipath, "invalid JSON"});
  write_file(ipath, "{\"metadata\": {}}");
  expect_bad({ipath, "weight_map"});
  index(R"("a": "../s1.safetensors")");
  expect_bad({ipath, "not a plain file name"});
}

TEST_F(LoaderShardsBad, NoWeights) {
  TempDir empty;
  expect_error(
      [&] { WeightFiles::open_dir(empty.path().string()); },
      {"[model] " + empty.path().string(), "no model.safetensors or model.safetensors.index.json"});
}

class LoaderModelBad : public ::testing::Test {
 protected:
  void expect_bad(const Tiny& t, const std::vector<TensorSpec>& ts,
                  const std::vector<std::string>& parts) {
    t.write(dir, ts);
    expect_error([&] { load_model(dir.path().string()); }, parts);
  }
  TempDir dir;
  std::string file = dir / "model.safetensors";
};

TEST_F(LoaderModelBad, MissingTensor) {
  Tiny t;
  expect_bad(t, without(t.tensors(), "backbone.layers.1.mixer.A_log"),
             {"[weights] " + file, "missing tensor backbone.layers.1.mixer.A_log"});
  expect_bad(t, without(t.tensors(), "backbone.embeddings.weight"),
             {file, "missing tensor backbone.embeddings.weight"});
  expect_bad(t, without(t.tensors(), "backbone.norm_f.weight"),
             {file, "missing tensor backbone.norm_f.weight"});
  t.proj_bias = true;
  expect_bad(t, without(t.tensors(), "backbone.layers.0.mixer.out_proj.bias"),
             {file, "missing tensor backbone.layers.0.mixer.out_proj.bias"});
}

TEST_F(LoaderModelBad, MisshapenTensor) {
  Tiny t;  // x_proj must be [dt_rank + 2·d_state, d_inner] = [10, 16]
  expect_bad(t,
             replaced(t.tensors(), t.tensor("backbone.layers.0.mixer.x_proj.weight", {12, 16}, 0)),
             {file, "backbone.layers.0.mixer.x_proj.weight has shape [12, 16], expected [10, 16]"});
  expect_bad(
      t, replaced(t.tensors(), t.tensor("backbone.layers.1.mixer.conv1d.weight", {16, 1, 4}, 0)),
      {file, "conv1d.weight has shape [16, 1, 4], expected [16, 1, 3]"});
  expect_bad(t, replaced(t.tensors(), t.tensor("backbone.embeddings.weight", {10, 9}, 0)),
             {file, "backbone.embeddings.weight has shape [10, 9]"});
}

TEST_F(LoaderModelBad, UnsupportedWeightDtype) {
  Tiny t;
  expect_bad(
      t, replaced(t.tensors(), {"backbone.layers.0.mixer.D", "I32", {16}, std::string(64, '\0')}),
      {file, "backbone.layers.0.mixer.D has dtype I32", "F32, F16 or BF16"});
}

TEST_F(LoaderModelBad, ConfigContradictsTensors) {
  Tiny t;
  Tiny more = t;
  more.n_layer = 4;  // files have layers 0..3, config says 2
  expect_bad(t, more.tensors(), {file, "config says 2 layers", "backbone.layers.2."});

  Tiny fewer = t;
  fewer.n_layer = 1;
  expect_bad(t, fewer.tensors(), {file, "missing tensor backbone.layers.1.norm.weight"});

  Tiny ssm = t;
  ssm.dialect = "mamba_ssm";
  ssm.emb_rows = 10;  // vocab 10 must be padded to 16
  expect_bad(ssm, ssm.tensors(), {file, "has 10 rows", "padded to 16"});

  Tiny small = t;
  small.emb_rows = 9;
  expect_bad(small, small.tensors(), {file, "9 rows, fewer than the config's vocab_size 10"});

  Tiny untied = t;
  untied.untied = true;
  expect_bad(untied, without(untied.tensors(), "lm_head.weight"),
             {file, "config says untied embeddings but lm_head.weight is missing"});
  expect_bad(untied, replaced(untied.tensors(), t.tensor("lm_head.weight", {12, 8}, 0)),
             {file, "lm_head.weight has shape [12, 8], expected [10, 8]"});

  Tiny biased = t;
  biased.proj_bias = true;
  expect_bad(t, biased.tensors(), {file, "in_proj.bias is present but the config says use_bias"});

  Tiny big_state = t;
  big_state.d_state = 8;  // files with d_state 8 against a config of 4: x_proj is checked first
  expect_bad(t, big_state.tensors(), {file, "x_proj.weight has shape [18, 16], expected [10, 16]"});
}

TEST_F(LoaderModelBad, UnknownTensors) {
  Tiny t;
  auto ts = t.tensors();
  ts.push_back(float_tensor("backbone.rotary.inv_freq", {2}, {1, 2}));
  ts.push_back(float_tensor("backbone.layers.0.mixer.extra", {2}, {1, 2}));
  expect_bad(t, ts,
             {file, "2 tensor(s) not part of a Mamba-1 model", "backbone.layers.0.mixer.extra",
              "backbone.rotary.inv_freq"});
  auto both = t.tensors();
  both.push_back(t.tensor("backbone.embedding.weight", {10, 8}, 0));
  expect_bad(t, both, {file, "both backbone.embeddings.weight and backbone.embedding.weight"});
}

TEST_F(LoaderModelBad, BadFilesSurfaceThroughLoadModel) {
  Tiny t;
  t.write(dir);
  write_safetensors(file, t.tensors(), WriteOptions().truncated(100));
  expect_error([&] { load_model(dir.path().string()); }, {"[safetensors] " + file});
  write_file(dir / "config.json", "{\"hidden_size\": 8, ");
  expect_error([&] { load_model(dir.path().string()); },
               {"[config] " + dir / "config.json", "invalid JSON"});
}

TEST(LoaderModelDir, MissingDirectoryOrConfig) {
  TempDir dir;
  expect_error([&] { load_model(dir / "nope"); }, {"[model] " + dir / "nope", "no such directory"});
  write_file(dir / "file", "x");
  expect_error([&] { load_model(dir / "file"); }, {"[model] " + dir / "file", "not a directory"});
  expect_error([&] { load_model(dir.path().string()); },
               {"[model] " + dir.path().string(), "no config.json"});
  Tiny().write(dir);
  std::filesystem::remove(dir / "model.safetensors");
  expect_error([&] { load_model(dir.path().string()); },
               {"[model] " + dir.path().string(), "no model.safetensors"});
}

// The reference fixtures written by transformers' save_pretrained (tools/reference/): real
// files, not this file's writer. Checked against their own headers and config.json.
TEST(LoaderFixtures, EveryFixtureModelLoads) {
  const std::filesystem::path root = std::filesystem::path(dm::test::data_dir()) / "models";
  int n = 0;
  if (std::filesystem::exists(root))
    for (const auto& e : std::filesystem::directory_iterator(root)) {
      if (!std::filesystem::exists(e.path() / "config.json")) continue;
      SCOPED_TRACE(e.path().string());
      ++n;
      const auto m = load_model(e.path().string());
      // Every tensor in the files is bound, so the count is the sum over the files' headers.
      int64_t total = 0;
      for (const auto& [name, t] : m->files->all()) total += t->numel();
      EXPECT_EQ(m->parameter_count(), total);
      EXPECT_EQ(m->weights.tied, m->files->find("lm_head.weight") == nullptr);
      EXPECT_EQ(m->weights.embedding->shape[0], m->config.padded_vocab);
      EXPECT_GE(m->config.padded_vocab, m->config.vocab_size);
      const std::string& declared = m->config.declared_dtype;
      if (!declared.empty()) {
        const std::string want = declared == "float32"    ? "F32"
                                 : declared == "float16"  ? "F16"
                                 : declared == "bfloat16" ? "BF16"
                                                          : declared;
        EXPECT_EQ(std::string(dtype_name(m->weights.dtype)), want);
      }
      const HostTensor* in_proj = m->weights.layers.back().in_proj;
      EXPECT_TRUE(mapped_from(in_proj->data, std::filesystem::canonical(in_proj->file).string()));
    }
  if (n == 0) GTEST_SKIP() << "no fixture models under " << root;
}

TEST(LoaderConfig, DecimambaBlockIsTheModelsDefaultDecimation) {
  const ModelConfig none = parse_config(R"({"hidden_size": 64, "num_hidden_layers": 8})", "cfg");
  EXPECT_FALSE(none.default_decimation.has_value());
  const ModelConfig c = parse_config(R"({"hidden_size": 64, "num_hidden_layers": 8,
      "decimamba": {"decimation": {"layers": [4, 5], "L_base": 512, "beta": 0.5,
                                   "min_seq_len": 10}, "note": "free text is ignored"}})",
                                     "cfg");
  ASSERT_TRUE(c.default_decimation.has_value());
  const DecimationConfig& d = *c.default_decimation;
  EXPECT_TRUE(d.enabled);
  EXPECT_EQ(d.layers, (std::vector<int>{4, 5}));
  EXPECT_EQ(d.L_base, 512);
  EXPECT_EQ(d.beta, 0.5);
  EXPECT_EQ(d.min_seq_len, 10);
  // Defaults of the fields left out are the runtime's.
  const ModelConfig m = parse_config(
      R"({"hidden_size": 64, "num_hidden_layers": 8, "decimamba": {"decimation": {"layers": [3]}}})",
      "cfg");
  ASSERT_TRUE(m.default_decimation.has_value());
  EXPECT_EQ(m.default_decimation->L_base, DecimationConfig{}.L_base);
  // A block without "decimation" sets nothing.
  EXPECT_FALSE(parse_config(R"({"hidden_size": 64, "decimamba": {}})", "cfg")
                   .default_decimation.has_value());

  auto parse = [](const char* text) { return [text] { parse_config(text, "dir/config.json"); }; };
  expect_error(parse(R"({"hidden_size": 64, "decimamba": 3})"),
               {"dir/config.json", "decimamba must be an object"});
  expect_error(parse(R"({"hidden_size": 64, "decimamba": {"decimation": {"layers": []}}})"),
               {"dir/config.json", "layers must be a non-empty array"});
  expect_error(parse(R"({"hidden_size": 64, "decimamba": {"decimation": {"layers": ["x"]}}})"),
               {"dir/config.json", "not a layer index"});
  expect_error(parse(R"({"hidden_size": 64, "num_hidden_layers": 8,
                         "decimamba": {"decimation": {"layers": [8]}}})"),
               {"dir/config.json", "decimamba.decimation"});
  expect_error(parse(R"({"hidden_size": 64, "num_hidden_layers": 8,
                         "decimamba": {"decimation": {"layers": [2], "L_base": "many"}}})"),
               {"dir/config.json", "L_base"});
}

}  // namespace
}  // namespace dm
