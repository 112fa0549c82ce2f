// End to end on every non-CPU backend (vulkan today, cuda later): the executor on the device
// against the executor on the CPU backend and the fixtures' references, on every fixture model,
// decimation off and on: logits at every position, recurrent states, kept indices, greedy
// tokens. Skips (with the reason) when no device backend or no fixture is present.
//
// Tolerance: relative L2 error 1e-4 on logits and states, the fixtures' own fp32-vs-fp32
// tolerance (only summation order and device exp/log differ; the worst measured on lavapipe
// is 2e-6 against the CPU and the reference).
// Kept indices and greedy tokens must be identical.
// Vulkan runs four times: its default decode layer (VulkanBackend::mamba_block_step's three
// dispatches at the fixtures' widths), "vulkan:block=4" (four: x_proj a GEMV of its own),
// "vulkan:block=0" (the composed layer, which moves each norm to the end of the layer before:
// gemm.gemv_norm_tail, as wide models run) and "vulkan:block=0:tail=0" (the composition with
// the norm in front), through DM_VULKAN_BLOCK_STEP and DM_VULKAN_NORM_TAIL.
// CUDA runs three times: its default decode layer (mamba_block_step's four kernels: the norm
// folded into in_proj, x_proj a GEMV of its own), "cuda:form=3" (x_proj folded into the kernels
// around it where that applies: the fixtures with d_state 16) and "cuda:form=4" (the norm a
// kernel of its own), through DM_CUDA_DECODE_FORM.
#include <gtest/gtest.h>

#include "backend_cache.h"

#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "backend/backend.h"
#include "fixture_util.h"
#include "model/executor.h"
#include "text/sampler.h"

namespace dm {
namespace {

using test::as_floats;
using test::as_ints;
using test::rel_error;

constexpr double kTol = 1e-4;

using test::cached_backend;

std::vector<int32_t> kept_download(Backend& be, const Tensor& idx) {
  std::vector<int32_t> out(size_t(idx.numel()));
  be.download(*idx.buf, idx.offset, out.data(), out.size() * 4);
  return out;
}

struct KeptTap : PrefillTap {
  explicit KeptTap(Backend& be) : be(be) {}
  void on_layer(int, const Tensor&, const Tensor&) override {}
  void on_kept(int layer, const Tensor& idx) override { kept[layer] = kept_download(be, idx); }
  Backend& be;
  std::map<int, std::vector<int32_t>> kept;
};

DecimationConfig fixture_decimation(const SafeTensorsFile& ref) {
  auto meta = [&](const std::string& k) {
    auto it = ref.metadata().find(k);
    if (it == ref.metadata().end()) throw Error("fixture metadata missing: " + k);
    return it->second;
  };
  DecimationConfig d;
  d.enabled = true;
  std::stringstream ss(meta("deci.layers"));
  for (std::string part; std::getline(ss, part, ',');) d.layers.push_back(std::stoi(part));
  d.L_base = std::stod(meta("deci.L_base"));
  d.beta = std::stod(meta("deci.beta"));
  d.min_seq_len = std::stoll(meta("deci.min_seq_len"));
  return d;
}

using Param = std::tuple<std::string, std::string>;  // backend, fixture dir

class BackendOpsE2E : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    const auto& [entry, dir] = GetParam();
    if (entry.empty()) GTEST_SKIP() << "no non-CPU backend available";
    if (dir.empty()) GTEST_SKIP() << "no fixtures under " << test::data_dir() << "/models";
    const std::string be = test::apply_entry_env(entry);  // block=, tail=, form= settings
    model = load_model(dir);
    ref = SafeTensorsFile::open(dir + "/reference.safetensors");
    cpu = create_backend("cpu");
    dev = &cached_backend(be);
    what = entry + " (" + dev->device_name() + ") " + std::filesystem::path(dir).filename().string();
  }
  void TearDown() override {
    test::clear_entry_env();
  }
  const HostTensor& get(const std::string& name) const {
    auto it = ref->tensors().find(name);
    if (it == ref->tensors().end()) throw Error("fixture tensor missing: " + name);
    return it->second;
  }
  bool has(const std::string& name) const { return ref->tensors().count(name) != 0; }

  std::unique_ptr<Model> model;
  std::unique_ptr<SafeTensorsFile> ref;
  std::unique_ptr<Backend> cpu;
  Backend* dev = nullptr;
  std::string what;
};

TEST_P(BackendOpsE2E, PrefillLogitsStatesAndGreedyTokens) {
  const auto prompt = as_ints(get("prompt_ids"));
  const int64_t L = int64_t(prompt.size()), V = model->config.padded_vocab;
  Executor ex_cpu(*cpu, *model), ex_dev(*dev, *model);
  auto s_cpu = ex_cpu.new_state(), s_dev = ex_dev.new_state();
  PrefillOptions opts;
  opts.n_logits = L;
  const auto want = ex_cpu.prefill(prompt, *s_cpu, opts);
  const auto got = ex_dev.prefill(prompt, *s_dev, opts);
  ASSERT_EQ(got.size(), want.size()) << what;
  EXPECT_LE(rel_error(got, want), kTol) << what << ": logits vs CPU, L = " << L;
  EXPECT_LE(rel_error(got, as_floats(get("logits"))), kTol) << what << ": logits vs reference";
  for (int64_t t = 0; t < L; ++t)
    ASSERT_EQ(argmax(&got[size_t(t * V)], V), argmax(&want[size_t(t * V)], V)) << what << " position " << t;
  const auto st_cpu = s_cpu->save(), st_dev = s_dev->save();
  EXPECT_LE(rel_error(st_dev, st_cpu), kTol) << what << ": conv + ssm states after prefill";

  // Greedy decode: the reference's tokens, and logits close to the CPU's at every step.
  auto lg_dev = ex_dev.prefill(prompt, *(s_dev = ex_dev.new_state()));
  auto lg_cpu = ex_cpu.prefill(prompt, *(s_cpu = ex_cpu.new_state()));
  for (int32_t want_tok : as_ints(get("greedy_ids"))) {
    EXPECT_LE(rel_error(lg_dev, lg_cpu), kTol) << what << ": decode logits";
    const int32_t tok = argmax(lg_dev.data(), V);
    ASSERT_EQ(tok, want_tok) << what << ": greedy token";
    lg_dev = ex_dev.step(tok, *s_dev);
    lg_cpu = ex_cpu.step(tok, *s_cpu);
  }
  EXPECT_LE(rel_error(s_dev->save(), s_cpu->save()), kTol) << what << ": states after decode";
}

TEST_P(BackendOpsE2E, DeciMambaKeptIndicesLogitsAndGreedyTokens) {
  if (!has("deci.prompt_ids")) GTEST_SKIP() << "fixture has no DeciMamba reference";
  const DecimationConfig deci = fixture_decimation(*ref);
  const auto prompt = as_ints(get("deci.prompt_ids"));
  const int64_t V = model->config.padded_vocab;
  Executor ex_cpu(*cpu, *model, deci), ex_dev(*dev, *model, deci);
  auto s_cpu = ex_cpu.new_state(), s_dev = ex_dev.new_state();
  KeptTap tap_cpu(*cpu), tap_dev(*dev);
  PrefillOptions o_cpu, o_dev;
  o_cpu.n_logits = o_dev.n_logits = 1;
  o_cpu.protect_tail = o_dev.protect_tail = std::stoll(ref->metadata().at("deci.protect_tail"));
  o_cpu.tap = &tap_cpu;
  o_dev.tap = &tap_dev;
  auto lg_cpu = ex_cpu.prefill(prompt, *s_cpu, o_cpu);
  auto lg_dev = ex_dev.prefill(prompt, *s_dev, o_dev);
  for (int l : deci.layers) {
    ASSERT_TRUE(tap_dev.kept.count(l)) << what << ": layer " << l << " did not decimate";
    EXPECT_EQ(tap_dev.kept.at(l), as_ints(get("deci.kept." + std::to_string(l))))
        << what << ": kept indices, layer " << l;
    EXPECT_EQ(tap_dev.kept.at(l), tap_cpu.kept.at(l)) << what << ": kept indices vs CPU, layer " << l;
  }
  EXPECT_LE(rel_error(lg_dev, lg_cpu), kTol) << what << ": DeciMamba logits vs CPU";
  EXPECT_LE(rel_error(lg_dev, as_floats(get("deci.logits"))), kTol) << what << ": vs reference";
  EXPECT_LE(rel_error(s_dev->save(), s_cpu->save()), kTol) << what << ": states";
  for (int32_t want : as_ints(get("deci.greedy_ids"))) {
    const int32_t tok = argmax(lg_dev.data(), V);
    ASSERT_EQ(tok, want) << what << ": DeciMamba greedy token";
    lg_dev = ex_dev.step(tok, *s_dev);
  }
}

std::vector<Param> params() {
  std::vector<Param> out;
  auto backends = test::device_backends();
  auto models = test::fixture_models();
  if (backends.empty()) backends.push_back("");
  if (models.empty()) models.push_back("");
  for (const auto& b : backends)
    for (const auto& m : models) {
      out.emplace_back(b, m);
      if (b == "vulkan")
        for (const char* form : {":block=4", ":block=0", ":block=0:tail=0"}) out.emplace_back(b + form, m);
      if (b == "cuda") {
        out.emplace_back(b + ":form=3", m);  // x_proj folded away
        out.emplace_back(b + ":form=4", m);  // the norm a kernel of its own
      }
    }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Models, BackendOpsE2E, ::testing::ValuesIn(params()), [](const auto& info) {
  std::string n = std::get<0>(info.param) + "_" + std::filesystem::path(std::get<1>(info.param)).filename().string();
  for (char& ch : n)
    if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
});

}  // namespace
}  // namespace dm
