// Flags every subcommand shares (model, backend, decimation) and what they turn into: an
// opened model with its tokenizer, a backend and an executor. Also the small helpers the
// subcommands share (JSON output files, number parsing).
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/decimation.h"
#include "model/executor.h"
#include "model/weights.h"
#include "text/tokenizer.h"

namespace dmcli {

// Checks for numeric flags that fail with one short line ("--top-k: must be >= 0, got -3"):
// CLI11 2.1's NonNegativeNumber / PositiveNumber print their upper bound, the largest double, in
// full (a 300-digit number), and its Range prints doubles with six decimals. NaN fails all.
CLI::Validator at_least(double lo);            // x >= lo
CLI::Validator above(double lo);               // x > lo
CLI::Validator between(double lo, double hi);  // lo <= x <= hi
inline const CLI::Validator kNonNegative = at_least(0);
inline const CLI::Validator kPositive = above(0);

struct CommonOptions {
  std::string model_dir = DM_DEFAULT_MODEL_DIR;
  std::string backend = "auto";
  int device = 0;
  std::string deci_preset;  // "" when not given
  std::vector<int> deci_layers;
  std::optional<double> deci_L_base;
  std::optional<double> deci_beta;
  std::optional<int64_t> deci_min_seq_len;
  bool no_deci = false;
  int64_t protect_tail = 1;  // prompt tokens never decimated (generate, passkey)
  bool profile = false;  // per-kernel device times (Vulkan timestamp queries)
};

// `with_backend`: the subcommand runs the model (info does not).
void add_common_options(CLI::App& cmd, CommonOptions& o, bool with_backend = true);

// The flags turned into a decimation config checked against the model (dm::Error if not valid).
// Without any decimation flag decimation is off: the presets fit particular fine-tunes.
dm::DecimationConfig resolve_decimation(const CommonOptions& o, const dm::ModelConfig& cfg);

// "12,13" or "12-20" or "12,14-16": parsed by add_common_options; exposed for tests.
std::vector<int> parse_layer_list(const std::string& text);

struct Session {
  std::unique_ptr<dm::Backend> backend;
  std::unique_ptr<dm::Model> model;
  std::unique_ptr<dm::Tokenizer> tokenizer;
  std::unique_ptr<dm::Executor> executor;
  int32_t eos_id = -1;
};

// Every command that runs the model ends with this: with --profile on, the table (per kernel:
// calls, total and mean device time) on stderr.
void print_profile(const Session& s, const CommonOptions& o);

// Fails with "[model] DIR: no such directory" before anything else when DIR is missing.
void require_model_dir(const std::string& dir);
// The steps in the order their errors should surface: the backend (an unavailable one is
// the error to report whatever else is wrong), the model directory, the tokenizer (so prompt
// checks come before the weights are mapped), then the model and the executor.
void open_backend(Session& s, const CommonOptions& o);
void open_tokenizer(Session& s, const CommonOptions& o);
void open_model(Session& s, const CommonOptions& o);
Session open_session(const CommonOptions& o);  // all of the above
// Every id must have an embedding row (a tokenizer from another model would not).
void check_token_ids(const Session& s, const std::vector<int32_t>& ids);

// --json OUT refuses an existing file unless --force; checked before the work starts.
void check_output_file(const std::string& path, bool force);
void write_text_file(const std::string& path, const std::string& text);
std::string read_text_file(const std::string& path, const std::string& what);

// One line per decimating layer of the executor's config: "layer 12 keeps 2001 of 8000".
std::string kept_summary(const dm::Executor& exec, int64_t prompt_tokens, int64_t protect_tail);

}  // namespace dmcli
