// decimamba passkey: DeciMamba's passkey-retrieval grid, depths × context lengths.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <memory>

#include "commands.h"
#include "common_options.h"
#include "core/error.h"
#include "eval/passkey.h"
#include "progress.h"

namespace dmcli {
namespace {

struct PasskeyCli {
  CommonOptions common;
  std::vector<double> depths{0, 0.25, 0.5, 0.75, 1};
  std::vector<int64_t> lengths{1024, 2048, 4096};
  int keys = 1;
  std::string filler;
  uint64_t seed = 0;
  int64_t max_new_tokens = 10;
  std::string json;
  bool force = false;
  bool quiet = false;
};

void print_table(const PasskeyCli& c, const dm::PasskeyResult& r) {
  std::printf("%-14s", "depth \\ length");
  for (int64_t len : c.lengths) std::printf(" %8lld", (long long)len);
  std::printf("\n");
  bool any_substring = false;
  for (size_t d = 0; d < c.depths.size(); ++d) {
    std::printf("%-14.2f", c.depths[d]);
    for (size_t l = 0; l < c.lengths.size(); ++l) {
      const dm::PasskeyCell& cell = r.cells[d * c.lengths.size() + l];
      const bool star = cell.by_substring > 0;
      any_substring |= star;
      std::printf(" %7.2f%s", cell.success(), star ? "*" : " ");
    }
    std::printf("\n");
  }
  if (any_substring)
    std::printf(
        "* some keys were found only inside a longer word (e.g. \"12345.\"), not as a "
        "whole word as the authors' rule requires\n");
}

// The model's answer on one log line: control characters shown as escapes.
std::string printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '\n')
      out += "\\n";
    else if (c == '\t')
      out += "\\t";
    else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += char(c);
    }
  }
  return out;
}

nlohmann::json to_json(const PasskeyCli& c, const Session& s, const dm::PasskeyResult& r) {
  nlohmann::json j;
  j["model"] = c.common.model_dir;
  j["backend"] = s.backend->name();
  j["device"] = s.backend->device_name();
  j["decimation"] = dm::describe_decimation(s.executor->decimation());
  j["depths"] = c.depths;
  j["lengths"] = c.lengths;
  j["keys_per_cell"] = c.keys;
  j["seed"] = c.seed;
  j["filler"] = c.filler.empty() ? std::string("built-in") : c.filler;
  j["max_new_tokens"] = c.max_new_tokens;
  j["cells"] = nlohmann::json::array();
  for (const auto& cell : r.cells) {
    j["cells"].push_back({{"depth", cell.depth},
                          {"length", cell.length},
                          {"n", cell.n},
                          {"found_as_word", cell.by_words},
                          {"found_as_substring_only", cell.by_substring},
                          {"success", cell.success()},
                          {"decimated", cell.decimated},
                          {"needle_survived_whole", cell.needle_whole}});
  }
  j["samples"] = nlohmann::json::array();
  for (const auto& smp : r.samples) {
    j["samples"].push_back({{"depth", smp.depth},
                            {"length", smp.length},
                            {"prompt_tokens", smp.prompt_tokens},
                            {"key", smp.key},
                            {"output", smp.output},
                            {"rule", smp.rule},
                            {"seconds", smp.seconds},
                            {"needle_tokens", smp.needle_tokens},
                            {"needle_kept", smp.needle_kept}});
  }
  return j;
}

int run(PasskeyCli& c) {
  check_output_file(c.json, c.force);
  for (double d : c.depths) {
    if (!(d >= 0 && d <= 1)) dm::fail("[cli] --depths: ", d, " is not in [0, 1]");
  }
  dm::PasskeyOptions opts;
  opts.depths = c.depths;
  opts.lengths = c.lengths;
  opts.keys_per_cell = c.keys;
  opts.seed = c.seed;
  opts.protect_tail = c.common.protect_tail;
  opts.max_new_tokens = c.max_new_tokens;
  if (!c.filler.empty())
    opts.filler = dm::split_sentences(read_text_file(c.filler, "--filler"), c.filler);

  Session s = open_session(c.common);
  opts.eos_id = s.eos_id;

  std::unique_ptr<ProgressBar> bar;
  auto progress = [&](int64_t tokens, int done, int total) {
    if (!want_progress(tokens, c.quiet)) return;
    if (!bar) bar = std::make_unique<ProgressBar>("prefill", tokens, true);
    bar->update(done, total);
    if (done == total) bar.reset();
  };
  auto on_sample = [&](const dm::PasskeySample& smp) {
    if (c.quiet) return;
    const std::string verdict = smp.rule.empty() ? "missed" : "found (" + smp.rule + ")";
    const std::string kept =
        smp.needle_kept < 0 ? ""
                            : ", needle " + std::to_string(smp.needle_kept) + "/" +
                                  std::to_string(smp.needle_tokens) + " tokens kept";
    std::fprintf(stderr, "depth %.2f length %lld (%lld tokens) key %s -> \"%s\" %s %.1f s%s\n",
                 smp.depth, (long long)smp.length, (long long)smp.prompt_tokens, smp.key.c_str(),
                 printable(smp.output).c_str(), verdict.c_str(), smp.seconds, kept.c_str());
  };
  const dm::PasskeyResult r = dm::run_passkey(*s.executor, *s.tokenizer, opts, on_sample, progress);
  bar.reset();

  std::printf("passkey retrieval, %d key%s per cell, decimation: %s\n", c.keys,
              c.keys == 1 ? "" : "s", dm::describe_decimation(s.executor->decimation()).c_str());
  print_table(c, r);
  if (!c.json.empty()) write_text_file(c.json, to_json(c, s, r).dump(2) + "\n");
  print_profile(s, c.common);
  return 0;
}

}  // namespace

RunFn add_passkey(CLI::App& app) {
  auto c = std::make_shared<PasskeyCli>();
  CLI::App* cmd = app.add_subcommand(
      "passkey",
      "DeciMamba passkey retrieval: a 5-digit key hidden at each depth of filler "
      "text of each length, answered greedily");
  add_common_options(*cmd, c->common);
  cmd->add_option("--depths", c->depths, "Needle depths in [0, 1]")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--lengths", c->lengths, "Context lengths in tokens")
      ->delimiter(',')
      ->check(kPositive)
      ->capture_default_str();
  cmd->add_option("--keys", c->keys, "Keys per cell")
      ->check(kPositive)
      ->capture_default_str();
  cmd->add_option("--filler", c->filler, "Filler text file (default: built-in sentences)");
  cmd->add_option("--seed", c->seed, "Seed of the keys")->capture_default_str();
  cmd->add_option("--max-new-tokens", c->max_new_tokens, "Answer length in tokens")
      ->check(kPositive)
      ->capture_default_str();
  cmd->add_option("--json", c->json, "Write cells and samples as JSON to OUT");
  cmd->add_flag("--force", c->force, "Overwrite the --json file");
  cmd->add_flag("-q,--quiet", c->quiet, "No per-sample lines or progress on stderr");
  return [c] { return run(*c); };
}

}  // namespace dmcli
