// DM_VULKAN_PROFILE=FILE (src/backend/vulkan/README.md): a Vulkan backend made with it set times
// every dispatch and appends its per-kernel-and-grid table to FILE when it goes; a path it cannot
// write fails when the backend is made, naming the variable. Runs wherever a Vulkan device is
// (lavapipe in CI).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend_cache.h"

namespace dm {
namespace {

// DM_VULKAN_PROFILE set for one scope.
class ProfileVar {
 public:
  explicit ProfileVar(const std::string& path) { setenv("DM_VULKAN_PROFILE", path.c_str(), 1); }
  ~ProfileVar() { unsetenv("DM_VULKAN_PROFILE"); }
};

std::string read_all(const std::string& path) {
  std::ifstream f(path);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

TEST(VulkanProfile, TableAppendedWhenTheBackendGoes) {
  if (!test::backend_available("vulkan")) GTEST_SKIP() << "no Vulkan device";
  const std::string path = testing::TempDir() + "dm_vulkan_profile_test.txt";
  std::remove(path.c_str());
  {
    std::unique_ptr<Backend> be;
    {
      const ProfileVar var(path);
      be = create_backend("vulkan");
    }
    // y (3×64) = rms_norm(x) · weight: one dispatch of 3 work groups.
    const std::vector<float> x(3 * 64, 0.5f), w(64, 1.f);
    std::unique_ptr<Buffer> bx = be->alloc(x.size() * 4), bw = be->alloc(w.size() * 4),
                            by = be->alloc(x.size() * 4);
    be->upload(*bx, 0, x.data(), x.size() * 4);
    be->upload(*bw, 0, w.data(), w.size() * 4);
    const Tensor tx{bx.get(), 0, DType::F32, 3, 64, 64}, tw{bw.get(), 0, DType::F32, 1, 64, 64};
    const Tensor ty{by.get(), 0, DType::F32, 3, 64, 64};
    be->rms_norm(tx, nullptr, tw, ty, 1e-5f);
    be->synchronize();
    EXPECT_EQ(read_all(path), "") << "the table is written when the backend goes, not before";
  }
  const std::string table = read_all(path);
  EXPECT_NE(table.find("calls"), std::string::npos) << table;
  EXPECT_NE(table.find("rms_norm"), std::string::npos) << "no rms_norm row:\n" << table;
  std::remove(path.c_str());
}

TEST(VulkanProfile, UnwritablePathFailsNamingTheVariable) {
  if (!test::backend_available("vulkan")) GTEST_SKIP() << "no Vulkan device";
  const ProfileVar var("/nonexistent-dm-dir/profile.txt");
  try {
    create_backend("vulkan");
    ADD_FAILURE() << "a Vulkan backend was made with an unwritable DM_VULKAN_PROFILE";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("DM_VULKAN_PROFILE=/nonexistent-dm-dir/profile.txt"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace dm
