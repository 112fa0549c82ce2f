// Every pipeline of the Vulkan tensor-core GEMM (shaders/gemm_coopmat.comp), each forced by
// DM_VULKAN_GEMM_COOPMAT, against the CPU backend: the default choice only ever runs some of
// them, so BackendOps.Gemm alone would leave the others untested. Runs where device 0 has the
// tensor-core GEMM ("tensor-core gemm yes" in its capabilities; not lavapipe, which has no
// cooperative matrix and runs the SIMT GEMM whatever the variable says). Each variant runs with
// split K as the default rule chooses it, never (DM_VULKAN_GEMM_SPLITK=1) and forced to 3 splits.
#include <gtest/gtest.h>

#include <cstdlib>
#include <sstream>
#include <string>

#include "backend_cache.h"
#include "backend_ops_harness.h"
#include "backend/backend.h"
#include "core/dtype.h"
#ifdef DM_HAVE_VULKAN
#include "backend/vulkan/vulkan_backend.h"
#endif

namespace dm {
namespace {

using test::Arg;
using test::Case;
using test::Role;

// As BackendOps.Gemm (test_backend_ops.cpp): the hi/lo split keeps fp32-level accuracy.
constexpr double kTolGemm = 1e-8;

#ifdef DM_HAVE_VULKAN
bool device0_has_tensor_core_gemm() {
  const std::vector<VulkanDeviceInfo> d = list_vulkan_devices();
  return !d.empty() && d[0].caps.find("tensor-core gemm yes") != std::string::npos;
}
#endif

TEST(BackendOpsVulkan, GemmCoopmatVariants) {
#ifndef DM_HAVE_VULKAN
  GTEST_SKIP() << "Vulkan backend not built";
#else
  if (!test::backend_available("vulkan") || !device0_has_tensor_core_gemm())
    GTEST_SKIP() << "Vulkan device 0 has no tensor-core GEMM (VK_NV_cooperative_matrix)";
  const char* variants[] = {"n256", "t32", "n128", "n192"};
  struct G {
    int64_t M, N, K;
    DType w_dtype;
    bool bias, aligned;
    int64_t x_pad, y_pad;
  };
  // Whole tiles of every variant, ragged edges in m, n and k, the element-wise (odd K) and
  // 16-byte paths, BF16 staging, bias (staged epilogue) and direct stores; x_proj at a
  // decimated layer's 2,000 rows and a ragged thin one with bias, which split K by default (a
  // last split shorter than the others, the split-K sum adding the bias).
  const G cases[] = {{256, 512, 256, DType::F16, false, true, 0, 0},
                     {200, 300, 100, DType::BF16, true, true, 0, 4},
                     {150, 200, 333, DType::F16, true, false, 5, 7},
                     {16, 1536, 48, DType::F16, false, true, 0, 0},
                     {1040, 2100, 264, DType::BF16, false, true, 0, 0},
                     {2000, 80, 1536, DType::F16, false, true, 0, 0},
                     {200, 78, 1000, DType::BF16, true, false, 3, 5}};
  const char* splits[] = {"", "1", "3"};
  const char* old_env = std::getenv("DM_VULKAN_GEMM_COOPMAT");
  const std::string keep = old_env ? old_env : "";
  const char* old_split = std::getenv("DM_VULKAN_GEMM_SPLITK");
  const std::string keep_split = old_split ? old_split : "";
  for (const char* v : variants)
    for (const char* sk : splits)
      for (size_t i = 0; i < std::size(cases); ++i) {
        setenv("DM_VULKAN_GEMM_COOPMAT", v, 1);
        if (*sk) setenv("DM_VULKAN_GEMM_SPLITK", sk, 1);
        else unsetenv("DM_VULKAN_GEMM_SPLITK");
        const G& g = cases[i];
        std::ostringstream d;
        d << "gemm.coopmat[" << v << ", splits " << (*sk ? sk : "default") << "] M=" << g.M
          << " N=" << g.N << " K=" << g.K
          << " w=" << dtype_name(g.w_dtype) << " bias=" << g.bias << " aligned=" << g.aligned;
        Case c("vulkan", d.str(), 5300 + uint32_t(i));
        if (g.aligned) c.align16();
        test::run_gemm_case(c, g.M, g.N, g.K, g.w_dtype, g.bias, g.x_pad, g.y_pad, Role::In,
                            kTolGemm);
      }
  if (old_env) setenv("DM_VULKAN_GEMM_COOPMAT", keep.c_str(), 1);
  else unsetenv("DM_VULKAN_GEMM_COOPMAT");
  if (old_split) setenv("DM_VULKAN_GEMM_SPLITK", keep_split.c_str(), 1);
  else unsetenv("DM_VULKAN_GEMM_SPLITK");
#endif
}

// gemm.vec128's K-split rule (vulkan_simt_gemm_splits) on the shapes the H200 measured
// (bench/results/h200_session15_2026-11-28.md, calls 8-10; 132 SMs) and on a device that does
// not report its compute units (lavapipe, Intel): the counts that measured fastest, and the
// partials kept within one binding.
TEST(VulkanGemmPlan, SimtSplits) {
#ifndef DM_HAVE_VULKAN
  GTEST_SKIP() << "Vulkan backend not built";
#else
  struct S {
    uint32_t M, N, K, units, want;
    const char* what;
  };
  const uint64_t big = uint64_t(1) << 32;
  for (const S& c : {S{4096, 80, 1536, 132, 8, "130m x_proj: 32 groups"},
                     S{16384, 80, 1536, 132, 2, "130m x_proj, 16K: 128 groups"},
                     S{4096, 768, 1536, 132, 4, "130m out_proj: 192 groups, 0.7 wave"},
                     S{4096, 3072, 768, 132, 1, "130m in_proj: 2.9 waves"},
                     S{4096, 1536, 48, 132, 1, "dt_proj: 3 k steps"},
                     S{4096, 192, 5120, 132, 4, "2.8b x_proj"},
                     S{16384, 192, 5120, 132, 1, "2.8b x_proj, 16K: one wave"},
                     S{2048, 2560, 5120, 132, 4, "2.8b out_proj, 2K: 1.2 waves"},
                     S{4096, 2560, 5120, 132, 2, "2.8b out_proj: 2.4 waves (16 is 2% slower)"},
                     S{16384, 2560, 5120, 132, 1, "2.8b out_proj, 16K: 9.7 waves"},
                     S{4096, 10240, 2560, 132, 1, "2.8b in_proj"},
                     S{4096, 80, 1536, 0, 8, "unknown units: 32 groups"},
                     S{4096, 768, 1536, 0, 1, "unknown units: 192 groups"},
                     S{256, 384, 768, 0, 4, "unknown units: GemmVecPaths' case"}})
    EXPECT_EQ(vulkan_simt_gemm_splits(c.M, c.N, c.K, c.units, big), c.want) << c.what;
  // 8 slabs of 4096 × 80 floats (10.5 MB) do not fit a 4 MiB binding; 2 do.
  EXPECT_EQ(vulkan_simt_gemm_splits(4096, 80, 1536, 132, uint64_t(4) << 20), 2u);
  // A forced count (DM_VULKAN_GEMM_SPLITK) replaces the rule, within one binding and K's steps.
  EXPECT_EQ(vulkan_simt_gemm_splits(4096, 80, 1536, 132, big, 3), 3u);
  EXPECT_EQ(vulkan_simt_gemm_splits(4096, 80, 1536, 132, uint64_t(4) << 20, 8), 2u);
  EXPECT_EQ(vulkan_simt_gemm_splits(4096, 1536, 48, 0, big, 16), 3u);
#endif
}

}  // namespace
}  // namespace dm
