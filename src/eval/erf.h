// Effective-receptive-field diagnostics of a prefill (decimamba-spec.md §5): per layer, the Mamba
// Mean Distance of the last query (5.2), the ΣΔ statistics (5.3), and optionally one layer's
// hidden-attention map (5.1). Everything is computed on the host in double precision from the
// scan inputs the executor hands its PrefillTap (after decimation at a decimating layer, so
// positions and distances are those of the sequence the layer's scan actually sees).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/executor.h"

namespace dm {

// One layer's scan inputs in double: Δ already through softplus(delta + dt_bias) (PyTorch's
// threshold 20), A = −exp(A_log).
struct ErfScanInputs {
  int64_t L = 0, E = 0, N = 0;  // tokens, channels (d_inner), states (d_state)
  std::vector<double> delta;    // L × E
  std::vector<double> A;        // E × N
  std::vector<double> B, C;     // L × N each
};

// softplus as PyTorch computes it with threshold 20 (x > 20: x).
double softplus20(double x);

struct ErfLayerStats {
  int layer = 0;
  int64_t L_in = 0;  // tokens entering the layer
  int64_t L = 0;     // tokens its scan sees (fewer than L_in at a decimating layer)
  // MMD_c = Σ_j (L−1−j)·|α_c[L−1,j]| / Σ_j |α_c[L−1,j]| (0-based j) for each channel c.
  std::vector<double> mmd_c;
  double mmd_mean = 0;        // mean over channels of MMD_c
  double mmd_avg_alpha = 0;   // MMD of the channel-averaged map w_j = mean_c |α_c[L−1,j]|
  // S_c = Σ_k Δ_k[c] over all L tokens, and its mean / max / 95th percentile over channels.
  std::vector<double> S_c;
  double S_mean = 0, S_max = 0, S_p95 = 0;
  // span_c: the largest L−1−j with exp(max_n A[c,n]·(S_c(L−1) − S_c(j))) > eps (S_c(t) the
  // prefix sum through t); 0 when only the last token qualifies.
  std::vector<int64_t> span_c;
  double span_mean = 0, span_p95 = 0;
  int64_t span_max = 0;
};

// MMD and ΣΔ statistics of one layer's scan inputs, O(L·E·N): the backward recurrence of 5.2.
ErfLayerStats erf_layer_stats(const ErfScanInputs& in, double eps = 1e-3);

// 95th percentile with linear interpolation between order statistics (numpy's default).
double percentile(std::vector<double> v, double q);

// The notebook's channel subset: every 150th (0, 150, …) when n ≤ 0, else n evenly spaced
// channels round(k·(E−1)/(n−1)) (just channel 0 when n = 1).
std::vector<int> erf_map_channels(int64_t E, int n);

// Hidden-attention map (5.1) of one layer, L × L row-major (query i, key j): α averaged over
// `channels`, then |·| normalised by its max, log10 clamped below at `floor_log10` (−3). Entries
// above the diagonal (j > i) hold floor_log10. O(L²·|channels|·N).
std::vector<double> erf_attention_map(const ErfScanInputs& in, const std::vector<int>& channels,
                                      double floor_log10 = -3);

struct ErfOptions {
  double eps = 1e-3;
  int map_layer = -1;              // ≥ 0: also compute this layer's map
  int64_t max_map_tokens = 2048;   // the map layer's scan length must not exceed this
  int map_channels = 0;            // as erf_map_channels
  int64_t protect_tail = -1;       // passed to prefill
  std::function<void(int, int)> on_progress;
};

struct ErfResult {
  int64_t n_tokens = 0;
  std::vector<ErfLayerStats> layers;
  // When map_layer ≥ 0:
  int map_layer = -1;
  int64_t map_L = 0;
  std::vector<int> map_channels;
  std::vector<double> map;  // map_L × map_L, as erf_attention_map
};

// The scan inputs of a tap call read back and converted (download + dt_bias/softplus + A).
ErfScanInputs erf_read_scan_inputs(Backend& be, const LayerWeights& w, const Tensor& delta,
                                   const Tensor& B, const Tensor& C);

// Prefills `tokens` (a fresh state) and measures every layer. Throws dm::Error for a bad map
// layer or a map layer longer than max_map_tokens (checked before the prefill).
ErfResult compute_erf(Executor& exec, const Model& model, const std::vector<int32_t>& tokens,
                      const ErfOptions& opts = {});

// Grayscale 8-bit PNG (zlib-compressed), rows top to bottom. Throws dm::Error on I/O failure.
void write_png_gray(const std::string& path, int64_t width, int64_t height,
                    const std::vector<uint8_t>& pixels);
// An RGB 8-bit PNG; pixels are width·height·3 bytes.
void write_png_rgb(const std::string& path, int64_t width, int64_t height,
                   const std::vector<uint8_t>& pixels);

// The map as an RGB heatmap (viridis-like ramp from floor_log10 to 0), one pixel per entry.
void write_map_png(const std::string& path, const std::vector<double>& map, int64_t L,
                   double floor_log10 = -3);

}  // namespace dm
