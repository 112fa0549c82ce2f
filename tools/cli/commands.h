// The subcommands. Each file adds its CLI11 subcommand with its own options and returns the
// function that runs it once the command line has parsed.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace dmcli {

using RunFn = std::function<int()>;

RunFn add_generate(CLI::App& app);
RunFn add_perplexity(CLI::App& app);
RunFn add_passkey(CLI::App& app);
RunFn add_info(CLI::App& app);
RunFn add_tokenize(CLI::App& app);
RunFn add_bench(CLI::App& app);
RunFn add_erf(CLI::App& app);

}  // namespace dmcli
