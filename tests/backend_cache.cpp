#include "backend_cache.h"

#include <gtest/gtest.h>

#include <memory>
#include <utility>
#include <vector>

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

}  // namespace dm::test
