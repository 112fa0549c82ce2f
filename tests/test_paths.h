// Where the tests find their data. Compiled-in paths point into the source tree; the
// environment variables DM_TEST_DATA_DIR and DM_SOURCE_DIR override them, so a test binary
// shipped to another machine (the GPU host) can read the fixtures from its copy of the repo.
#pragma once

#include <cstdlib>
#include <string>

namespace dm::test {

inline std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}
inline std::string data_dir() { return env_or("DM_TEST_DATA_DIR", DM_TEST_DATA_DIR); }
inline std::string source_dir() { return env_or("DM_SOURCE_DIR", DM_SOURCE_DIR); }

}  // namespace dm::test
