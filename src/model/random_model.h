// Random-weight models of the published Mamba-1 shapes (130m … 2.8b), for benchmarks: a Model
// whose tensors live in host memory instead of a mapped file. Timing only: the weights are noise.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/weights.h"

namespace dm {

struct RandomModel {
  std::vector<std::vector<uint8_t>> storage;       // tensor bytes
  std::vector<std::unique_ptr<HostTensor>> tensors;
  Model model;
};

// shape: "130m", "370m", "790m", "1.4b", "2.8b" (vocab 50280, d_state 16, d_conv 4, expand 2)
// or "tiny" (d_model 64, 2 layers, vocab 512). dtype: F32, F16 or BF16 for the matrices.
std::unique_ptr<RandomModel> make_random_model(const std::string& shape, DType dtype,
                                               uint64_t seed = 1);
std::vector<std::string> random_model_shapes();

// The same tensors for "130m", "370m", "790m", "1.4b" or "2.8b" in fp16 (tied LM head), filled
// from repeated pools of uniform values: faster still than make_random_model, which draws each
// of 2.8b's 2.8e9 values (in parallel). For decode benchmarks.
std::unique_ptr<RandomModel> make_pooled_random_model(const std::string& shape);

// n values uniform in [-1, 1) from an xorshift generator: cheap enough for billions of values.
std::vector<float> uniform_pool(size_t n, uint64_t seed);

}  // namespace dm
