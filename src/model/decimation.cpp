#include "model/decimation.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "core/error.h"

namespace dm {

DecimationConfig decimation_preset(const std::string& name) {
  DecimationConfig c;
  if (name == "off") return c;
  if (name == "passkey-130m") {  // eval_ssm_config_2.json: layer 12, L_base 2000 (β unused)
    c.enabled = true;
    c.layers = {12};
    c.L_base = 2000;
    c.beta = 0.5;
    c.min_seq_len = 20;
    return c;
  }
  if (name == "pg19-130m") {  // eval_ssm_config_4.json: layers 12..20, L_base 8000, β 0.83
    c.enabled = true;
    for (int l = 12; l <= 20; ++l) c.layers.push_back(l);
    c.L_base = 8000;
    c.beta = 0.83;
    c.min_seq_len = 20;
    return c;
  }
  std::string names;
  for (const auto& n : decimation_preset_names()) names += (names.empty() ? "" : ", ") + n;
  fail("[decimation] unknown preset '", name, "' (known: ", names, ")");
}

std::vector<std::string> decimation_preset_names() { return {"off", "passkey-130m", "pg19-130m"}; }

int64_t decimation_keep(const DecimationConfig& cfg, int layer, int64_t L, int64_t protect_tail) {
  const int64_t r = std::min(std::max<int64_t>(protect_tail, 0), L);
  const int64_t Lc = L - r;
  if (!cfg.enabled || Lc == 0) return Lc;
  const auto it = std::find(cfg.layers.begin(), cfg.layers.end(), layer);
  if (it == cfg.layers.end()) return Lc;
  const int s = int(it - cfg.layers.begin());
  // The authors' expression: int(max(min(Lc, L_base * beta**s), min_seq_len)), evaluated in
  // double like Python floats, truncated after the max; then clamped to Lc, where the reference
  // code would crash in topk (spec §2.4).
  const double cap = cfg.L_base * std::pow(cfg.beta, double(s));
  const double k = std::max(std::min(double(Lc), cap), double(cfg.min_seq_len));
  return std::min<int64_t>(int64_t(k), Lc);
}

void validate_decimation(const DecimationConfig& cfg, int64_t n_layer) {
  if (!cfg.enabled) return;
  if (cfg.layers.empty()) fail("[decimation] decimation is on but no decimating layers are given");
  for (size_t i = 0; i < cfg.layers.size(); ++i) {
    const int l = cfg.layers[i];
    if (l < 0 || l >= n_layer)
      fail("[decimation] decimating layer ", l, " is outside the model's layers 0..", n_layer - 1);
    if (i > 0 && l <= cfg.layers[i - 1])
      fail("[decimation] decimating layers must be ascending and unique (", cfg.layers[i - 1],
           " then ", l, ")");
  }
  if (!(cfg.L_base >= 1) || !std::isfinite(cfg.L_base))
    fail("[decimation] L_base must be a finite number >= 1, got ", cfg.L_base);
  if (!(cfg.beta > 0 && cfg.beta <= 1))
    fail("[decimation] beta must be in (0, 1], got ", cfg.beta);
  if (cfg.min_seq_len < 1) fail("[decimation] min_seq_len must be >= 1, got ", cfg.min_seq_len);
}

std::string describe_decimation(const DecimationConfig& cfg) {
  if (!cfg.enabled) return "off";
  std::ostringstream os;
  os << "layers ";
  for (size_t i = 0; i < cfg.layers.size(); ++i) os << (i ? "," : "") << cfg.layers[i];
  os << ", L_base " << cfg.L_base << ", beta " << cfg.beta << ", min_seq_len " << cfg.min_seq_len;
  return os.str();
}

}  // namespace dm
