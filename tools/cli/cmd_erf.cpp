// decimamba erf: per layer, the Mamba Mean Distance of the last query and the ΣΔ statistics
// (decimamba-spec.md 5.2, 5.3) of one prefill; optionally one layer's hidden-attention map (5.1)
// as a PNG heatmap.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <memory>

#include "commands.h"
#include "common_options.h"
#include "core/error.h"
#include "eval/erf.h"
#include "eval/passkey.h"
#include "progress.h"

namespace dmcli {
namespace {

struct ErfCli {
  CommonOptions common;
  std::string text_file;
  int64_t tokens = 0;
  double eps = 1e-3;
  std::string json;
  bool force = false;
  int map_layer = -1;
  std::string png;
  int64_t max_map_tokens = 2048;
  int channels = 0;
  bool quiet = false;
};

// Built-in filler sentences, cycled, tokenized, cut to exactly n ids (BOS included when the
// tokenizer adds one).
std::vector<int32_t> filler_ids(const dm::Tokenizer& tok, int64_t n) {
  const auto& sentences = dm::builtin_filler();
  std::vector<int32_t> ids;
  std::string text;
  size_t next = 0;
  int64_t want_chars = n * 4;
  while (true) {
    while (int64_t(text.size()) < want_chars) {
      if (!text.empty()) text += ' ';
      text += sentences[next++ % sentences.size()];
    }
    ids.clear();
    if (tok.add_bos() && tok.bos_id() >= 0) ids.push_back(tok.bos_id());
    const auto body = tok.encode(text);
    ids.insert(ids.end(), body.begin(), body.end());
    if (int64_t(ids.size()) >= n) break;
    want_chars *= 2;
  }
  ids.resize(size_t(n));
  return ids;
}

int run(ErfCli& c) {
  if (c.text_file.empty() == (c.tokens <= 0))
    dm::fail("[cli] give exactly one of --text-file FILE and --tokens N");
  if ((c.map_layer >= 0) != !c.png.empty())
    dm::fail("[cli] --map-layer and --png go together");
  check_output_file(c.json, c.force);
  check_output_file(c.png, c.force);
  Session s;
  open_backend(s, c.common);
  open_tokenizer(s, c.common);
  std::vector<int32_t> ids;
  std::string source;
  if (!c.text_file.empty()) {
    const std::string text = read_text_file(c.text_file, "text file");
    if (s.tokenizer->add_bos() && s.tokenizer->bos_id() >= 0) ids.push_back(s.tokenizer->bos_id());
    const auto body = s.tokenizer->encode(text);
    if (body.empty()) dm::fail("[cli] ", c.text_file, ": no text");
    ids.insert(ids.end(), body.begin(), body.end());
    source = c.text_file;
  } else {
    ids = filler_ids(*s.tokenizer, c.tokens);
    source = "built-in filler";
  }
  open_model(s, c.common);
  check_token_ids(s, ids);

  dm::ErfOptions opts;
  opts.eps = c.eps;
  opts.map_layer = c.map_layer;
  opts.max_map_tokens = c.max_map_tokens;
  opts.map_channels = c.channels;
  ProgressBar bar("erf", int64_t(ids.size()), want_progress(int64_t(ids.size()), c.quiet));
  opts.on_progress = bar.callback();
  const dm::ErfResult r = dm::compute_erf(*s.executor, *s.model, ids, opts);
  bar.finish();

  const std::string deci = dm::describe_decimation(s.executor->decimation());
  std::printf("%s: %lld tokens; decimation: %s; eps %g\n", source.c_str(),
              (long long)r.n_tokens, deci.c_str(), c.eps);
  std::printf("MMD = mean over channels of MMD_c; MMD|a| = MMD of the channel-averaged |alpha|\n");
  std::printf("%5s %7s %7s %9s %9s %9s %9s %9s %10s %8s\n", "layer", "L_in", "L", "MMD",
              "MMD|a|", "S_mean", "S_max", "S_p95", "span_mean", "span_max");
  for (const auto& l : r.layers)
    std::printf("%5d %7lld %7lld %9.2f %9.2f %9.3f %9.3f %9.3f %10.1f %8lld\n", l.layer,
                (long long)l.L_in, (long long)l.L, l.mmd_mean, l.mmd_avg_alpha, l.S_mean, l.S_max,
                l.S_p95, l.span_mean, (long long)l.span_max);

  if (!c.png.empty()) {
    dm::write_map_png(c.png, r.map, r.map_L);
    std::printf("layer %d attention map (%lld x %lld, %zu channels, log10 |alpha|/max >= -3): %s\n",
                r.map_layer, (long long)r.map_L, (long long)r.map_L, r.map_channels.size(),
                c.png.c_str());
  }
  if (!c.json.empty()) {
    nlohmann::json j;
    j["model"] = c.common.model_dir;
    j["backend"] = s.backend->name();
    j["source"] = source;
    j["n_tokens"] = r.n_tokens;
    j["decimation"] = deci;
    j["decimation_enabled"] = s.executor->decimation().enabled;
    j["decimating_layers"] = s.executor->decimation().layers;
    j["eps"] = c.eps;
    j["notes"] = {
        {"mmd_mean", "mean over channels of MMD_c, MMD_c = sum_j (L-1-j)|a_c[L-1,j]| / sum_j |a_c[L-1,j]|"},
        {"mmd_avg_alpha", "MMD of w_j = mean over channels of |a_c[L-1,j]|"},
        {"S", "S_c = sum of softplus(delta + dt_bias) over the layer's L scanned tokens"},
        {"span", "largest L-1-j with exp(max_n A[c,n] * sum_{k=j+1..L-1} Delta_k[c]) > eps"},
        {"positions", "within the tokens the layer's scan sees (after decimation)"}};
    nlohmann::json layers = nlohmann::json::array();
    for (const auto& l : r.layers)
      layers.push_back({{"layer", l.layer},
                        {"L_in", l.L_in},
                        {"L", l.L},
                        {"mmd_mean", l.mmd_mean},
                        {"mmd_avg_alpha", l.mmd_avg_alpha},
                        {"S_mean", l.S_mean},
                        {"S_max", l.S_max},
                        {"S_p95", l.S_p95},
                        {"span_mean", l.span_mean},
                        {"span_max", l.span_max},
                        {"span_p95", l.span_p95}});
    j["layers"] = layers;
    if (!c.png.empty())
      j["map"] = {{"layer", r.map_layer}, {"L", r.map_L}, {"channels", r.map_channels},
                  {"png", c.png}};
    write_text_file(c.json, j.dump(2) + "\n");
  }
  print_profile(s, c.common);
  return 0;
}

}  // namespace

RunFn add_erf(CLI::App& app) {
  auto c = std::make_shared<ErfCli>();
  CLI::App* cmd = app.add_subcommand(
      "erf",
      "Per layer: Mamba Mean Distance of the last token and sum-of-Delta statistics of one "
      "prefill; optionally a layer's hidden-attention map as PNG");
  add_common_options(*cmd, c->common);
  cmd->add_option("--text-file", c->text_file, "Text to prefill");
  cmd->add_option("--tokens", c->tokens, "Prefill N tokens of built-in filler instead")
      ->check(kPositive);
  cmd->add_option("--eps", c->eps, "Threshold of the effective span")
      ->check(between(1e-300, 0.999999))
      ->capture_default_str();
  cmd->add_option("--json", c->json, "Write the result as JSON to OUT");
  cmd->add_option("--map-layer", c->map_layer, "Layer (0-based) whose attention map --png draws")
      ->check(kNonNegative);
  cmd->add_option("--png", c->png, "Write the --map-layer attention map as a PNG heatmap");
  cmd->add_option("--max-map-tokens", c->max_map_tokens, "Longest sequence the map is drawn for")
      ->check(kPositive)
      ->capture_default_str();
  cmd->add_option("--channels", c->channels,
                  "Map averaged over N evenly spaced channels (default: every 150th)")
      ->check(kPositive);
  cmd->add_flag("--force", c->force, "Overwrite the --json / --png files");
  cmd->add_flag("-q,--quiet", c->quiet, "No progress on stderr");
  return [c] { return run(*c); };
}

}  // namespace dmcli
