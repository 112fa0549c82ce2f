// config.json in either dialect → ModelConfig.
//
// Dialect: d_model / n_layer → mamba_ssm; hidden_size / num_hidden_layers → Hugging Face. A file
// with keys of both is refused rather than guessed, since the two could disagree.
//
// Vocabulary rows (padded_vocab):
//   mamba_ssm pads vocab_size up to a multiple of pad_vocab_size_multiple (default 8) when it
//     builds the embedding, so padded_vocab is that rounded value and the embedding must match.
//   Hugging Face stores the embedding at whatever size it was saved with (conversions from
//     mamba_ssm keep the padded rows), so padded_vocab starts as vocab_size here and
//     bind_weights replaces it with the embedding's row count, which must be >= vocab_size.
#include "model/config.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"

namespace dm {
namespace {

using nlohmann::json;

// Typed reads of optional keys: absent or null → the default; present with another type → error.
class Reader {
 public:
  Reader(const json& obj, std::string origin, std::string scope)
      : obj_(obj), origin_(std::move(origin)), scope_(std::move(scope)) {}

  bool has(const char* key) const { return obj_.contains(key) && !obj_.at(key).is_null(); }

  int64_t integer(const char* key, int64_t def) const {
    if (!has(key)) return def;
    const json& v = obj_.at(key);
    // 768.0 is refused: a size written as a float is more likely a broken export than intent.
    if (!v.is_number_integer()) bad_type(key, "an integer", v);
    return v.get<int64_t>();
  }
  int64_t positive(const char* key, int64_t def) const {
    const int64_t v = integer(key, def);
    if (v <= 0) fail("[config] ", origin_, ": ", name(key), " must be positive, got ", v);
    return v;
  }
  bool boolean(const char* key, bool def) const {
    if (!has(key)) return def;
    const json& v = obj_.at(key);
    if (!v.is_boolean()) bad_type(key, "true or false", v);
    return v.get<bool>();
  }
  double number(const char* key, double def) const {
    if (!has(key)) return def;
    const json& v = obj_.at(key);
    if (!v.is_number()) bad_type(key, "a number", v);
    return v.get<double>();
  }
  std::string string(const char* key, const std::string& def) const {
    if (!has(key)) return def;
    const json& v = obj_.at(key);
    if (!v.is_string()) bad_type(key, "a string", v);
    return v.get<std::string>();
  }
  // time_step_rank / dt_rank: "auto" → ceil(d_model / 16), or a positive integer.
  int64_t rank(const char* key, int64_t d_model) const {
    const int64_t auto_rank = (d_model + 15) / 16;
    if (!has(key)) return auto_rank;
    const json& v = obj_.at(key);
    if (v.is_string()) {
      if (v.get<std::string>() == "auto") return auto_rank;
      fail("[config] ", origin_, ": ", name(key), " must be \"auto\" or an integer, got ",
           v.dump());
    }
    return positive(key, auto_rank);
  }
  // eos/bos ids: an integer, null, or (some HF configs) a list whose first entry is used.
  int32_t token_id(const char* key) const {
    if (!has(key)) return -1;
    const json& v = obj_.at(key);
    const json& id = v.is_array() && !v.empty() ? v.front() : v;
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
      bad_type(key, "a non-negative integer token id", v);
    return int32_t(id.get<int64_t>());
  }

 private:
  std::string name(const char* key) const { return scope_.empty() ? key : scope_ + "." + key; }
  [[noreturn]] void bad_type(const char* key, const char* want, const json& got) const {
    std::string shown = got.dump();
    if (shown.size() > 40) shown = shown.substr(0, 37) + "...";
    fail("[config] ", origin_, ": ", name(key), " must be ", want, ", got ", shown);
  }

  const json& obj_;
  std::string origin_;
  std::string scope_;
};

void parse_hf(const Reader& r, ModelConfig& c) {
  c.dialect = "hf";
  // transformers 5.x MambaConfig defaults.
  c.d_model = r.positive("hidden_size", 768);
  c.n_layer = r.positive("num_hidden_layers", 32);
  c.vocab_size = r.positive("vocab_size", 50280);
  c.padded_vocab = c.vocab_size;  // bind_weights takes the embedding's rows
  c.d_state = r.positive("state_size", 16);
  c.expand = r.positive("expand", 2);
  c.d_conv = r.positive("conv_kernel", 4);
  // HF computes intermediate_size = expand · hidden_size and saves it; the mixer uses the saved
  // value, so it wins when present.
  c.d_inner = r.positive("intermediate_size", c.expand * c.d_model);
  c.dt_rank = r.rank("time_step_rank", c.d_model);
  c.proj_bias = r.boolean("use_bias", false);
  c.conv_bias = r.boolean("use_conv_bias", true);
  c.norm_eps = float(r.number("layer_norm_epsilon", 1e-5));
  c.tie_embeddings = r.boolean("tie_word_embeddings", true);
  c.residual_in_fp32 = r.boolean("residual_in_fp32", true);
  // transformers 5 writes "dtype", 4.x "torch_dtype".
  c.declared_dtype = r.has("dtype") ? r.string("dtype", "") : r.string("torch_dtype", "");
  c.eos_token_id = r.token_id("eos_token_id");
  c.bos_token_id = r.token_id("bos_token_id");
}

void parse_mamba_ssm(const json& root, const Reader& r, const std::string& origin, ModelConfig& c) {
  c.dialect = "mamba_ssm";
  // mamba_ssm.models.config_mamba.MambaConfig defaults.
  c.d_model = r.positive("d_model", 2560);
  c.n_layer = r.positive("n_layer", 64);
  c.vocab_size = r.positive("vocab_size", 50277);
  const int64_t multiple = r.positive("pad_vocab_size_multiple", 8);
  c.padded_vocab = (c.vocab_size + multiple - 1) / multiple * multiple;
  if (!r.boolean("rms_norm", true))
    fail("[config] ", origin, ": rms_norm is false: LayerNorm models are not supported");
  c.residual_in_fp32 = r.boolean("residual_in_fp32", true);
  c.tie_embeddings = r.boolean("tie_embeddings", true);
  c.norm_eps = float(r.number("norm_epsilon", 1e-5));
  if (root.contains("attn_layer_idx") && root["attn_layer_idx"].is_array() &&
      !root["attn_layer_idx"].empty())
    fail("[config] ", origin,
         ": attn_layer_idx is not empty: hybrid attention models are not supported");

  static const json empty = json::object();
  const json* ssm = &empty;
  if (root.contains("ssm_cfg") && !root["ssm_cfg"].is_null()) {
    if (!root["ssm_cfg"].is_object())
      fail("[config] ", origin, ": ssm_cfg must be an object, got ", root["ssm_cfg"].dump());
    ssm = &root["ssm_cfg"];
  }
  const Reader s(*ssm, origin, "ssm_cfg");
  const std::string layer = s.string("layer", "Mamba1");
  if (layer != "Mamba1")
    fail("[config] ", origin, ": ssm_cfg.layer is \"", layer,
         "\": only Mamba-1 (S6) models are supported");
  c.d_state = s.positive("d_state", 16);
  c.d_conv = s.positive("d_conv", 4);
  c.expand = s.positive("expand", 2);
  c.d_inner = c.expand * c.d_model;
  c.dt_rank = s.rank("dt_rank", c.d_model);
  c.proj_bias = s.boolean("bias", false);
  c.conv_bias = s.boolean("conv_bias", true);
  c.eos_token_id = r.token_id("eos_token_id");
  c.bos_token_id = r.token_id("bos_token_id");
}

std::optional<DecimationConfig> parse_default_decimation(const json& root, const std::string& origin,
                                                        int64_t n_layer) {
  if (!root.contains("decimamba")) return std::nullopt;
  const json& block = root["decimamba"];
  if (!block.is_object()) fail("[config] ", origin, ": decimamba must be an object");
  if (!block.contains("decimation")) return std::nullopt;
  const json& d = block["decimation"];
  if (!d.is_object()) fail("[config] ", origin, ": decimamba.decimation must be an object");
  DecimationConfig cfg;
  cfg.enabled = true;
  const Reader r(d, origin, "decimamba.decimation");
  if (!d.contains("layers") || !d["layers"].is_array() || d["layers"].empty())
    fail("[config] ", origin, ": decimamba.decimation.layers must be a non-empty array of layers");
  for (const json& l : d["layers"]) {
    if (!l.is_number_integer())
      fail("[config] ", origin, ": decimamba.decimation.layers holds ", l.dump(),
           ", not a layer index");
    cfg.layers.push_back(l.get<int>());
  }
  cfg.L_base = r.number("L_base", cfg.L_base);
  cfg.beta = r.number("beta", cfg.beta);
  cfg.min_seq_len = int64_t(r.number("min_seq_len", double(cfg.min_seq_len)));
  try {
    validate_decimation(cfg, n_layer);
  } catch (const Error& e) {
    fail("[config] ", origin, ": decimamba.decimation: ", e.what());
  }
  return cfg;
}

}  // namespace

ModelConfig parse_config(const std::string& json_text, const std::string& origin) {
  json root;
  try {
    root = json::parse(json_text);
  } catch (const json::parse_error& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line L, column C: ...";
    // keep the position and reason, drop the library's tag.
    std::string why = e.what();
    if (const size_t p = why.find("] "); p != std::string::npos) why = why.substr(p + 2);
    fail("[config] ", origin, ": invalid JSON: ", why);
  }
  if (!root.is_object()) fail("[config] ", origin, ": expected a JSON object at the top level");

  const Reader r(root, origin, "");
  const std::string model_type = r.string("model_type", "");
  if (!model_type.empty() && model_type != "mamba")
    fail("[config] ", origin, ": model_type is \"", model_type,
         "\": only Mamba-1 (\"mamba\") models are supported");
  const std::string act = r.string("hidden_act", "silu");
  if (act != "silu" && act != "swish")
    fail("[config] ", origin, ": hidden_act is \"", act, "\": only silu is supported");

  const bool ssm_keys = root.contains("d_model") || root.contains("n_layer");
  const bool hf_keys = root.contains("hidden_size") || root.contains("num_hidden_layers");
  if (ssm_keys && hf_keys)
    fail("[config] ", origin,
         ": has both mamba_ssm (d_model/n_layer) and Hugging Face "
         "(hidden_size/num_hidden_layers) keys; cannot tell which to trust");
  if (!ssm_keys && !hf_keys)
    fail("[config] ", origin,
         ": not a Mamba config: no d_model/n_layer (mamba_ssm) or "
         "hidden_size/num_hidden_layers (Hugging Face) key");

  ModelConfig c;
  if (hf_keys)
    parse_hf(r, c);
  else
    parse_mamba_ssm(root, r, origin, c);

  if (!(c.norm_eps > 0.f) || !std::isfinite(c.norm_eps))
    fail("[config] ", origin, ": norm epsilon must be a positive finite number, got ", c.norm_eps);
  c.default_decimation = parse_default_decimation(root, origin, c.n_layer);
  return c;
}

ModelConfig load_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("[config] ", path, ": cannot open");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) fail("[config] ", path, ": read error");
  return parse_config(text.str(), path);
}

}  // namespace dm
