// DeciMamba's token-decimation policy (decimamba-spec.md §2): which layers decimate and how many
// tokens each keeps. A pure host function of (L, layer, config): no device read is needed to
// know a layer's output length.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dm {

struct DecimationConfig {
  bool enabled = false;
  std::vector<int> layers;  // 0-based, ascending
  double L_base = 2000;
  double beta = 1.0;
  int64_t min_seq_len = 20;
};

// The paper's settings by name: "passkey-130m", "pg19-130m", "off". Throws dm::Error otherwise.
DecimationConfig decimation_preset(const std::string& name);
std::vector<std::string> decimation_preset_names();

// Number of candidate tokens (of L − protect_tail) the layer keeps:
// K = int(max(min(Lc, L_base·β^s), min_seq_len)) clamped to Lc, s = ordinal of the layer in the
// list. Returns Lc (keep all) for a layer that does not decimate or when decimation is off.
int64_t decimation_keep(const DecimationConfig& cfg, int layer, int64_t L, int64_t protect_tail);

// Throws dm::Error when layers are not ascending / unique / within [0, n_layer), or L_base,
// beta, min_seq_len are out of range.
void validate_decimation(const DecimationConfig& cfg, int64_t n_layer);

std::string describe_decimation(const DecimationConfig& cfg);  // one line for logs / JSON

}  // namespace dm
