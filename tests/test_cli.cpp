// The decimamba executable, run as a subprocess: bad input gets one clear line and a non-zero
// exit (2 for usage, 1 for runtime errors); the subcommands work on a fixture model.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "backend/backend.h"
#include "backend_cache.h"
#include "cli_runner.h"
#include "test_paths.h"

namespace fs = std::filesystem;

namespace {

const std::string kCli = dm::test::cli_path();
const std::string kModel = dm::test::cli_fixture_model();
using Result = dm::test::CliResult;
using TempDir = dm::test::CliTempDir;
using dm::test::has;
using dm::test::lines;
using dm::test::run_cli;
using dm::test::slurp;
std::string quote(const std::string& s) { return dm::test::shell_quote(s); }

}  // namespace

// ---------------------------------------------------------------- usage errors (exit 2)

TEST(CliErrors, UnknownSubcommand) {
  const auto r = run_cli({"frobnicate"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(has(r.err, "unknown subcommand 'frobnicate'")) << r.err;
  EXPECT_TRUE(r.out.empty());
}

TEST(CliErrors, NoSubcommand) {
  const auto r = run_cli({});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(has(r.err, "decimamba: ")) << r.err;
}

TEST(CliErrors, UnknownFlag) {
  const auto r = run_cli({"generate", "--frobnicate", "hi"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(has(r.err, "--frobnicate")) << r.err;
}

TEST(CliErrors, BadFlagValues) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"generate", "--temperature", "warm", "hi"},
        {"generate", "-n", "-5", "hi"},
        {"generate", "--top-p", "1.5", "hi"},
        {"passkey", "--lengths", "1024,abc"},
        {"perplexity"},  // FILE is required
        {"generate", "--deci", "no-such-preset", "hi"},
        {"generate", "--no-deci", "--deci", "passkey-130m", "hi"}}) {
    const auto r = run_cli(args);
    EXPECT_EQ(r.code, 2) << args[1] << " " << r.err;
    EXPECT_TRUE(has(r.err, "decimamba: ")) << r.err;
  }
}

// A numeric flag out of its range is named in one short line that says what it wants (CLI11's
// own range checks printed the largest double in full: a 300-digit line).
TEST(CliErrors, NumericFlagErrorsAreOneShortLine) {
  struct Bad { std::vector<std::string> args; const char* says; };
  for (const Bad& b : {Bad{{"generate", "-n", "-1", "hi"}, "--max-tokens: must be >= 0, got -1"},
                       Bad{{"generate", "--top-k", "-3", "hi"}, "--top-k: must be >= 0, got -3"},
                       Bad{{"generate", "--top-p", "2", "hi"}, "--top-p: must be in [0, 1], got 2"},
                       Bad{{"generate", "--top-p", "0", "hi"}, "--top-p: must be > 0, got 0"},
                       Bad{{"generate", "--temperature", "nan", "hi"}, "must be in [0, 100], got nan"},
                       Bad{{"generate", "--repeat-penalty", "0", "hi"}, "must be > 0, got 0"},
                       Bad{{"generate", "--deci-L-base", "-5", "hi"}, "must be > 0, got -5"},
                       Bad{{"passkey", "--lengths", "1024,0"}, "--lengths: must be > 0, got 0"},
                       Bad{{"bench", "-p", "512,-1"}, "--pp: must be >= 0, got -1"},
                       Bad{{"bench", "-n", "-2"}, "--tg: must be >= 0, got -2"},
                       Bad{{"generate", "--top-k", "many", "hi"}, "must be a number, got many"},
                       Bad{{"perplexity", "x", "--window", "1"}, "must be in [2, 1073741824], got 1"}}) {
    const auto r = run_cli(b.args);
    EXPECT_EQ(r.code, 2) << b.args[1] << " " << b.args[2] << ": " << r.err;
    EXPECT_TRUE(has(r.err, b.says)) << r.err;
    EXPECT_LT(r.err.find('\n'), size_t(120)) << r.err;  // the first line is short
  }
}

TEST(CliErrors, UnknownBackend) {
  const auto r = run_cli({"generate", "--backend", "metal", "hi"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(has(r.err, "metal")) << r.err;
}

TEST(CliErrors, BadDeciLayers) {
  for (const char* layers : {"x", "3,2", "5,5", "12-", ""}) {
    const auto r = run_cli({"generate", "--deci-layers", layers, "hi"});
    EXPECT_EQ(r.code, 2) << "'" << layers << "': " << r.err;
    EXPECT_TRUE(has(r.err, "--deci-layers")) << r.err;
  }
}

// ---------------------------------------------------------------- runtime errors (exit 1)

TEST(CliErrors, MissingModelDirectory) {
  const auto r = run_cli({"generate", "--backend", "cpu", "--model", "/no/such/model", "hi"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "decimamba: [model] /no/such/model: no such directory\n");
  const auto i = run_cli({"info", "--model", "/no/such/model"});
  EXPECT_EQ(i.code, 1);
  EXPECT_EQ(i.err, "decimamba: [model] /no/such/model: no such directory\n");
}

TEST(CliErrors, EmptyPrompt) {
  const auto arg = run_cli({"generate", "--backend", "cpu", "--model", kModel, ""});
  EXPECT_EQ(arg.code, 1);
  EXPECT_EQ(arg.err, "decimamba: [cli] the prompt is empty\n");
  // Nothing on stdin (not a terminal) is an empty prompt too.
  const auto in = run_cli({"generate", "--backend", "cpu", "--model", kModel});
  EXPECT_EQ(in.code, 1);
  EXPECT_EQ(in.err, "decimamba: [cli] the prompt is empty\n");
  const auto newline = run_cli({"generate", "--backend", "cpu", "--model", kModel, "-"}, "\n");
  EXPECT_EQ(newline.code, 1);
  EXPECT_EQ(newline.err, "decimamba: [cli] the prompt is empty\n");
}

// Text files may be pipes or devices (perplexity <(zcat book.gz)): /dev/null is read (and is
// an empty prompt), a directory is refused by name.
TEST(CliErrors, TextFileMayBeAPipeButNotADirectory) {
  const auto dev = run_cli({"generate", "--backend", "cpu", "--model", kModel, "--prompt-file",
                            "/dev/null"});
  EXPECT_EQ(dev.code, 1);
  EXPECT_TRUE(has(dev.err, "the prompt is empty")) << dev.err;
  TempDir tmp;
  const auto dir = run_cli({"perplexity", tmp.path.string(), "--backend", "cpu", "--model", kModel});
  EXPECT_EQ(dir.code, 1);
  EXPECT_TRUE(has(dir.err, "is a directory")) << dir.err;
}

TEST(CliErrors, MissingPromptFile) {
  const auto r = run_cli({"generate", "--backend", "cpu", "--prompt-file", "/no/such/prompt.txt"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_TRUE(has(r.err, "/no/such/prompt.txt")) << r.err;
}

TEST(CliErrors, UnavailableBackendSaysWhy) {
  int tried = 0;
  for (const dm::BackendInfo& b : dm::list_backends()) {
    if (b.available) continue;
    ++tried;
    const auto r = run_cli({"generate", "--backend", b.name, "--model", kModel, "hi"});
    EXPECT_EQ(r.code, 1) << b.name;
    EXPECT_EQ(lines(r.err), 1) << r.err;
    EXPECT_TRUE(has(r.err, b.name)) << r.err;
    EXPECT_TRUE(has(r.err, b.detail)) << "the reason '" << b.detail << "' is missing: " << r.err;
  }
  if (tried == 0) GTEST_SKIP() << "every backend is available on this machine";
}

TEST(CliErrors, JsonRefusesToOverwrite) {
  TempDir tmp;
  const fs::path out = tmp.path / "result.json";
  std::ofstream(out) << "keep me";
  const auto pk = run_cli({"passkey", "--model", kModel, "--json", out.string()});
  EXPECT_EQ(pk.code, 1);
  EXPECT_TRUE(has(pk.err, "already exists")) << pk.err;
  EXPECT_TRUE(has(pk.err, "--force")) << pk.err;
  std::ofstream(tmp.path / "text.txt") << "some text";
  const auto pp = run_cli(
      {"perplexity", (tmp.path / "text.txt").string(), "--model", kModel, "--json", out.string()});
  EXPECT_EQ(pp.code, 1);
  EXPECT_TRUE(has(pp.err, "already exists")) << pp.err;
  EXPECT_EQ(slurp(out), "keep me");
}

TEST(CliErrors, PromptLongerThanTheLimit) {
  SKIP_WITHOUT_FIXTURE();
  const auto r = run_cli({"generate", "--backend", "cpu", "--model", kModel, "--max-prompt-tokens",
                          "3", "one two three four five six seven"});
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(has(r.err, "decimamba: [cli] prompt has ")) << r.err;
  EXPECT_TRUE(has(r.err, " tokens, more than --max-prompt-tokens 3\n")) << r.err;
  EXPECT_TRUE(r.out.empty());
}

TEST(CliErrors, DecimatingLayerOutsideTheModel) {
  SKIP_WITHOUT_FIXTURE();
  const auto r =
      run_cli({"generate", "--backend", "cpu", "--model", kModel, "--deci-layers", "99", "hi"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_TRUE(has(r.err, "99")) << r.err;
}

TEST(CliErrors, TextShorterThanTheWindow) {
  SKIP_WITHOUT_FIXTURE();
  TempDir tmp;
  std::ofstream(tmp.path / "short.txt") << "only a few words here";
  const auto r = run_cli({"perplexity", (tmp.path / "short.txt").string(), "--backend", "cpu",
                          "--model", kModel, "--window", "512"});
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(has(r.err, "fewer than the window")) << r.err;
}

// ---------------------------------------------------------------- working commands

TEST(CliInfo, PrintsShapesAndBackends) {
  SKIP_WITHOUT_FIXTURE();
  const auto r = run_cli({"info", "--model", kModel});
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* s : {"d_model 64", "n_layer 4", "d_inner 128", "d_state 16", "d_conv 4",
                        "dt_rank", "parameters", "tied", "sentencepiece", "cpu"}) {
    EXPECT_TRUE(has(r.out, s)) << "missing '" << s << "' in:\n" << r.out;
  }
}

TEST(CliGenerate, GreedyIsReproducibleAndStreamsToStdout) {
  SKIP_WITHOUT_FIXTURE();
  const std::vector<std::string> args{"generate", "--backend",       "cpu", "--model",
                                      kModel,     "--temperature",   "0",   "-n",
                                      "12",       "Once upon a time"};
  const auto a = run_cli(args);
  ASSERT_EQ(a.code, 0) << a.err;
  EXPECT_FALSE(a.out.empty());
  EXPECT_TRUE(has(a.err, "stats: prompt ")) << a.err;
  const auto b = run_cli(args);
  EXPECT_EQ(a.out, b.out);
  // The same prompt from stdin ("-", one final newline dropped) gives the same text.
  auto from_stdin = args;
  from_stdin.back() = "-";
  const auto c = run_cli(from_stdin, "Once upon a time\n");
  ASSERT_EQ(c.code, 0) << c.err;
  EXPECT_EQ(c.out, a.out);
  // --echo puts the prompt first; --quiet silences stderr.
  auto echo = args;
  echo.insert(echo.begin() + 1, {"--echo", "--quiet"});
  const auto d = run_cli(echo);
  ASSERT_EQ(d.code, 0) << d.err;
  EXPECT_EQ(d.out, "Once upon a time" + a.out);
  EXPECT_TRUE(d.err.empty()) << d.err;
}

// llama.cpp's spellings: -m for --model (every command); generate's -p (prompt), -f (prompt
// file), --temp, -s (seed); -p with the positional prompt or -f is a usage error, not a silent
// choice.
TEST(CliGenerate, ShortModelAndPromptFlags) {
  SKIP_WITHOUT_FIXTURE();
  const auto a = run_cli({"generate", "--backend", "cpu", "--model", kModel, "--temperature", "0",
                          "-n", "8", "Once upon a time"});
  ASSERT_EQ(a.code, 0) << a.err;
  const auto b = run_cli({"generate", "--backend", "cpu", "-m", kModel, "--temp", "0",
                          "-n", "8", "-p", "Once upon a time"});
  ASSERT_EQ(b.code, 0) << b.err;
  EXPECT_EQ(b.out, a.out);
  // Sampled: -s is --seed.
  const auto s1 = run_cli({"generate", "--backend", "cpu", "-m", kModel, "--seed", "7", "-n", "8",
                           "Once upon a time"});
  const auto s2 = run_cli({"generate", "--backend", "cpu", "-m", kModel, "-s", "7", "-n", "8",
                           "-p", "Once upon a time"});
  ASSERT_EQ(s1.code, 0) << s1.err;
  ASSERT_EQ(s2.code, 0) << s2.err;
  EXPECT_EQ(s2.out, s1.out);
  const auto both = run_cli({"generate", "--backend", "cpu", "-m", kModel, "-p", "a", "b"});
  EXPECT_NE(both.code, 0);
  EXPECT_TRUE(has(both.err, "excludes")) << both.err;
  const auto file = run_cli({"generate", "--backend", "cpu", "-m", kModel, "-p", "a",
                             "-f", "/dev/null"});
  EXPECT_NE(file.code, 0);
  EXPECT_TRUE(has(file.err, "excludes")) << file.err;
  const auto info = run_cli({"info", "-m", kModel});
  EXPECT_EQ(info.code, 0) << info.err;
}

TEST(CliGenerate, StopStringEndsTheOutputBeforeIt) {
  SKIP_WITHOUT_FIXTURE();
  std::vector<std::string> args{"generate", "--backend", "cpu", "--model", kModel, "--temperature",
                                "0",        "-n",        "24",  "--quiet", "The"};
  const auto free_run = run_cli(args);
  ASSERT_EQ(free_run.code, 0) << free_run.err;
  // Pick a stop string of plain ASCII from inside the free run.
  std::string stop;
  for (size_t i = 2; i + 2 <= free_run.out.size() && stop.empty(); ++i) {
    const std::string s = free_run.out.substr(i, 2);
    if (std::isalpha(static_cast<unsigned char>(s[0])) &&
        std::isalpha(static_cast<unsigned char>(s[1])))
      stop = s;
  }
  if (stop.empty()) GTEST_SKIP() << "no ASCII pair in the free run: " << free_run.out;
  args.insert(args.end() - 1, {"--stop", stop});
  const auto r = run_cli(args);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, free_run.out.substr(0, free_run.out.find(stop)));
}

TEST(CliGenerate, PipedOutputHasNoProgressCodes) {
  SKIP_WITHOUT_FIXTURE();
  // A prompt long enough for a progress bar on a terminal; through a pipe there is none.
  std::string prompt;
  while (prompt.size() < 12000) prompt += "The grass is green and the sky is blue. ";
  TempDir tmp;
  std::ofstream(tmp.path / "prompt.txt") << prompt;
  const std::string cmd = quote(kCli) + " generate --backend cpu --model " + quote(kModel) +
                          " --temperature 0 -n 4 --prompt-file " +
                          quote((tmp.path / "prompt.txt").string()) + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string all;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) all.append(buf, n);
  const int status = pclose(pipe);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0) << all;
  EXPECT_TRUE(has(all, "stats: prompt ")) << all;
  EXPECT_FALSE(has(all, "\x1b")) << "escape code in piped output";
  EXPECT_FALSE(has(all, "\r")) << "carriage return in piped output";
  EXPECT_FALSE(has(all, "layers")) << "progress text in piped output";
}

TEST(CliPerplexity, WritesTheSummaryAndJson) {
  SKIP_WITHOUT_FIXTURE();
  TempDir tmp;
  std::string text;
  for (int i = 0; i < 120; ++i) text += "It was a quiet day in the village and nothing happened. ";
  std::ofstream(tmp.path / "text.txt") << text;
  const fs::path out = tmp.path / "ppl.json";
  const auto r =
      run_cli({"perplexity", (tmp.path / "text.txt").string(), "--backend", "cpu", "--model",
               kModel, "--window", "128", "--scored", "32", "--json", out.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(has(r.out, "perplexity ")) << r.out;
  const auto j = nlohmann::json::parse(slurp(out));
  EXPECT_EQ(j["window"], 128);
  EXPECT_EQ(j["scored"], 32);
  EXPECT_EQ(j["decimation"], "off");
  const auto nll = j["window_nll"].get<std::vector<double>>();
  EXPECT_EQ(nll.size(), j["window_starts"].size());
  EXPECT_GE(nll.size(), 10u);
  double mean = 0;
  for (double x : nll) mean += x / double(nll.size());
  EXPECT_NEAR(j["perplexity"].get<double>(), std::exp(mean), 1e-9 * std::exp(mean));
  // Overwriting needs --force.
  const auto again =
      run_cli({"perplexity", (tmp.path / "text.txt").string(), "--backend", "cpu", "--model",
               kModel, "--window", "128", "--json", out.string(), "--force"});
  EXPECT_EQ(again.code, 0) << again.err;
  EXPECT_EQ(nlohmann::json::parse(slurp(out))["scored"], 100);
}

TEST(CliPasskey, PrintsTheGridAndJson) {
  SKIP_WITHOUT_FIXTURE();
  TempDir tmp;
  const fs::path out = tmp.path / "passkey.json";
  const auto r = run_cli({"passkey", "--backend", "cpu", "--model", kModel, "--depths", "0,0.5,1",
                          "--lengths", "128,256", "--keys", "2", "--json", out.string(),
                          "--deci-layers", "2", "--deci-L-base", "40"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(has(r.out, "depth \\ length")) << r.out;
  EXPECT_TRUE(has(r.out, "0.50")) << r.out;
  EXPECT_EQ(lines(r.err), 12) << "one line per sample:\n" << r.err;
  const auto j = nlohmann::json::parse(slurp(out));
  EXPECT_EQ(j["cells"].size(), 6u);
  EXPECT_EQ(j["samples"].size(), 12u);
  EXPECT_TRUE(has(j["decimation"].get<std::string>(), "layers 2")) << j["decimation"];
  for (const auto& s : j["samples"]) {
    EXPECT_LE(s["prompt_tokens"].get<int>(), s["length"].get<int>());
    EXPECT_EQ(s["key"].get<std::string>().size(), 5u);
  }
}

TEST(CliPasskey, ModelConfigDecimationIsTheDefaultAndNoDeciTurnsItOff) {
  SKIP_WITHOUT_FIXTURE();
  TempDir tmp;
  // A copy of the fixture model whose config.json names its decimation.
  const fs::path model = tmp.path / "model";
  fs::create_directories(model);
  for (const auto& e : fs::directory_iterator(kModel)) fs::copy(e.path(), model / e.path().filename());
  auto cfg = nlohmann::json::parse(slurp(model / "config.json"));
  cfg["decimamba"] = {{"decimation", {{"layers", {1}}, {"L_base", 40}}}};
  {
    std::ofstream(model / "config.json") << cfg.dump(2);
  }
  auto run = [&](std::vector<std::string> extra) {
    const fs::path out = tmp.path / "pk.json";
    std::vector<std::string> args = {"passkey", "--backend", "cpu", "--model", model.string(),
                                     "--depths", "0.5", "--lengths", "200", "--quiet",
                                     "--json", out.string(), "--force"};
    args.insert(args.end(), extra.begin(), extra.end());
    const auto r = run_cli(args);
    EXPECT_EQ(r.code, 0) << r.err;
    return nlohmann::json::parse(slurp(out));
  };
  const auto on = run({});
  EXPECT_TRUE(has(on["decimation"].get<std::string>(), "layers 1, L_base 40")) << on["decimation"];
  EXPECT_GE(on["samples"][0]["needle_kept"].get<int>(), 0);
  EXPECT_EQ(on["cells"][0]["decimated"], 1);
  const auto off = run({"--no-deci"});
  EXPECT_EQ(off["decimation"], "off");
  EXPECT_EQ(off["samples"][0]["needle_kept"], -1);
  const auto other = run({"--deci-layers", "2", "--deci-L-base", "60"});
  EXPECT_TRUE(has(other["decimation"].get<std::string>(), "layers 2, L_base 60"));
}

TEST(CliProfile, NeedsAGpuBackend) {
  const Result r = run_cli({"generate", "--model", kModel, "--backend", "cpu", "--profile", "hi"});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("--profile"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("vulkan or cuda"), std::string::npos) << r.err;
}

// Every command that runs the model prints the table when asked (perplexity, passkey and erf
// accepted --profile and printed nothing before session 12).
TEST(CliProfile, EveryModelCommandPrintsTheTable) {
  if (!dm::test::backend_available("vulkan")) GTEST_SKIP() << "no Vulkan device";
  TempDir tmp;
  std::string text;
  for (int i = 0; i < 20; ++i) text += "It was a quiet day in the village and nothing happened. ";
  std::ofstream(tmp.path / "text.txt") << text;
  const std::vector<std::vector<std::string>> runs = {
      {"perplexity", (tmp.path / "text.txt").string(), "--window", "64", "--scored", "16"},
      {"passkey", "--lengths", "200", "--depths", "0.5", "--keys", "1", "--quiet"},
      {"erf", "--tokens", "64"}};
  for (std::vector<std::string> args : runs) {
    for (const char* a : {"--backend", "vulkan", "--model", kModel.c_str(), "--profile"})
      args.push_back(a);
    const Result r = run_cli(args);
    ASSERT_EQ(r.code, 0) << args[0] << ": " << r.err;
    EXPECT_TRUE(has(r.err, "total ms") && has(r.err, "selective_scan")) << args[0] << ":\n"
                                                                      << r.err;
  }
}

TEST(CliProfile, PrintsPerKernelDeviceTimes) {
  if (!dm::test::backend_available("vulkan")) GTEST_SKIP() << "no Vulkan device";
  const Result r = run_cli({"generate", "--model", kModel, "--backend", "vulkan", "--profile",
                            "--temperature", "0", "-n", "3", "hello"});
  ASSERT_EQ(r.code, 0) << r.err;
  // Prefill kernels and a decode one: the scan step is a dispatch of its own in every decode
  // form, as selective_scan_step(.dt_proj_sg) in Backend's composition or as mamba_step.scan
  // (_xpart) in VulkanBackend::mamba_block_step (the conv step is not: it runs inside the
  // in_proj dispatch with the fused decode shaders on).
  for (const char* kernel : {"gemm", "selective_scan", "causal_conv1d", "rms_norm"})
    EXPECT_NE(r.err.find(kernel), std::string::npos) << kernel << " missing from:\n" << r.err;
  EXPECT_TRUE(r.err.find("selective_scan_step") != std::string::npos ||
              r.err.find("mamba_step.scan") != std::string::npos)
      << "no decode scan step in:\n" << r.err;
}

namespace {

const std::string kSmallBpe = dm::test::data_dir() + "/tokenizer/small_bpe.json";

TEST(CliTokenize, IdsMatchTokenizersAndSpecialsStayTextByDefault) {
  // Ids from Hugging Face tokenizers 0.23.3: Tokenizer.from_file(small_bpe.json)
  //   .encode("Hello  world<|endoftext|>").ids (it parses special tokens).
  const Result special = run_cli({"tokenize", "--tokenizer", kSmallBpe, "--parse-special",
                                  "--ids-only", "Hello  world<|endoftext|>"});
  ASSERT_EQ(special.code, 0) << special.err;
  EXPECT_EQ(special.out, "41 1390 80 2054 1576 315 0\n");
  // A prompt cannot inject <|endoftext|>: without --parse-special it is spelled out.
  const Result plain =
      run_cli({"tokenize", "--tokenizer", kSmallBpe, "--ids-only", "Hello  world<|endoftext|>"});
  ASSERT_EQ(plain.code, 0) << plain.err;
  EXPECT_EQ(plain.out.rfind("41 1390 80 2054 1576 315 ", 0), 0u) << plain.out;
  EXPECT_EQ(plain.out.find(" 0\n"), std::string::npos) << plain.out;
}

TEST(CliTokenize, MissingTokenizerFileIsAnError) {
  const Result r = run_cli({"tokenize", "--tokenizer", "/nonexistent/tokenizer.json", "x"});
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("/nonexistent/tokenizer.json"), std::string::npos) << r.err;
}

}  // namespace

namespace {

TEST(CliErrors, ProtectTailMustBePositive) {
  const Result r = run_cli({"generate", "--model", kModel, "--backend", "cpu",
                            "--deci-protect-tail", "0", "hello"});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("--deci-protect-tail"), std::string::npos) << r.err;
}

TEST(CliGenerate, ProtectTailReachesTheDecimationSummary) {
  // tiny-tied has 4 layers; a long prompt with layer 1 keeping 20 candidates: the stats line
  // reports 20 + r tokens leaving the layer, r being the protected tail.
  std::string prompt;
  for (int i = 0; i < 60; ++i) prompt += "word ";
  for (const char* r : {"1", "5"}) {
    const Result res = run_cli({"generate", "--model", kModel, "--backend", "cpu", "-n", "1",
                                "--temperature", "0", "--deci-layers", "1", "--deci-L-base", "20",
                                "--deci-protect-tail", r, prompt});
    ASSERT_EQ(res.code, 0) << res.err;
    const std::string want = "kept layer 1 " + std::to_string(20 + std::stoi(r)) + "/";
    EXPECT_NE(res.err.find(want), std::string::npos) << "want '" << want << "' in " << res.err;
  }
}

}  // namespace
