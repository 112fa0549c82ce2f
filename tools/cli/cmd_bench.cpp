// decimamba bench: prefill (pp N) and decode (tg N) tokens/s on every backend present (or those
// named), side by side in one run, in the spirit of llama-bench. Each test runs once to warm up
// (not counted), then -r times; the table gives the median and the spread (min–max) of tokens/s
// and the median µs per token. A model directory, or a random-weight model of a published shape
// (timing only: the weights are noise). Decimation off, and on as well when a config is given
// (it changes prefill only: decode never decimates, so tg runs once, with decimation off).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "commands.h"
#include "common_options.h"
#include "core/error.h"
#include "model/greedy_stream.h"
#include "model/random_model.h"

namespace dmcli {
namespace {

struct BenchOptions {
  CommonOptions common;  // model_dir, device, decimation fields (backend unused)
  std::string shape, dtype = "f16", backends, replay = "on", pick = "logits", json_path;
  std::vector<int> pp{512}, tg{128};
  int reps = 5;
  uint64_t seed = 1;
  bool force = false;
};

struct Stats {
  double median = 0, min = 0, max = 0, stdev = 0;
};

Stats stats_of(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  s.median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  s.min = v.front();
  s.max = v.back();
  double mean = 0;
  for (double x : v) mean += x;
  mean /= double(n);
  double var = 0;
  for (double x : v) var += (x - mean) * (x - mean);
  s.stdev = n > 1 ? std::sqrt(var / double(n - 1)) : 0;
  return s;
}

struct Row {
  std::string backend, device, deci, test, decode;
  int64_t n_tokens = 0;
  std::vector<double> tps;  // tokens/s of each counted repetition
  Stats st;
};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

int64_t weight_bytes(const dm::Model& m) {
  int64_t b = 0;
  auto add = [&](const dm::HostTensor* t) { b += t ? int64_t(t->bytes) : 0; };
  const auto& w = m.weights;
  add(w.embedding);
  add(w.norm_f);
  if (!w.tied) add(w.lm_head);
  for (const auto& l : w.layers)
    for (const dm::HostTensor* t : {l.norm, l.in_proj, l.in_proj_bias, l.conv_weight, l.conv_bias,
                                    l.x_proj, l.dt_proj, l.dt_bias, l.A_log, l.D, l.out_proj,
                                    l.out_proj_bias})
      add(t);
  return b;
}

std::string fmt(double v, int prec) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", prec, v);
  return buf;
}
int prec_for(double v) { return v >= 100 ? 0 : v >= 10 ? 1 : 2; }

int run_bench(BenchOptions& o) {
  using clock = std::chrono::steady_clock;
  check_output_file(o.json_path, o.force);
  // As llama-bench: a length of 0 asks for no test of that kind (-n 0: prefill only).
  std::erase(o.pp, 0);
  std::erase(o.tg, 0);
  if (o.pp.empty() && o.tg.empty())
    dm::fail("[cli] nothing to measure: every -p and -n length is 0");

  // The backends: those named, in that order (each must start), or every one present except
  // CPU emulations of GPU APIs (lavapipe), which would take minutes on a real shape.
  std::vector<std::string> names;
  if (!o.backends.empty()) {
    names = split_list(o.backends);
  } else {
    for (const auto& b : dm::list_backends()) {
      if (b.available && !b.software) names.push_back(b.name);
      else if (b.available)
        std::fprintf(stderr, "bench: skipping %s (%s, emulated on the CPU; name it in --backend to include it)\n",
                     b.name.c_str(), b.detail.c_str());
    }
  }

  // The model.
  std::unique_ptr<dm::RandomModel> random;
  std::unique_ptr<dm::Model> loaded;
  const dm::Model* model = nullptr;
  std::string model_desc;
  const bool is_random = !o.shape.empty();
  if (is_random) {
    const dm::DType dt = o.dtype == "f32" ? dm::DType::F32 : o.dtype == "bf16" ? dm::DType::BF16 : dm::DType::F16;
    random = dm::make_random_model(o.shape, dt, o.seed);
    model = &random->model;
    model_desc = "random " + o.shape + " shape, " + o.dtype + " weights (timing only: the weights are noise)";
  } else {
    require_model_dir(o.common.model_dir);
    loaded = dm::load_model(o.common.model_dir);
    model = loaded.get();
    model_desc = o.common.model_dir + " (" + std::string(dm::dtype_name(model->weights.dtype)) + " weights)";
  }
  const dm::ModelConfig& cfg = model->config;

  // Decimation: off, plus the configured one when flags are given (--no-deci: off only).
  std::vector<std::pair<std::string, dm::DecimationConfig>> decis{{"off", dm::decimation_preset("off")}};
  {
    const dm::DecimationConfig d = resolve_decimation(o.common, cfg);
    if (d.enabled) decis.emplace_back(o.common.deci_preset.empty() ? dm::describe_decimation(d)
                                                                   : o.common.deci_preset,
                                      d);
  }
  std::vector<bool> replay_modes;
  if (o.replay == "on" || o.replay == "both") replay_modes.push_back(true);
  if (o.replay == "off" || o.replay == "both") replay_modes.push_back(false);
  std::vector<bool> greedy_modes;  // what a step hands back: the logits, or the device's pick
  if (o.pick == "logits" || o.pick == "both") greedy_modes.push_back(false);
  if (o.pick == "greedy" || o.pick == "both") greedy_modes.push_back(true);

  const int64_t wbytes = weight_bytes(*model);
  std::printf("model: %s\n", model_desc.c_str());
  std::printf("shape: %lld layers, d_model %lld, d_inner %lld, vocab %lld; %.1f M parameters, %.1f MB of weights read per decode token\n",
              (long long)cfg.n_layer, (long long)cfg.d_model, (long long)cfg.d_inner,
              (long long)cfg.padded_vocab, double(model->parameter_count()) / 1e6, double(wbytes) / 1e6);
  std::printf("%d repetitions after one warm-up run; t/s: median (min–max); tg: batch 1, every token's logits downloaded%s\n\n",
              o.reps, o.pick == "logits" ? "" : " (greedy: the device's argmax instead, 4 bytes)");
  std::fflush(stdout);

  std::mt19937 rng(uint32_t(o.seed));
  std::uniform_int_distribution<int32_t> tok(0, int32_t(std::min<int64_t>(cfg.vocab_size, cfg.padded_vocab) - 1));
  auto random_tokens = [&](int n) {
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (auto& x : t) x = tok(rng);
    return t;
  };

  std::vector<Row> rows;
  for (const std::string& name : names) {
    std::unique_ptr<dm::Backend> be = dm::create_backend(name, o.common.device);
    dm::Executor ex(*be, *model);
    auto state = ex.new_state();
    for (const auto& [deci_name, deci] : decis) {
      ex.set_decimation(deci);
      for (int n : o.pp) {
        const auto prompt = random_tokens(n);
        Row r{name, be->device_name(), deci_name, "pp" + std::to_string(n), "", n, {}, {}};
        for (int rep = -1; rep < o.reps; ++rep) {
          state->reset();
          be->synchronize();
          const auto t0 = clock::now();
          ex.prefill(prompt, *state);
          const double s = std::chrono::duration<double>(clock::now() - t0).count();
          if (rep >= 0) r.tps.push_back(double(n) / s);
        }
        rows.push_back(std::move(r));
      }
      if (deci.enabled) continue;  // decode never decimates
      std::vector<float> logits;  // reused: one allocation for every step
      for (bool replay : replay_modes) {
        ex.set_step_replay(replay);
        for (bool greedy : greedy_modes)
          for (int n : o.tg) {
            const auto tokens = random_tokens(n);
            Row r{name, be->device_name(), deci_name, "tg" + std::to_string(n), "", n, {}, {}};
            const auto before = ex.step_stats();
            for (int rep = -1; rep < o.reps; ++rep) {
              state->reset();
              be->synchronize();
              const auto t0 = clock::now();
              if (greedy) {
                // As generation runs it (GreedyStream): each step fed the previous pick on the
                // device (the first a random id), steps enqueued ahead of the pick the host
                // waits for, greedy_unroll() steps a recording.
                dm::GreedyStream picks(ex, *state, cfg.vocab_size, tokens[0], n);
                for (int k = 0; k < n; ++k) picks.next();
              } else {
                for (int32_t t : tokens) ex.step(t, *state, logits);
              }
              const double s = std::chrono::duration<double>(clock::now() - t0).count();
              if (rep >= 0) r.tps.push_back(double(n) / s);
            }
            r.decode = ex.step_stats().replayed > before.replayed ? "replay" : "eager";
            if (greedy) r.decode += ", greedy";
            rows.push_back(std::move(r));
          }
      }
      ex.set_step_replay(true);
    }
  }
  for (Row& r : rows) r.st = stats_of(r.tps);

  // The table.
  std::printf("| backend | device | deci | test | decode | t/s | min–max | µs/token |\n");
  std::printf("|---|---|---|---|---|---:|---:|---:|\n");
  for (const Row& r : rows) {
    std::printf("| %s | %s | %s | %s | %s | %s | %s–%s | %s |\n", r.backend.c_str(), r.device.c_str(),
                r.deci.c_str(), r.test.c_str(), r.decode.empty() ? "-" : r.decode.c_str(),
                fmt(r.st.median, prec_for(r.st.median)).c_str(), fmt(r.st.min, prec_for(r.st.min)).c_str(),
                fmt(r.st.max, prec_for(r.st.max)).c_str(), fmt(1e6 / r.st.median, 1).c_str());
  }
  std::fflush(stdout);

  if (!o.json_path.empty()) {
    nlohmann::json j;
    j["model"] = {{"source", is_random ? "random" : "directory"},
                  {"name", is_random ? o.shape : o.common.model_dir},
                  {"dtype", is_random ? o.dtype : std::string(dm::dtype_name(model->weights.dtype))},
                  {"timing_only", is_random},
                  {"n_layer", cfg.n_layer},
                  {"d_model", cfg.d_model},
                  {"parameters", model->parameter_count()},
                  {"weight_bytes", wbytes}};
    j["repetitions"] = o.reps;
    j["warmup_runs"] = 1;
    j["results"] = nlohmann::json::array();
    for (const Row& r : rows) {
      j["results"].push_back({{"backend", r.backend},
                              {"device", r.device},
                              {"deci", r.deci},
                              {"test", r.test},
                              {"kind", r.test.substr(0, 2)},
                              {"n_tokens", r.n_tokens},
                              {"decode", r.decode.empty() ? nlohmann::json() : nlohmann::json(r.decode)},
                              {"tokens_per_s",
                               {{"median", r.st.median}, {"min", r.st.min}, {"max", r.st.max}, {"stdev", r.st.stdev}}},
                              {"us_per_token_median", 1e6 / r.st.median},
                              {"samples_tokens_per_s", r.tps}});
    }
    write_text_file(o.json_path, j.dump(2) + "\n");
  }
  return 0;
}

}  // namespace

RunFn add_bench(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  CLI::App* cmd = app.add_subcommand(
      "bench", "Prefill and decode tokens/s on each backend, side by side (llama-bench style)");
  auto* model = cmd->add_option("-m,--model", o->common.model_dir, "Model directory")->capture_default_str();
  std::vector<std::string> shapes = dm::random_model_shapes();
  auto* shape = cmd->add_option("--shape", o->shape, "A random-weight model of this shape (timing only)")
                    ->check(CLI::IsMember(shapes));
  model->excludes(shape);
  cmd->add_option("--dtype", o->dtype, "Weight dtype of the random model")
      ->check(CLI::IsMember({"f16", "bf16", "f32"}))
      ->capture_default_str()
      ->needs(shape);
  cmd->add_option("--backend", o->backends,
                  "Comma-separated backends (cpu,vulkan,cuda); default: every one present")
      ->check(CLI::Validator(
          [](std::string& s) {
            const auto names = split_list(s);
            if (names.empty() || s.front() == ',' || s.back() == ',' || s.find(",,") != std::string::npos)
              return std::string("give backends as cpu,vulkan,cuda (no empty items)");
            for (const auto& n : names)
              if (n != "cpu" && n != "vulkan" && n != "cuda")
                return "unknown backend '" + n + "' (cpu, vulkan, cuda)";
            return std::string();
          },
          "LIST"));
  cmd->add_option("--device", o->common.device, "GPU index for vulkan / cuda")
      ->check(kNonNegative);
  cmd->add_option("-p,--pp", o->pp, "Prompt lengths to prefill (comma-separated; 0: no prefill test)")
      ->delimiter(',')
      ->check(kNonNegative)
      ->capture_default_str();
  cmd->add_option("-n,--tg", o->tg, "Tokens to decode (comma-separated; 0: no decode test)")
      ->delimiter(',')
      ->check(kNonNegative)
      ->capture_default_str();
  cmd->add_option("-r,--reps", o->reps, "Repetitions (after one warm-up run)")
      ->check(between(1, 1000))
      ->capture_default_str();
  cmd->add_option("--replay", o->replay, "Decode as a recorded unit replayed per token: on | off | both")
      ->check(CLI::IsMember({"on", "off", "both"}))
      ->capture_default_str();
  cmd->add_option("--pick", o->pick,
                  "What a decode step hands back: logits (every token's, downloaded) | greedy (the "
                  "device's argmax, 4 bytes: what greedy generation runs) | both")
      ->check(CLI::IsMember({"logits", "greedy", "both"}))
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "Seed of the random weights and tokens")->capture_default_str();
  cmd->add_option("--json", o->json_path, "Also write the results as JSON to this file");
  cmd->add_flag("--force", o->force, "Overwrite the --json file");

  CommonOptions& c = o->common;
  auto* preset = cmd->add_option("--deci", c.deci_preset, "DeciMamba preset (benchmarked besides off)")
                     ->check(CLI::IsMember(dm::decimation_preset_names()));
  auto* layers = cmd->add_option_function<std::string>(
      "--deci-layers", [&c](const std::string& s) { c.deci_layers = parse_layer_list(s); },
      "Decimating layers, 0-based: 12,13 or 12-20");
  auto* L_base = cmd->add_option_function<double>(
                        "--deci-L-base", [&c](const double& v) { c.deci_L_base = v; },
                        "Tokens the first decimating layer keeps")
                     ->check(kPositive);
  auto* beta = cmd->add_option_function<double>("--deci-beta", [&c](const double& v) { c.deci_beta = v; },
                                                "Decay of the kept count per decimating layer")
                   ->check(between(0.0, 1.0));
  auto* min_len = cmd->add_option_function<int64_t>(
                         "--deci-min-seq-len", [&c](const int64_t& v) { c.deci_min_seq_len = v; },
                         "Fewest tokens a decimating layer keeps")
                      ->check(kNonNegative);
  auto* off = cmd->add_flag("--no-deci", c.no_deci, "Benchmark decimation off only");
  for (auto* opt : {preset, layers, L_base, beta, min_len}) off->excludes(opt);

  return [o]() { return run_bench(*o); };
}

}  // namespace dmcli
