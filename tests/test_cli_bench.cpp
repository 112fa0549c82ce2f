// decimamba bench, run as a subprocess (like test_cli.cpp): on a fixture model with the CPU
// backend (and Vulkan where present, lavapipe here), the markdown table and the JSON have the
// documented shape; bad flags are usage errors (exit 2), runtime problems exit 1.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
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

// Table rows: lines starting with "| " after the header and separator.
std::vector<std::vector<std::string>> table_rows(const std::string& out) {
  std::vector<std::vector<std::string>> rows;
  std::stringstream ss(out);
  bool in_table = false;
  for (std::string line; std::getline(ss, line);) {
    if (line.rfind("| backend |", 0) == 0) {
      in_table = true;
      continue;
    }
    if (!in_table || line.rfind("|---", 0) == 0) continue;
    if (line.rfind("| ", 0) != 0) break;
    std::vector<std::string> cells;
    std::stringstream ls(line.substr(1));
    for (std::string cell; std::getline(ls, cell, '|');) {
      const size_t a = cell.find_first_not_of(' '), b = cell.find_last_not_of(' ');
      cells.push_back(a == std::string::npos ? "" : cell.substr(a, b - a + 1));
    }
    rows.push_back(cells);
  }
  return rows;
}

}  // namespace

TEST(CliBench, TableAndJsonOnFixtureModel) {
  SKIP_WITHOUT_FIXTURE();
  TempDir tmp;
  const std::string json = (tmp.path / "bench.json").string();
  const std::string backends = dm::test::backend_available("vulkan") ? "cpu,vulkan" : "cpu";
  const auto r = run_cli({"bench", "--model", kModel, "--backend", backends, "-p", "16,32", "-n",
                          "8", "-r", "3", "--replay", "both", "--deci-layers", "0",
                          "--deci-L-base", "4", "--json", json});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(has(r.out, "| backend | device | deci | test | decode | t/s | min–max | µs/token |")) << r.out;
  EXPECT_TRUE(has(r.out, "3 repetitions after one warm-up run")) << r.out;
  const auto rows = table_rows(r.out);
  const int n_be = dm::test::backend_available("vulkan") ? 2 : 1;
  // Per backend: pp16, pp32 with deci off and on; tg8 replayed and eager (deci off only).
  ASSERT_EQ(int(rows.size()), n_be * 6) << r.out;
  for (const auto& row : rows) {
    ASSERT_EQ(row.size(), 8u) << r.out;
    EXPECT_GT(std::stod(row[5]), 0) << r.out;
    EXPECT_NE(row[6].find("–"), std::string::npos) << r.out;
  }
  // Order per backend: deci off pp16, pp32, tg8 (replay), tg8 (eager); then the config's pp16, pp32.
  EXPECT_EQ(rows[0][0], "cpu");
  EXPECT_EQ(rows[0][2], "off");
  EXPECT_EQ(rows[0][3], "pp16");
  EXPECT_EQ(rows[0][4], "-");
  EXPECT_EQ(rows[1][3], "pp32");
  EXPECT_EQ(rows[2][3], "tg8");
  EXPECT_EQ(rows[2][4], "eager");  // replay asked for, but the CPU backend does not record
  EXPECT_EQ(rows[3][4], "eager");
  EXPECT_EQ(rows[4][3], "pp16");
  EXPECT_NE(rows[4][2], "off");  // the decimation config
  if (n_be == 2) {
    EXPECT_EQ(rows[6][0], "vulkan");
    EXPECT_EQ(rows[8][3], "tg8");
    EXPECT_EQ(rows[8][4], "replay");
    EXPECT_EQ(rows[9][4], "eager");
  }

  const auto j = nlohmann::json::parse(slurp(json));
  EXPECT_EQ(j["model"]["source"], "directory");
  EXPECT_EQ(j["model"]["timing_only"], false);
  EXPECT_EQ(j["repetitions"], 3);
  ASSERT_EQ(int(j["results"].size()), n_be * 6);
  for (const auto& res : j["results"]) {
    EXPECT_EQ(res["samples_tokens_per_s"].size(), 3u);
    const auto& t = res["tokens_per_s"];
    EXPECT_LE(t["min"].get<double>(), t["median"].get<double>());
    EXPECT_LE(t["median"].get<double>(), t["max"].get<double>());
    EXPECT_GE(t["stdev"].get<double>(), 0);
    EXPECT_GT(res["us_per_token_median"].get<double>(), 0);
    EXPECT_TRUE(res["kind"] == "pp" || res["kind"] == "tg");
  }

  // The JSON file exists now: refused without --force, overwritten with it.
  const auto again = run_cli({"bench", "--model", kModel, "--backend", "cpu", "-p", "8", "-n", "2",
                              "-r", "1", "--json", json});
  EXPECT_EQ(again.code, 1);
  EXPECT_TRUE(has(again.err, "already exists")) << again.err;
  const auto forced = run_cli({"bench", "--model", kModel, "--backend", "cpu", "-p", "8", "-n",
                               "2", "-r", "1", "--no-deci", "--json", json, "--force"});
  EXPECT_EQ(forced.code, 0) << forced.err;
  EXPECT_EQ(nlohmann::json::parse(slurp(json))["results"].size(), 2u);
}

TEST(CliBench, RandomShapeSaysTimingOnly) {
  const auto r = run_cli({"bench", "--shape", "tiny", "--dtype", "bf16", "--backend", "cpu", "-p",
                          "8", "-n", "4", "-r", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(has(r.out, "random tiny shape, bf16 weights (timing only")) << r.out;
  EXPECT_EQ(table_rows(r.out).size(), 2u) << r.out;
}

TEST(CliBench, UsageErrors) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"bench", "--backend", "metal"},
        {"bench", "--backend", "cpu,,"},
        {"bench", "--shape", "7b"},
        {"bench", "--dtype", "f16"},  // needs --shape
        {"bench", "--shape", "tiny", "--dtype", "q4"},
        {"bench", "--shape", "tiny", "--model", kModel},
        {"bench", "--shape", "tiny", "-r", "0"},
        {"bench", "--shape", "tiny", "-p", "abc"},
        {"bench", "--shape", "tiny", "--replay", "sometimes"},
        {"bench", "--shape", "tiny", "--no-deci", "--deci", "passkey-130m"}}) {
    const auto r = run_cli(args);
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    EXPECT_EQ(r.code, 2) << joined << ": " << r.err;
    EXPECT_TRUE(has(r.err, "decimamba: ")) << r.err;
    EXPECT_TRUE(r.out.empty()) << joined;
  }
}

// As llama-bench, a length of 0 skips that kind of test: -n 0 measures prefill only, -p 0 decode
// only; both 0 is nothing to measure, an error.
TEST(CliBench, ZeroLengthSkipsThatTest) {
  auto r = run_cli({"bench", "--shape", "tiny", "--backend", "cpu", "-p", "8", "-n", "0", "-r", "1"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto rows = table_rows(r.out);
  ASSERT_EQ(rows.size(), 1u) << r.out;
  EXPECT_EQ(rows[0][3], "pp8") << r.out;
  r = run_cli({"bench", "--shape", "tiny", "--backend", "cpu", "-p", "0", "-n", "4", "-r", "1"});
  ASSERT_EQ(r.code, 0) << r.err;
  rows = table_rows(r.out);
  ASSERT_EQ(rows.size(), 1u) << r.out;
  EXPECT_EQ(rows[0][3], "tg4") << r.out;
  r = run_cli({"bench", "--shape", "tiny", "--backend", "cpu", "-p", "0", "-n", "0", "-r", "1"});
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(has(r.err, "nothing to measure")) << r.err;
}

TEST(CliBench, RuntimeErrors) {
  // A model directory that does not exist (a negative length is a usage error:
  // CliErrors.NumericFlagErrorsAreOneShortLine).
  auto r = run_cli({"bench", "--model", "/no/such/model", "--backend", "cpu", "-r", "1"});
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(has(r.err, "no such directory")) << r.err;
  // A backend named but absent: its reason, exit 1.
  for (const auto& b : dm::list_backends()) {
    if (b.available || b.name == "cpu") continue;
    r = run_cli({"bench", "--shape", "tiny", "--backend", b.name, "-r", "1", "-p", "4", "-n", "2"});
    EXPECT_EQ(r.code, 1) << b.name << ": " << r.err;
    EXPECT_TRUE(has(r.err, "decimamba: ")) << r.err;
  }
}
