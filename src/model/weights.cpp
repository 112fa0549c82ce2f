// Binds the tensors of a model directory to the Mamba-1 layout and checks every one of them
// against the config. Nothing is left unexplained: a tensor the layout does not use is an error,
// because a silently ignored tensor usually means the config describes a different model.
#include "model/weights.h"

#include <cctype>
#include <filesystem>
#include <set>

#include "core/error.h"

namespace dm {
namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  HostTensor t;
  t.shape = s;
  return t.shape_str();
}

class Binder {
 public:
  Binder(const WeightFiles& files, const ModelConfig& config) : files_(files), config_(config) {}

  // The tensor, checked for a float dtype; nullptr if absent.
  const HostTensor* optional(const std::string& name) {
    const HostTensor* t = files_.find(name);
    if (!t) return nullptr;
    if (t->dtype != DType::F32 && t->dtype != DType::F16 && t->dtype != DType::BF16)
      fail("[weights] ", t->file, ": tensor ", name, " has dtype ", dtype_name(t->dtype),
           "; weights must be F32, F16 or BF16");
    used_.insert(name);
    return t;
  }

  const HostTensor* required(const std::string& name) {
    const HostTensor* t = optional(name);
    if (!t) fail("[weights] ", files_.source(), ": missing tensor ", name);
    return t;
  }

  // Required, with one of the accepted shapes (the first is the one named in the error).
  const HostTensor* shaped(const std::string& name, std::vector<std::vector<int64_t>> shapes) {
    const HostTensor* t = required(name);
    for (const auto& s : shapes)
      if (t->shape == s) return t;
    fail("[weights] ", t->file, ": tensor ", name, " has shape ", t->shape_str(), ", expected ",
         shape_str(shapes.front()), " from the config (", config_summary(), ")");
  }

  // A bias the config switches on or off: present when off is as wrong as absent when on.
  const HostTensor* bias(const std::string& name, bool wanted, const char* config_key, int64_t n) {
    if (wanted) return shaped(name, {{n}});
    if (const HostTensor* t = files_.find(name))
      fail("[weights] ", t->file, ": tensor ", name, " is present but the config says ", config_key,
           " is false");
    return nullptr;
  }

  // Every tensor not bound is an error: layers past n_layer get their own message.
  void check_all_used() {
    std::vector<std::string> unknown;
    const std::string layer_prefix = "backbone.layers.";
    for (const auto& [name, t] : files_.all()) {
      if (used_.count(name)) continue;
      if (name.rfind(layer_prefix, 0) == 0) {
        const std::string rest = name.substr(layer_prefix.size());
        size_t digits = 0;
        while (digits < rest.size() && std::isdigit(static_cast<unsigned char>(rest[digits])))
          ++digits;
        if (digits > 0 && digits < 10 && std::stoll(rest.substr(0, digits)) >= config_.n_layer)
          fail("[weights] ", t->file, ": config says ", config_.n_layer, " layers but tensor ",
               name, " exists");
      }
      unknown.push_back(name);
    }
    if (unknown.empty()) return;
    std::string list;
    for (size_t i = 0; i < unknown.size() && i < 4; ++i) {
      if (i) list += ", ";
      list += unknown[i];
    }
    if (unknown.size() > 4) list += ", ... (" + std::to_string(unknown.size() - 4) + " more)";
    fail("[weights] ", files_.find(unknown.front())->file, ": ", unknown.size(),
         " tensor(s) not part of a Mamba-1 model: ", list);
  }

  std::string config_summary() const {
    return "d_model " + std::to_string(config_.d_model) + ", d_inner " +
           std::to_string(config_.d_inner) + ", d_state " + std::to_string(config_.d_state) +
           ", d_conv " + std::to_string(config_.d_conv) + ", dt_rank " +
           std::to_string(config_.dt_rank);
  }

 private:
  const WeightFiles& files_;
  const ModelConfig& config_;
  std::set<std::string> used_;
};

}  // namespace

ModelWeights bind_weights(const WeightFiles& files, ModelConfig& config) {
  Binder b(files, config);
  ModelWeights w;
  const int64_t D = config.d_model, E = config.d_inner, N = config.d_state;
  const int64_t R = config.dt_rank, K = config.d_conv;

  // Embedding: HF calls it embeddings, mamba_ssm embedding.
  const HostTensor* emb_hf = b.optional("backbone.embeddings.weight");
  const HostTensor* emb_ssm = b.optional("backbone.embedding.weight");
  if (emb_hf && emb_ssm)
    fail("[weights] ", emb_ssm->file,
         ": both backbone.embeddings.weight and backbone.embedding.weight are present");
  if (!emb_hf && !emb_ssm)
    fail("[weights] ", files.source(),
         ": missing tensor backbone.embeddings.weight (or backbone.embedding.weight)");
  w.embedding = emb_hf ? emb_hf : emb_ssm;
  const HostTensor& emb = *w.embedding;
  if (emb.shape.size() != 2 || emb.shape[1] != D)
    fail("[weights] ", emb.file, ": tensor ", emb.name, " has shape ", emb.shape_str(),
         ", expected [vocab rows, ", D, "] (d_model ", D, ")");
  const int64_t rows = emb.shape[0];
  // See config.cpp for the vocabulary rule: mamba_ssm fixes the padded size, HF leaves it open.
  if (config.dialect == "mamba_ssm") {
    if (rows != config.padded_vocab)
      fail("[weights] ", emb.file, ": tensor ", emb.name, " has ", rows,
           " rows but the config's vocab_size ", config.vocab_size, " padded to ",
           config.padded_vocab, " needs exactly that many");
  } else {
    if (rows < config.vocab_size)
      fail("[weights] ", emb.file, ": tensor ", emb.name, " has ", rows,
           " rows, fewer than the config's vocab_size ", config.vocab_size);
    config.padded_vocab = rows;
  }

  for (int64_t i = 0; i < config.n_layer; ++i) {
    const std::string p = "backbone.layers." + std::to_string(i) + ".";
    LayerWeights l;
    l.norm = b.shaped(p + "norm.weight", {{D}});
    l.in_proj = b.shaped(p + "mixer.in_proj.weight", {{2 * E, D}});
    l.in_proj_bias = b.bias(p + "mixer.in_proj.bias", config.proj_bias, "use_bias/bias", 2 * E);
    // torch keeps the depthwise conv as [d_inner, 1, d_conv]; a squeezed copy is the same bytes.
    l.conv_weight = b.shaped(p + "mixer.conv1d.weight", {{E, 1, K}, {E, K}});
    l.conv_bias = b.bias(p + "mixer.conv1d.bias", config.conv_bias, "use_conv_bias/conv_bias", E);
    l.x_proj = b.shaped(p + "mixer.x_proj.weight", {{R + 2 * N, E}});
    l.dt_proj = b.shaped(p + "mixer.dt_proj.weight", {{E, R}});
    l.dt_bias = b.shaped(p + "mixer.dt_proj.bias", {{E}});
    l.A_log = b.shaped(p + "mixer.A_log", {{E, N}});
    l.D = b.shaped(p + "mixer.D", {{E}});
    l.out_proj = b.shaped(p + "mixer.out_proj.weight", {{D, E}});
    l.out_proj_bias = b.bias(p + "mixer.out_proj.bias", config.proj_bias, "use_bias/bias", D);
    w.layers.push_back(l);
  }
  w.norm_f = b.shaped("backbone.norm_f.weight", {{D}});

  // The weights decide tying: a saved lm_head is used even if the config says tied (it is then
  // an identical copy), but a config that promises an lm_head the files lack is contradictory.
  w.lm_head = b.optional("lm_head.weight");
  if (w.lm_head) {
    if (w.lm_head->shape != std::vector<int64_t>{rows, D})
      fail("[weights] ", w.lm_head->file, ": tensor lm_head.weight has shape ",
           w.lm_head->shape_str(), ", expected [", rows, ", ", D, "] (the embedding's shape)");
    w.tied = false;
  } else {
    if (!config.tie_embeddings)
      fail("[weights] ", files.source(),
           ": config says untied embeddings but lm_head.weight is missing");
    w.lm_head = w.embedding;
    w.tied = true;
  }

  b.check_all_used();
  w.dtype = w.layers.front().in_proj->dtype;
  return w;
}

// Every weight tensor once (a tied lm_head is the embedding).
static std::set<const HostTensor*> weight_tensors(const ModelWeights& w) {
  std::set<const HostTensor*> seen;
  auto add = [&](const HostTensor* t) {
    if (t) seen.insert(t);
  };
  add(w.embedding);
  add(w.norm_f);
  add(w.lm_head);
  for (const LayerWeights& l : w.layers)
    for (const HostTensor* t :
         {l.norm, l.in_proj, l.in_proj_bias, l.conv_weight, l.conv_bias, l.x_proj, l.dt_proj,
          l.dt_bias, l.A_log, l.D, l.out_proj, l.out_proj_bias})
      add(t);
  return seen;
}

int64_t Model::parameter_count() const {
  int64_t n = 0;
  for (const HostTensor* t : weight_tensors(weights)) n += t->numel();
  return n;
}

int64_t Model::weight_bytes() const {
  int64_t n = 0;
  for (const HostTensor* t : weight_tensors(weights)) n += int64_t(t->bytes);
  return n;
}

std::unique_ptr<Model> load_model(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(dir, ec)) fail("[model] ", dir, ": no such directory");
  if (!fs::is_directory(dir, ec)) fail("[model] ", dir, ": not a directory");
  const fs::path config_path = fs::path(dir) / "config.json";
  if (!fs::exists(config_path, ec)) fail("[model] ", dir, ": no config.json");

  auto m = std::make_unique<Model>();
  m->dir = dir;
  m->config = load_config(config_path.string());
  m->files = WeightFiles::open_dir(dir);
  m->weights = bind_weights(*m->files, m->config);
  return m;
}

}  // namespace dm
