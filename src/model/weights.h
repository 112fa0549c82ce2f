// The named weights of a Mamba-1 model, checked against its config. Accepts Hugging Face names
// (backbone.embeddings.weight) and mamba_ssm names (backbone.embedding.weight). lm_head.weight
// absent means tied to the embedding; present means untied.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/safetensors.h"

namespace dm {

struct LayerWeights {
  const HostTensor* norm = nullptr;           // [d_model]
  const HostTensor* in_proj = nullptr;        // [2·d_inner, d_model]
  const HostTensor* in_proj_bias = nullptr;   // [2·d_inner] when config.proj_bias
  const HostTensor* conv_weight = nullptr;    // [d_inner, 1, d_conv] (or [d_inner, d_conv])
  const HostTensor* conv_bias = nullptr;      // [d_inner] when config.conv_bias
  const HostTensor* x_proj = nullptr;         // [dt_rank + 2·d_state, d_inner]
  const HostTensor* dt_proj = nullptr;        // [d_inner, dt_rank]
  const HostTensor* dt_bias = nullptr;        // [d_inner]
  const HostTensor* A_log = nullptr;          // [d_inner, d_state]
  const HostTensor* D = nullptr;              // [d_inner]
  const HostTensor* out_proj = nullptr;       // [d_model, d_inner]
  const HostTensor* out_proj_bias = nullptr;  // [d_model] when config.proj_bias
};

struct ModelWeights {
  const HostTensor* embedding = nullptr;  // [padded_vocab, d_model]
  const HostTensor* norm_f = nullptr;     // [d_model]
  const HostTensor* lm_head = nullptr;    // [padded_vocab, d_model]; == embedding when tied
  bool tied = true;
  std::vector<LayerWeights> layers;
  DType dtype = DType::F32;               // dtype of the big matrices (for `info`)
};

// Finds, checks and binds every tensor. Throws dm::Error "[weights] <file>: <what>" for a missing
// or misshapen tensor, an unsupported dtype, or a config that contradicts the tensors.
// (config.padded_vocab is taken from the embedding when the config leaves it open.)
ModelWeights bind_weights(const WeightFiles& files, ModelConfig& config);

// A model directory opened: config.json + weights (+ the tokenizer, loaded separately).
struct Model {
  std::string dir;
  ModelConfig config;
  std::unique_ptr<WeightFiles> files;  // owns the mappings the weights point into
  ModelWeights weights;
  int64_t parameter_count() const;
  // Bytes a decode step reads at least once: every weight tensor once, in its stored dtype.
  int64_t weight_bytes() const;
};

// Throws dm::Error naming the file and the problem ("[model] <dir>: not a directory", ...).
std::unique_ptr<Model> load_model(const std::string& dir);

}  // namespace dm
