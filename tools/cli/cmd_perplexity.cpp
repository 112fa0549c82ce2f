// decimamba perplexity FILE: the DeciMamba PG-19 protocol on one text file.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <memory>

#include "commands.h"
#include "common_options.h"
#include "core/error.h"
#include "eval/perplexity.h"
#include "progress.h"

namespace dmcli {
namespace {

struct PerplexityCli {
  CommonOptions common;
  std::string file;
  int64_t window = 2048;
  int64_t stride = 0;
  int64_t scored = 100;
  std::string json;
  bool force = false;
  bool quiet = false;
};

int run(PerplexityCli& c) {
  check_output_file(c.json, c.force);
  const std::string text = read_text_file(c.file, "text file");
  Session s;
  open_backend(s, c.common);
  open_tokenizer(s, c.common);
  std::vector<int32_t> ids;
  if (s.tokenizer->add_bos() && s.tokenizer->bos_id() >= 0) ids.push_back(s.tokenizer->bos_id());
  const std::vector<int32_t> body = s.tokenizer->encode(text);
  ids.insert(ids.end(), body.begin(), body.end());
  if (body.empty()) dm::fail("[cli] ", c.file, ": no text to score");
  // Fail on the window before the weights are mapped.
  if (c.scored >= c.window)
    dm::fail("[cli] --scored ", c.scored, " must be less than --window ", c.window);
  const int64_t stride =
      c.stride > 0 ? c.stride : dm::default_stride(int64_t(ids.size()), c.window);
  const size_t n_windows = dm::perplexity_windows(int64_t(ids.size()), c.window, stride).size();
  open_model(s, c.common);
  check_token_ids(s, ids);

  dm::PerplexityOptions opts;
  opts.window = c.window;
  opts.stride = c.stride;
  opts.scored = c.scored;
  // Several windows take a while even when each is short: show the bar on any terminal.
  const bool show = !c.quiet && stderr_is_terminal();
  int64_t current = 0;
  std::unique_ptr<ProgressBar> bar;
  opts.on_prefill_progress = [&](int done, int total) {
    if (!show) return;
    if (!bar)
      bar = std::make_unique<ProgressBar>(
          "window " + std::to_string(current + 1) + "/" + std::to_string(n_windows), c.window,
          true);
    bar->update(done, total);
  };
  opts.on_window = [&](int64_t done, int64_t) {
    current = done;
    bar.reset();
  };
  const dm::PerplexityResult r = dm::perplexity(*s.executor, ids, opts);
  bar.reset();

  const std::string deci = dm::describe_decimation(s.executor->decimation());
  std::printf("%s: %lld tokens, %zu windows of %lld (stride %lld), last %lld scored\n",
              c.file.c_str(), (long long)r.n_tokens, r.window_nll.size(), (long long)r.window,
              (long long)r.stride, (long long)r.scored);
  std::printf("decimation: %s\n", deci.c_str());
  std::printf("mean NLL %.4f nats, perplexity %.4f (%.1f s)\n", r.mean_nll, r.perplexity,
              r.seconds);

  if (!c.json.empty()) {
    nlohmann::json j;
    j["file"] = c.file;
    j["model"] = c.common.model_dir;
    j["backend"] = s.backend->name();
    j["device"] = s.backend->device_name();
    j["decimation"] = deci;
    j["decimation_enabled"] = s.executor->decimation().enabled;
    j["decimating_layers"] = s.executor->decimation().layers;
    j["n_tokens"] = r.n_tokens;
    j["window"] = r.window;
    j["stride"] = r.stride;
    j["scored"] = r.scored;
    j["window_starts"] = r.window_starts;
    j["window_nll"] = r.window_nll;
    j["mean_nll"] = r.mean_nll;
    j["perplexity"] = r.perplexity;
    j["seconds"] = r.seconds;
    write_text_file(c.json, j.dump(2) + "\n");
  }
  print_profile(s, c.common);
  return 0;
}

}  // namespace

RunFn add_perplexity(CLI::App& app) {
  auto c = std::make_shared<PerplexityCli>();
  CLI::App* cmd =
      app.add_subcommand("perplexity",
                         "Perplexity of a text file, DeciMamba's PG-19 protocol (strided windows, "
                         "NLL of each window's last tokens)");
  add_common_options(*cmd, c->common);
  cmd->add_option("file", c->file, "Text file")->required();
  cmd->add_option("--window", c->window, "Window length W in tokens")
      ->check(between(2, double(int64_t(1) << 30)))
      ->capture_default_str();
  cmd->add_option("--stride", c->stride, "Tokens between window starts (0: (n - W)/10, min 10)")
      ->check(kNonNegative)
      ->capture_default_str();
  cmd->add_option("--scored", c->scored, "Scored tail tokens per window")
      ->check(kPositive)
      ->capture_default_str();
  cmd->add_option("--json", c->json, "Write the result as JSON to OUT");
  cmd->add_flag("--force", c->force, "Overwrite the --json file");
  cmd->add_flag("-q,--quiet", c->quiet, "No progress on stderr");
  return [c] { return run(*c); };
}

}  // namespace dmcli
