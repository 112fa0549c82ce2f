#include "backend_cache.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <utility>
#include <vector>

#include "core/error.h"

namespace dm::test {

namespace {

std::vector<std::pair<std::string, std::unique_ptr<Backend>>>& cache() {
  static std::vector<std::pair<std::string, std::unique_ptr<Backend>>> c;
  return c;
}

class ReleaseBackends : public ::testing::Environment {
 public:
  void TearDown() override { cache().clear(); }
};

[[maybe_unused]] ::testing::Environment* const kRelease =
    ::testing::AddGlobalTestEnvironment(new ReleaseBackends);

}  // namespace

bool backend_available(const std::string& name) {
  for (const BackendInfo& b : list_backends())
    if (b.name == name && b.available) return true;
  return false;
}

std::vector<std::string> device_backends() {
  std::vector<std::string> out;
  for (const BackendInfo& b : list_backends())
    if (b.name != "cpu" && b.available) out.push_back(b.name);
  return out;
}

Backend& cached_backend(const std::string& name) {
  for (auto& [n, b] : cache())
    if (n == name) return *b;
  cache().emplace_back(name, create_backend(name));
  return *cache().back().second;
}

namespace {
const char* const kEntryEnv[][2] = {{"block", "DM_VULKAN_BLOCK_STEP"},
                                    {"tail", "DM_VULKAN_NORM_TAIL"},
                                    {"form", "DM_CUDA_DECODE_FORM"},
                                    {"copies", "DM_VULKAN_REPLAY_COPIES"},
                                    {"fold", "DM_VULKAN_REPLAY_FOLD"}};
}  // namespace

std::string apply_entry_env(const std::string& entry) {
  size_t at = entry.find(':');
  const std::string name = entry.substr(0, at);
  while (at != std::string::npos) {
    const size_t next = entry.find(':', at + 1);
    const std::string kv = entry.substr(at + 1, next == std::string::npos ? next : next - at - 1);
    const size_t eq = kv.find('=');
    bool known = false;
    for (const auto& [key, var] : kEntryEnv)
      if (eq != std::string::npos && kv.substr(0, eq) == key) {
        setenv(var, kv.substr(eq + 1).c_str(), 1);
        known = true;
      }
    if (!known) throw Error("test entry " + entry + ": unknown setting " + kv);
    at = next;
  }
  return name;
}

void clear_entry_env() {
  for (const auto& [key, var] : kEntryEnv) unsetenv(var);
}

}  // namespace dm::test
