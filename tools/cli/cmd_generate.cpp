// decimamba generate: continue a prompt, streaming the new text to stdout.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <iterator>
#include <memory>

#include "commands.h"
#include "common_options.h"
#include "core/error.h"
#include "eval/generate.h"
#include "progress.h"

#include <nlohmann/json.hpp>

namespace dmcli {
namespace {

struct GenerateCli {
  CommonOptions common;
  std::string prompt;
  std::string prompt_file;
  int64_t max_tokens = 128;
  float temperature = 0.8f;
  int top_k = 40;
  float top_p = 0.95f;
  float repeat_penalty = 1.0f;  // off, so --temperature 0 is the model's own greedy choice
  int repeat_window = 64;
  uint64_t seed = 0;
  std::vector<std::string> stop;
  int64_t max_prompt_tokens = 0;
  bool echo = false;
  bool quiet = false;
  std::string trace_json;  // prompt ids, generated ids and every decimating layer's kept indices
  bool force = false;
};

// Records each decimating layer's kept positions (within that layer's input) for --trace-json.
struct KeptTap : dm::PrefillTap {
  dm::Backend* backend = nullptr;
  nlohmann::json layers = nlohmann::json::array();
  void on_kept(int layer, const dm::Tensor& kept) override {
    std::vector<int32_t> idx(size_t(kept.rows));
    backend->download(*kept.buf, kept.offset, idx.data(), idx.size() * sizeof(int32_t));
    layers.push_back({{"layer", layer}, {"kept", idx}});
  }
};

// Files and stdin usually end with the newline an editor or `echo` added; the model should
// continue the text, not a new line after it.
std::string drop_final_newline(std::string s) {
  if (!s.empty() && s.back() == '\n') s.pop_back();
  if (!s.empty() && s.back() == '\r') s.pop_back();
  return s;
}

std::string read_prompt(const GenerateCli& c, bool prompt_given) {
  if (!c.prompt_file.empty())
    return drop_final_newline(read_text_file(c.prompt_file, "--prompt-file"));
  const bool from_stdin =
      (prompt_given && c.prompt == "-") || (!prompt_given && !isatty(STDIN_FILENO));
  if (from_stdin) {
    std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    return drop_final_newline(std::move(text));
  }
  if (!prompt_given)
    dm::fail("[cli] no prompt: give it as an argument, with --prompt-file FILE, or on stdin");
  return c.prompt;
}

// A newline is hard to type inside a shell argument: --stop '\n' means a newline.
std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      const char c = s[++i];
      out += c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
    } else {
      out += s[i];
    }
  }
  return out;
}

void write_out(const std::string& s) {
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fflush(stdout);
}

int run(GenerateCli& c, const CLI::App& cmd) {
  const bool prompt_given = cmd.count("prompt") + cmd.count("--prompt") > 0;
  const std::string text = read_prompt(c, prompt_given);
  if (text.empty()) dm::fail("[cli] the prompt is empty");
  check_output_file(c.trace_json, c.force);
  std::vector<std::string> stops;
  for (const auto& stop : c.stop) {
    if (stop.empty()) dm::fail("[cli] --stop: the stop string is empty");
    stops.push_back(unescape(stop));
  }

  Session s;
  open_backend(s, c.common);
  open_tokenizer(s, c.common);
  std::vector<int32_t> ids;
  if (s.tokenizer->add_bos() && s.tokenizer->bos_id() >= 0) ids.push_back(s.tokenizer->bos_id());
  const std::vector<int32_t> body = s.tokenizer->encode(text);
  ids.insert(ids.end(), body.begin(), body.end());
  if (body.empty()) dm::fail("[cli] the prompt is empty after tokenisation");
  if (c.max_prompt_tokens > 0 && int64_t(ids.size()) > c.max_prompt_tokens)
    dm::fail("[cli] prompt has ", ids.size(), " tokens, more than --max-prompt-tokens ",
             c.max_prompt_tokens);
  open_model(s, c.common);
  check_token_ids(s, ids);

  dm::GenerateOptions opts;
  opts.max_new_tokens = c.max_tokens;
  opts.protect_tail = c.common.protect_tail;
  opts.sampler.temperature = c.temperature;
  opts.sampler.top_k = c.top_k;
  opts.sampler.top_p = c.top_p;
  opts.sampler.repetition_penalty = c.repeat_penalty;
  opts.sampler.repetition_window = c.repeat_window;
  opts.sampler.seed = c.seed;
  opts.stop = stops;
  opts.eos_id = s.eos_id;
  opts.on_text = write_out;
  auto bar = std::make_unique<ProgressBar>("prefill", int64_t(ids.size()),
                                           want_progress(int64_t(ids.size()), c.quiet));
  opts.on_prefill_progress = [&bar](int done, int total) {
    bar->update(done, total);
    if (done == total) bar->finish();
  };

  KeptTap tap;
  tap.backend = s.backend.get();
  if (!c.trace_json.empty()) opts.tap = &tap;
  if (c.echo) write_out(text);
  const dm::GenerateResult r = dm::generate(*s.executor, *s.tokenizer, ids, opts);
  if (!c.trace_json.empty()) {
    nlohmann::json j;
    j["model"] = c.common.model_dir;
    j["backend"] = s.backend->name();
    j["decimation"] = dm::describe_decimation(s.executor->decimation());
    j["protect_tail"] = c.common.protect_tail;
    j["prompt_ids"] = ids;
    j["generated_ids"] = r.tokens;
    j["text"] = r.text;
    j["decimating_layers"] = tap.layers;
    write_text_file(c.trace_json, j.dump() + "\n");
  }
  bar.reset();
  if (isatty(STDOUT_FILENO) && !r.text.empty() && r.text.back() != '\n') write_out("\n");

  if (!c.quiet) {
    const double prefill_tps =
        r.prefill_seconds > 0 ? double(r.prompt_tokens) / r.prefill_seconds : 0;
    const double decode_tps = r.decode_seconds > 0 ? double(r.decode_steps) / r.decode_seconds : 0;
    std::string line = "stats: prompt " + std::to_string(r.prompt_tokens) + " tokens, prefill ";
    char buf[160];
    std::snprintf(buf, sizeof buf, "%.1f tok/s (%.3f s), decode %.1f tok/s (%zu tokens), stop: %s",
                  prefill_tps, r.prefill_seconds, decode_tps, r.tokens.size(),
                  r.stop_reason.c_str());
    line += buf;
    const std::string kept = kept_summary(*s.executor, r.prompt_tokens, c.common.protect_tail);
    line += kept.empty() ? ", decimation off" : ", kept " + kept;
    line += ", backend " + s.backend->name();
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  print_profile(s, c.common);
  return 0;
}

}  // namespace

RunFn add_generate(CLI::App& app) {
  auto c = std::make_shared<GenerateCli>();
  CLI::App* cmd = app.add_subcommand("generate", "Continue a prompt; new text streams to stdout");
  add_common_options(*cmd, c->common);
  auto* prompt = cmd->add_option("prompt", c->prompt, "Prompt text ('-': read stdin)");
  // llama.cpp's spellings (-p "text", -f FILE, --temp, -s), for hands used to them.
  auto* prompt_flag = cmd->add_option("-p,--prompt", c->prompt, "Prompt text, as the positional argument")
                          ->excludes(prompt);
  cmd->add_option("-f,--prompt-file", c->prompt_file, "Read the prompt from FILE")
      ->excludes(prompt)
      ->excludes(prompt_flag);
  cmd->add_option("-n,--max-tokens", c->max_tokens, "Most tokens to generate")
      ->check(kNonNegative)
      ->capture_default_str();
  cmd->add_option("--temperature,--temp", c->temperature, "0: greedy")
      ->check(between(0.0, 100.0))
      ->capture_default_str();
  cmd->add_option("--top-k", c->top_k, "Sample from the k likeliest (0: off)")
      ->check(kNonNegative)
      ->capture_default_str();
  cmd->add_option("--top-p", c->top_p, "Nucleus mass (1: off)")
      ->check(above(0))  // (0, 1]: a nucleus of mass 0 holds nothing
      ->check(between(0.0, 1.0))
      ->capture_default_str();
  cmd->add_option("--repeat-penalty", c->repeat_penalty, "CTRL repetition penalty (1: off)")
      ->check(kPositive)
      ->capture_default_str();
  cmd->add_option("--repeat-window", c->repeat_window, "Recent tokens the penalty looks at")
      ->check(kNonNegative)
      ->capture_default_str();
  cmd->add_option("-s,--seed", c->seed, "Sampling seed (runs are reproducible)")
      ->capture_default_str();
  cmd->add_option("--stop", c->stop,
                  "Stop when the output contains STRING (repeatable; \\n, \\t escapes)")
      ->allow_extra_args(false);
  cmd->add_option("--max-prompt-tokens", c->max_prompt_tokens,
                  "Refuse prompts longer than this (0: no limit)")
      ->check(kNonNegative);
  cmd->add_flag("--echo", c->echo, "Print the prompt before the generated text");
  cmd->add_flag("-q,--quiet", c->quiet, "No stats line and no progress bar on stderr");
  cmd->add_option("--trace-json", c->trace_json,
                  "Write prompt ids, generated ids and each decimating layer's kept indices");
  cmd->add_flag("--force", c->force, "Overwrite the --trace-json file");
  return [c, cmd] { return run(*c, *cmd); };
}

}  // namespace dmcli
