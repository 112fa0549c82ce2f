// decimamba: run Mamba-1 models with DeciMamba token decimation.
// Exit codes: 0 success, 1 runtime error (bad model, unavailable backend, ...), 2 usage error.
#include <cstdio>
#include <exception>
#include <map>

#include "commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"decimamba " DM_VERSION ": Mamba-1 language models with DeciMamba token decimation",
               "decimamba"};
  app.set_version_flag("--version", DM_VERSION);
  app.require_subcommand(1);
  app.fallthrough(false);

  std::map<CLI::App*, dmcli::RunFn> commands;
  auto add = [&](dmcli::RunFn (*fn)(CLI::App&), const char* name) {
    dmcli::RunFn run = fn(app);
    commands[app.get_subcommand(name)] = std::move(run);
  };

  try {
    add(dmcli::add_generate, "generate");
    add(dmcli::add_perplexity, "perplexity");
    add(dmcli::add_passkey, "passkey");
    add(dmcli::add_info, "info");
    add(dmcli::add_tokenize, "tokenize");
    add(dmcli::add_bench, "bench");
    add(dmcli::add_erf, "erf");
    // CLI11 reports a mistyped subcommand as "a subcommand is required"; name it instead.
    bool known = false;
    for (const auto& entry : commands)
      known = known || (argc > 1 && entry.first->check_name(argv[1]));
    if (argc > 1 && argv[1][0] != '-' && !known) {
      std::fprintf(stderr,
                   "decimamba: unknown subcommand '%s' (known: generate, perplexity, passkey, "
                   "info, bench, tokenize, erf)\nRun 'decimamba --help' for usage.\n",
                   argv[1]);
      return 2;
    }
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "decimamba: %s\nRun 'decimamba --help' for usage.\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "decimamba: %s\n", e.what());
    return 2;
  }

  try {
    for (auto& [sub, run] : commands) {
      if (sub->parsed()) return run();
    }
    std::fprintf(stderr, "decimamba: no subcommand\n");
    return 2;
  } catch (const dm::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "decimamba: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "decimamba: unexpected error: %s\n", e.what());
    return 1;
  }
}
