// The executor on the CPU backend against Hugging Face transformers (eager, fp32) and the
// independent PyTorch DeciMamba reference: logits, per-layer hidden states, recurrent states,
// greedy tokens and kept indices. Fixtures: tools/reference/make_fixtures.py.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <sstream>
#include <cstring>

#include "backend/backend.h"
#include "fixture_util.h"
#include "model/executor.h"
#include "text/sampler.h"

namespace dm {
namespace {

using test::as_floats;
using test::as_ints;
using test::rel_error;

constexpr double kLogitTol = 1e-4;  // fp32 vs fp32: only summation order differs

std::vector<float> download(Backend& be, const Tensor& t) {
  DM_ASSERT(t.dtype == DType::F32);
  std::vector<float> out(size_t(t.numel()));
  std::vector<float> row(size_t(t.cols));
  for (int64_t r = 0; r < t.rows; ++r) {
    be.download(*t.buf, t.offset + size_t(r * t.row_stride) * 4, row.data(), row.size() * 4);
    std::copy(row.begin(), row.end(), out.begin() + r * t.cols);
  }
  return out;
}

std::vector<int32_t> download_ints(Backend& be, const Tensor& t) {
  std::vector<int32_t> out(size_t(t.numel()));
  be.download(*t.buf, t.offset, out.data(), out.size() * 4);
  return out;
}

// Records the residual stream leaving each block and the kept indices.
struct RecordingTap : PrefillTap {
  explicit RecordingTap(Backend& be) : be(be) {}
  void on_layer(int layer, const Tensor& residual_in, const Tensor& mixer_out) override {
    auto a = download(be, residual_in), b = download(be, mixer_out);
    for (size_t i = 0; i < a.size(); ++i) a[i] += b[i];
    layer_out[layer] = a;
  }
  void on_kept(int layer, const Tensor& idx) override { kept[layer] = download_ints(be, idx); }
  Backend& be;
  std::map<int, std::vector<float>> layer_out;
  std::map<int, std::vector<int32_t>> kept;
};

struct Fixture {
  std::unique_ptr<Model> model;
  std::unique_ptr<SafeTensorsFile> ref;
  const HostTensor& get(const std::string& name) const {
    auto it = ref->tensors().find(name);
    if (it == ref->tensors().end()) throw Error("fixture tensor missing: " + name);
    return it->second;
  }
  bool has(const std::string& name) const { return ref->tensors().count(name) != 0; }
  std::string meta(const std::string& key) const {
    auto it = ref->metadata().find(key);
    return it == ref->metadata().end() ? "" : it->second;
  }
};

Fixture open_fixture(const std::string& dir) {
  Fixture f;
  f.model = load_model(dir);
  f.ref = SafeTensorsFile::open(dir + "/reference.safetensors");
  return f;
}

// The conv windows and SSM states of every layer against `<prefix>conv_state.<l>` etc.
void expect_states(const Fixture& fx, const SequenceState& state, const std::string& prefix) {
  const auto saved = state.save();
  const auto& c = fx.model->config;
  const size_t conv_n = size_t(c.d_inner * c.d_conv), ssm_n = size_t(c.d_inner * c.d_state);
  for (int l = 0; l < c.n_layer; ++l) {
    const auto conv = as_floats(fx.get(prefix + "conv_state." + std::to_string(l)));
    const auto ssm = as_floats(fx.get(prefix + "ssm_state." + std::to_string(l)));
    EXPECT_LE(rel_error(&saved[l * conv_n], conv.data(), conv_n), kLogitTol)
        << fx.model->dir << " " << prefix << "conv state, layer " << l;
    EXPECT_LE(rel_error(&saved[c.n_layer * conv_n + l * ssm_n], ssm.data(), ssm_n), kLogitTol)
        << fx.model->dir << " " << prefix << "ssm state, layer " << l;
  }
}

class ExecutorFixture : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam().empty()) GTEST_SKIP() << "no fixtures under " << test::data_dir() << "/models";
    fx = open_fixture(GetParam());
    backend = create_backend("cpu");
  }
  Fixture fx;
  std::unique_ptr<Backend> backend;
};

TEST_P(ExecutorFixture, FullForwardLogitsAndHiddenStates) {
  Executor ex(*backend, *fx.model);
  const auto prompt = as_ints(fx.get("prompt_ids"));
  const int64_t L = int64_t(prompt.size()), V = fx.model->config.padded_vocab;
  auto state = ex.new_state();
  RecordingTap tap(*backend);
  PrefillOptions opts;
  opts.n_logits = L;
  opts.tap = &tap;
  const auto logits = ex.prefill(prompt, *state, opts);
  const auto ref = as_floats(fx.get("logits"));
  ASSERT_EQ(logits.size(), size_t(L * V));
  EXPECT_LE(rel_error(logits, ref), kLogitTol) << GetParam();
  for (int64_t t = 0; t < L; ++t)
    ASSERT_EQ(argmax(&logits[size_t(t * V)], V), argmax(&ref[size_t(t * V)], V))
        << GetParam() << " position " << t;
  for (int l = 0; l < fx.model->config.n_layer; ++l) {
    const auto want = as_floats(fx.get("hidden." + std::to_string(l)));
    EXPECT_LE(rel_error(tap.layer_out.at(l), want), kLogitTol) << GetParam() << " layer " << l;
  }
  expect_states(fx, *state, "");
}

TEST_P(ExecutorFixture, ShortPromptPadsTheConvWindow) {
  // 3 tokens < d_conv: the conv state must be left-padded with zeros as in transformers.
  Executor ex(*backend, *fx.model);
  const auto prompt = as_ints(fx.get("short.prompt_ids"));
  auto state = ex.new_state();
  PrefillOptions opts;
  opts.n_logits = int64_t(prompt.size());
  const auto logits = ex.prefill(prompt, *state, opts);
  EXPECT_LE(rel_error(logits, as_floats(fx.get("short.logits"))), kLogitTol) << GetParam();
  expect_states(fx, *state, "short.");
}

TEST_P(ExecutorFixture, GreedyDecodeMatches) {
  Executor ex(*backend, *fx.model);
  const auto prompt = as_ints(fx.get("prompt_ids"));
  const auto want_ids = as_ints(fx.get("greedy_ids"));
  const auto want_logits = as_floats(fx.get("greedy_logits"));
  const int64_t V = fx.model->config.padded_vocab;
  auto state = ex.new_state();
  auto logits = ex.prefill(prompt, *state);
  for (size_t i = 0; i < want_ids.size(); ++i) {
    EXPECT_LE(rel_error(logits.data(), &want_logits[i * V], size_t(V)), kLogitTol)
        << GetParam() << " step " << i;
    const int32_t tok = argmax(logits.data(), V);
    ASSERT_EQ(tok, want_ids[i]) << GetParam() << " greedy token " << i;
    logits = ex.step(tok, *state);
  }
}

DecimationConfig fixture_decimation(const Fixture& fx) {
  DecimationConfig d;
  d.enabled = true;
  std::stringstream ss(fx.meta("deci.layers"));
  for (std::string part; std::getline(ss, part, ',');) d.layers.push_back(std::stoi(part));
  d.L_base = std::stod(fx.meta("deci.L_base"));
  d.beta = std::stod(fx.meta("deci.beta"));
  d.min_seq_len = std::stoll(fx.meta("deci.min_seq_len"));
  return d;
}

TEST_P(ExecutorFixture, DeciMambaMatchesTheIndependentReference) {
  if (!fx.has("deci.prompt_ids")) GTEST_SKIP() << "fixture has no DeciMamba reference";
  const DecimationConfig deci = fixture_decimation(fx);
  Executor ex(*backend, *fx.model, deci);
  const auto prompt = as_ints(fx.get("deci.prompt_ids"));
  const int64_t V = fx.model->config.padded_vocab;
  const int64_t r = std::stoll(fx.meta("deci.protect_tail"));
  auto state = ex.new_state();
  RecordingTap tap(*backend);
  PrefillOptions opts;
  opts.n_logits = 1;
  opts.protect_tail = r;
  opts.tap = &tap;
  auto logits = ex.prefill(prompt, *state, opts);
  for (int l : deci.layers) {
    const auto want = as_ints(fx.get("deci.kept." + std::to_string(l)));
    ASSERT_TRUE(tap.kept.count(l)) << GetParam() << ": layer " << l << " did not decimate";
    EXPECT_EQ(tap.kept.at(l), want) << GetParam() << " kept indices, layer " << l;
  }
  EXPECT_LE(rel_error(logits, as_floats(fx.get("deci.logits"))), kLogitTol) << GetParam();
  // Conv windows come from each layer's input before its own decimation; SSM states from the
  // scan over the kept tokens.
  expect_states(fx, *state, "deci.");
  for (int32_t want : as_ints(fx.get("deci.greedy_ids"))) {
    const int32_t tok = argmax(logits.data(), V);
    ASSERT_EQ(tok, want) << GetParam() << " DeciMamba greedy token";
    logits = ex.step(tok, *state);
  }
}

TEST_P(ExecutorFixture, DeciMambaWithShortPromptIsBitEqualToVanilla) {
  const auto prompt = as_ints(fx.get("prompt_ids"));
  DecimationConfig deci;
  deci.enabled = true;
  for (int l = 0; l < fx.model->config.n_layer; ++l) deci.layers.push_back(l);
  deci.L_base = double(prompt.size());  // L − r ≤ K at every layer: nothing is dropped
  deci.beta = 1.0;
  Executor vanilla(*backend, *fx.model), deci_ex(*backend, *fx.model, deci);
  auto s1 = vanilla.new_state(), s2 = deci_ex.new_state();
  auto a = vanilla.prefill(prompt, *s1), b = deci_ex.prefill(prompt, *s2);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << GetParam();
  EXPECT_EQ(s1->save(), s2->save()) << GetParam();
}

std::vector<std::string> params() {
  auto m = test::fixture_models();
  if (m.empty()) m.push_back("");  // one skipped instance says why
  return m;
}

INSTANTIATE_TEST_SUITE_P(Models, ExecutorFixture, ::testing::ValuesIn(params()),
                         [](const auto& info) {
                           std::string n = std::filesystem::path(info.param).filename().string();
                           for (char& ch : n)
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n.empty() ? std::string("none") : n;
                         });

}  // namespace
}  // namespace dm
