// The shipped default model (models/default) loads and greedy-generates the golden continuation
// on the CPU backend. The golden ids were produced by the training script's PyTorch model
// (tools/train/logs/run5_samples.json) and agree token for token with the float64 numpy
// implementation in tools/reference/check_fixtures.py.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "model/executor.h"
#include "text/sampler.h"
#include "text/tokenizer.h"
#include "test_paths.h"

namespace dm {
namespace {

const std::string kModelDir = test::source_dir() + "/models/default";
const std::string kSamples = test::source_dir() + "/tools/train/logs/run5_samples.json";

TEST(DefaultModel, GreedyContinuationsMatchTheGoldenTokens) {
  std::ifstream in(kSamples);
  ASSERT_TRUE(in) << "missing " << kSamples;
  const auto samples = nlohmann::json::parse(in);
  ASSERT_GE(samples.size(), 3u);
  auto model = load_model(kModelDir);
  auto tokenizer = load_tokenizer(kModelDir);
  auto backend = create_backend("cpu");
  Executor ex(*backend, *model);
  const int64_t V = model->config.padded_vocab;
  for (const auto& s : samples) {
    const std::string prompt = s.at("prompt");
    const auto prompt_ids = s.at("prompt_ids").get<std::vector<int32_t>>();
    // The runtime's tokenizer encodes the prompt as the training pipeline did.
    EXPECT_EQ(tokenizer->encode(prompt), prompt_ids) << prompt;
    const auto want = s.at("greedy_ids").get<std::vector<int32_t>>();
    auto state = ex.new_state();
    auto logits = ex.prefill(prompt_ids, *state);
    std::vector<int32_t> got;
    for (size_t i = 0; i < want.size(); ++i) {
      got.push_back(argmax(logits.data(), V));
      if (i + 1 < want.size()) logits = ex.step(got.back(), *state);
    }
    EXPECT_EQ(got, want) << "prompt: " << prompt.substr(0, 60);
  }
}

TEST(DefaultModel, GeneratesEnglishWords) {
  // A weak but real check that the text is language, not noise: most generated words are
  // alphabetic and the decoded text is valid UTF-8 without replacement characters.
  auto model = load_model(kModelDir);
  auto tokenizer = load_tokenizer(kModelDir);
  auto backend = create_backend("cpu");
  Executor ex(*backend, *model);
  auto state = ex.new_state();
  auto logits = ex.prefill(tokenizer->encode("In the beginning"), *state);
  std::vector<int32_t> out;
  for (int i = 0; i < 40; ++i) {
    out.push_back(argmax(logits.data(), model->config.padded_vocab));
    logits = ex.step(out.back(), *state);
  }
  const std::string text = tokenizer->decode(out);
  EXPECT_EQ(text.find("\xEF\xBF\xBD"), std::string::npos) << text;
  int words = 0, alpha = 0;
  std::istringstream ws(text);
  for (std::string w; ws >> w; ++words)
    if (std::isalpha(static_cast<unsigned char>(w[0]))) ++alpha;
  EXPECT_GE(words, 15) << text;
  EXPECT_GE(alpha * 10, words * 8) << text;
}

}  // namespace
}  // namespace dm
