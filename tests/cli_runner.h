// Runs the built `decimamba` CLI as a subprocess for the CLI tests: stdin from a string (or
// /dev/null), stdout and stderr captured through files, so none of them is a terminal, as in a
// pipeline; the exit code as the shell reports it.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "test_paths.h"

namespace dm::test {

namespace fs = std::filesystem;

// The fixture model the CLI tests run (tiny, random, with a SentencePiece tokenizer).
inline std::string cli_fixture_model() { return data_dir() + "/models/tiny-tied"; }

inline bool has(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

inline int lines(const std::string& s) { return int(std::count(s.begin(), s.end(), '\n')); }

inline const std::string& cli_path() {
  static const std::string path = DM_CLI_PATH;
  return path;
}

// A fresh directory per instance, unique per process and test; removed at scope end.
struct CliTempDir {
  fs::path path;
  CliTempDir() {
    static int counter = 0;
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = "dm_cli_" + std::to_string(::getpid()) + "_";
    name.append(info ? info->name() : "none").append("_").append(std::to_string(counter++));
    path = fs::temp_directory_path() / name;
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~CliTempDir() { fs::remove_all(path); }
};

inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

inline std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct CliResult {
  int code = -1;
  std::string out, err;
};

inline CliResult run_cli(const std::vector<std::string>& args, const std::string& input = "") {
  CliTempDir tmp;
  std::string cmd = shell_quote(cli_path());
  for (const auto& a : args) cmd.append(" ").append(shell_quote(a));
  if (input.empty()) {
    cmd += " </dev/null";
  } else {
    std::ofstream(tmp.path / "in", std::ios::binary) << input;
    cmd.append(" <").append(shell_quote((tmp.path / "in").string()));
  }
  cmd.append(" >").append(shell_quote((tmp.path / "out").string()));
  cmd.append(" 2>").append(shell_quote((tmp.path / "err").string()));
  const int status = std::system(cmd.c_str());
  CliResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(tmp.path / "out");
  r.err = slurp(tmp.path / "err");
  return r;
}

}  // namespace dm::test

#define SKIP_WITHOUT_FIXTURE()                                    \
  if (!std::filesystem::exists(dm::test::cli_fixture_model())) \
  GTEST_SKIP() << "fixture model absent: " << dm::test::cli_fixture_model()
