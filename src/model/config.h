// Model hyper-parameters, read from config.json in either dialect:
//   Hugging Face MambaConfig: hidden_size, state_size, num_hidden_layers, expand, conv_kernel,
//     time_step_rank ("auto" or int), use_bias, use_conv_bias, layer_norm_epsilon,
//     tie_word_embeddings, vocab_size, dtype / torch_dtype, eos/bos/pad_token_id;
//   mamba_ssm: d_model, n_layer, vocab_size, ssm_cfg {d_state, d_conv, expand, dt_rank, bias,
//     conv_bias}, rms_norm, residual_in_fp32, pad_vocab_size_multiple, tie_embeddings,
//     with mamba_ssm's defaults for missing keys.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "model/decimation.h"

#include "core/dtype.h"

namespace dm {

struct ModelConfig {
  std::string dialect;         // "hf" or "mamba_ssm"
  int64_t d_model = 0;
  int64_t n_layer = 0;
  int64_t vocab_size = 0;      // as declared in the config
  int64_t padded_vocab = 0;    // rows the embedding must have (mamba_ssm pads to a multiple)
  int64_t d_state = 16;
  int64_t d_conv = 4;
  int64_t expand = 2;
  int64_t d_inner = 0;         // expand · d_model
  int64_t dt_rank = 0;         // ceil(d_model / 16) when "auto"
  bool proj_bias = false;      // in_proj / out_proj biases
  bool conv_bias = true;
  bool tie_embeddings = true;  // as declared; the weights decide (lm_head present = untied)
  bool residual_in_fp32 = true;
  float norm_eps = 1e-5f;
  std::string declared_dtype;  // "float32", "float16", "bfloat16" or "" if absent
  int32_t eos_token_id = -1;   // -1: the tokenizer decides
  int32_t bos_token_id = -1;
  // decimamba's own block, "decimamba": {"decimation": {"layers": [...], "L_base": ...,
  // "beta": ..., "min_seq_len": ...}}: the decimation the model was tuned for, the CLI's default
  // for this model (--no-deci or any --deci option overrides it). Absent: decimation off.
  std::optional<DecimationConfig> default_decimation;
};

// Throws dm::Error "[config] <path>: <what is wrong>".
ModelConfig load_config(const std::string& path);
// The same from JSON text; `origin` names the source in errors.
ModelConfig parse_config(const std::string& json_text, const std::string& origin);

}  // namespace dm
