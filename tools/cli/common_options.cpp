#include "common_options.h"

#include "backend/cuda/cuda_profile.h"
#include "backend/vulkan/vulkan_backend.h"

#include <charconv>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace dmcli {

namespace fs = std::filesystem;

namespace {

// The shortest text that reads back as v: 0, 1, 1e-300, 0.999999, 1073741824.
std::string shortest(double v) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

// A validator of numbers for which ok(x) holds; `want` says which ("must be >= 0").
template <class Ok>
CLI::Validator number_check(Ok ok, const std::string& want, const std::string& name) {
  return CLI::Validator(
      [ok, want](std::string& text) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(text, v)) return "must be a number, got " + text;
        return ok(v) ? std::string() : want + ", got " + text;
      },
      name);
}

}  // namespace

CLI::Validator at_least(double lo) {
  return number_check([lo](double v) { return v >= lo; }, "must be >= " + shortest(lo),
                      lo == 0 ? "NONNEGATIVE" : ">= " + shortest(lo));
}
CLI::Validator above(double lo) {
  return number_check([lo](double v) { return v > lo; }, "must be > " + shortest(lo),
                      lo == 0 ? "POSITIVE" : "> " + shortest(lo));
}
CLI::Validator between(double lo, double hi) {
  const std::string range = "in [" + shortest(lo) + ", " + shortest(hi) + "]";
  return number_check([lo, hi](double v) { return v >= lo && v <= hi; }, "must be " + range,
                      range);
}

std::vector<int> parse_layer_list(const std::string& text) {
  std::vector<int> layers;
  auto number = [&](const std::string& s) {
    if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos || s.size() > 6)
      dm::fail("[cli] --deci-layers: '", s,
               "' is not a layer index (0-based, e.g. 12,13 or 12-20)");
    return std::stoi(s);
  };
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const size_t dash = item.find('-');
    if (dash == std::string::npos) {
      layers.push_back(number(item));
      continue;
    }
    const int a = number(item.substr(0, dash)), b = number(item.substr(dash + 1));
    if (b < a) dm::fail("[cli] --deci-layers: range '", item, "' runs backwards");
    for (int l = a; l <= b; ++l) layers.push_back(l);
  }
  if (layers.empty()) dm::fail("[cli] --deci-layers: no layers in '", text, "'");
  for (size_t i = 1; i < layers.size(); ++i) {
    if (layers[i] <= layers[i - 1])
      dm::fail("[cli] --deci-layers: layers must be ascending and distinct, got '", text, "'");
  }
  return layers;
}

void add_common_options(CLI::App& cmd, CommonOptions& o, bool with_backend) {
  cmd.add_option("-m,--model", o.model_dir, "Model directory (config.json, weights, tokenizer)")
      ->capture_default_str();
  if (!with_backend) return;
  cmd.add_option("--backend", o.backend, "cpu | vulkan | cuda | auto (the fastest present)")
      ->check(CLI::IsMember({"cpu", "vulkan", "cuda", "auto"}))
      ->capture_default_str();
  cmd.add_option("--device", o.device, "GPU index for vulkan / cuda")
      ->check(kNonNegative)
      ->capture_default_str();

  auto* preset = cmd.add_option("--deci", o.deci_preset, "DeciMamba preset")
                     ->check(CLI::IsMember(dm::decimation_preset_names()));
  auto* layers =
      cmd.add_option_function<std::string>(
             "--deci-layers", [&o](const std::string& s) { o.deci_layers = parse_layer_list(s); },
             "Decimating layers, 0-based: 12,13 or 12-20")
          ->check(CLI::Validator(
              [](std::string& s) {
                try {
                  parse_layer_list(s);
                  return std::string();
                } catch (const dm::Error& e) {
                  // CLI11 names the flag itself.
                  const std::string msg = e.what(), prefix = "[cli] --deci-layers: ";
                  return msg.rfind(prefix, 0) == 0 ? msg.substr(prefix.size()) : msg;
                }
              },
              "LAYERS"));
  auto* L_base = cmd.add_option_function<double>(
                        "--deci-L-base", [&o](const double& v) { o.deci_L_base = v; },
                        "Tokens the first decimating layer keeps")
                     ->check(kPositive);
  auto* beta = cmd.add_option_function<double>(
                      "--deci-beta", [&o](const double& v) { o.deci_beta = v; },
                      "Decay of the kept count per decimating layer")
                   ->check(between(0.0, 1.0));
  auto* min_len = cmd.add_option_function<int64_t>(
                         "--deci-min-seq-len", [&o](const int64_t& v) { o.deci_min_seq_len = v; },
                         "Fewest tokens a decimating layer keeps")
                      ->check(kNonNegative);
  auto* off = cmd.add_flag("--no-deci", o.no_deci, "Run vanilla Mamba (no decimation)");
  cmd.add_option("--deci-protect-tail", o.protect_tail,
                 "Last prompt tokens never decimated (the authors' generate(): 1)")
      ->check(kPositive)
      ->capture_default_str();
  cmd.add_flag("--profile", o.profile,
               "Print device times per kernel at the end, on stderr (Vulkan timestamp queries; "
               "on CUDA, events around each backend call)");
  for (auto* opt : {preset, layers, L_base, beta, min_len}) off->excludes(opt);
}

dm::DecimationConfig resolve_decimation(const CommonOptions& o, const dm::ModelConfig& cfg) {
  const bool any_field =
      !o.deci_layers.empty() || o.deci_L_base || o.deci_beta || o.deci_min_seq_len;
  if (o.no_deci) return dm::decimation_preset("off");
  // No option at all: the model's own default (config.json "decimamba" block), else off.
  if (o.deci_preset.empty() && !any_field)
    return cfg.default_decimation ? *cfg.default_decimation : dm::decimation_preset("off");
  dm::DecimationConfig d;
  if (!o.deci_preset.empty()) d = dm::decimation_preset(o.deci_preset);
  if (!o.deci_layers.empty()) d.layers = o.deci_layers;
  if (o.deci_L_base) d.L_base = *o.deci_L_base;
  if (o.deci_beta) d.beta = *o.deci_beta;
  if (o.deci_min_seq_len) d.min_seq_len = *o.deci_min_seq_len;
  // Tuning a field of the "off" preset (or giving fields alone) means: decimate.
  if (any_field) d.enabled = true;
  if (d.enabled && d.layers.empty())
    dm::fail(
        "[cli] decimation is on but no layer decimates: give --deci-layers or a --deci preset");
  dm::validate_decimation(d, cfg.n_layer);
  return d;
}

void require_model_dir(const std::string& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) dm::fail("[model] ", dir, ": no such directory");
  if (!fs::is_directory(dir, ec)) dm::fail("[model] ", dir, ": not a directory");
}

void open_backend(Session& s, const CommonOptions& o) {
  s.backend = dm::create_backend(o.backend, o.device);
  if (o.profile && !dm::vulkan_set_profiling(*s.backend, true) &&
      !dm::cuda_set_profiling(*s.backend, true))
    dm::fail("[cli] --profile times kernels on the GPU: it needs --backend vulkan or cuda (this "
             "run uses ", s.backend->name(), ")");
}

void print_profile(const Session& s, const CommonOptions& o) {
  if (!o.profile || !s.backend) return;
  const std::string table = s.backend->name() == "cuda" ? dm::cuda_profile_table(*s.backend)
                                                        : dm::vulkan_profile_table(*s.backend);
  std::fprintf(stderr, "%s", table.c_str());
}

void open_tokenizer(Session& s, const CommonOptions& o) {
  require_model_dir(o.model_dir);
  s.tokenizer = dm::load_tokenizer(o.model_dir);
  s.eos_id = s.tokenizer->eos_id();
}

void open_model(Session& s, const CommonOptions& o) {
  DM_ASSERT(s.backend && s.tokenizer, "open the backend and the tokenizer first");
  s.model = dm::load_model(o.model_dir);
  const dm::DecimationConfig deci = resolve_decimation(o, s.model->config);
  s.executor = std::make_unique<dm::Executor>(*s.backend, *s.model, deci);
  if (s.model->config.eos_token_id >= 0) s.eos_id = s.model->config.eos_token_id;
}

Session open_session(const CommonOptions& o) {
  Session s;
  open_backend(s, o);
  open_tokenizer(s, o);
  open_model(s, o);
  return s;
}

void check_token_ids(const Session& s, const std::vector<int32_t>& ids) {
  const int64_t rows = s.model->config.padded_vocab;
  for (int32_t id : ids) {
    if (id < 0 || id >= rows)
      dm::fail("[cli] the tokenizer gave token id ", id, " but the model has ", rows,
               " embedding rows (tokenizer and model do not match)");
  }
}

void check_output_file(const std::string& path, bool force) {
  if (path.empty()) return;
  std::error_code ec;
  if (fs::exists(path, ec) && !force)
    dm::fail("[cli] ", path, ": already exists (pass --force to overwrite)");
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty() && !fs::is_directory(parent, ec))
    dm::fail("[cli] ", path, ": no such directory ", parent.string());
}

void write_text_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) dm::fail("[cli] ", path, ": cannot open for writing");
  out << text;
  out.close();
  if (!out) dm::fail("[cli] ", path, ": write failed");
}

std::string read_text_file(const std::string& path, const std::string& what) {
  // A pipe is fine (perplexity <(zcat book.gz)); a directory is not.
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) dm::fail("[cli] ", what, " ", path, ": no such file");
  if (fs::is_directory(st)) dm::fail("[cli] ", what, " ", path, ": is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) dm::fail("[cli] ", what, " ", path, ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string kept_summary(const dm::Executor& exec, int64_t prompt_tokens, int64_t protect_tail) {
  const auto& d = exec.decimation();
  if (!d.enabled || d.layers.empty()) return "";
  const std::vector<int64_t> len = exec.layer_lengths(prompt_tokens, protect_tail);
  std::ostringstream os;
  for (size_t i = 0; i < d.layers.size(); ++i) {
    const int l = d.layers[i];
    if (l < 0 || size_t(l) >= len.size()) continue;
    const int64_t in = l == 0 ? prompt_tokens : len[size_t(l) - 1];
    os << (i ? ", " : "") << "layer " << l << " " << len[size_t(l)] << "/" << in;
  }
  return os.str();
}

}  // namespace dmcli
