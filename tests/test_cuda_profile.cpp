// --profile on CUDA (backend/cuda/cuda_profile.h): one row per outermost Backend call (a call
// composed of others is one row), GEMMs by weight shape, nothing timed while a graph records,
// each replay one row; off, then on again: an empty table. And, everywhere: a backend that is
// not CUDA's answers false / empty. The CUDA cases skip, saying why, without a usable device.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_profile.h"

namespace dm {
namespace {

std::string cuda_unavailable_reason() {
  for (const BackendInfo& b : list_backends())
    if (b.name == "cuda") return b.available ? "" : b.detail;
  return "not listed";
}

const ProfileRow* row(const std::vector<ProfileRow>& rows, const std::string& name) {
  for (const ProfileRow& r : rows)
    if (r.kernel == name) return &r;
  return nullptr;
}

TEST(CudaProfile, OtherBackendsAnswerFalse) {
  std::unique_ptr<Backend> cpu = create_backend("cpu");
  EXPECT_FALSE(cuda_set_profiling(*cpu, true));
  EXPECT_TRUE(cuda_profile(*cpu).empty());
}

TEST(CudaProfile, OneRowPerOutermostCall) {
  const std::string why = cuda_unavailable_reason();
  if (!why.empty()) GTEST_SKIP() << "cuda backend unavailable: " << why;
  std::unique_ptr<Backend> be = create_backend("cuda");
  constexpr int64_t M = 4, K = 64, N = 32;
  auto zeros = [&](int64_t rows, int64_t cols) {
    std::unique_ptr<Buffer> b = be->alloc(size_t(rows * cols) * 4);
    const std::vector<float> z(size_t(rows * cols), 0.5f);
    be->upload(*b, 0, z.data(), z.size() * 4);
    return b;
  };
  auto bx = zeros(M, K), bres = zeros(M, K), bnw = zeros(1, K), bn = zeros(M, K),
       bw = zeros(N, K), by = zeros(M, N);
  const Tensor x{bx.get(), 0, DType::F32, M, K, K}, res{bres.get(), 0, DType::F32, M, K, K},
      nw{bnw.get(), 0, DType::F32, 1, K, K}, normed{bn.get(), 0, DType::F32, M, K, K},
      w{bw.get(), 0, DType::F32, N, K, K}, y{by.get(), 0, DType::F32, M, N, N};

  EXPECT_TRUE(cuda_profile(*be).empty()) << "off: no table";
  ASSERT_TRUE(cuda_set_profiling(*be, true));
  be->rms_norm(x, &res, nw, normed, 1e-5f);
  be->rms_norm(x, nullptr, nw, normed, 1e-5f);
  be->gemm(normed, w, nullptr, y);
  // F32 weights over 4 rows: Backend's composition (rms_norm, then gemm) — one row.
  be->rms_norm_gemm(nullptr, res, nw, 1e-5f, normed, w, nullptr, y);
  auto rec = be->record([&] { be->gemm(normed, w, nullptr, y); });
  ASSERT_TRUE(rec);
  be->replay(*rec);
  be->replay(*rec);
  const std::vector<ProfileRow> rows = cuda_profile(*be);
  std::string names;
  for (const ProfileRow& r : rows) names += r.kernel + " ";
  const ProfileRow* norm = row(rows, "rms_norm");
  const ProfileRow* gemm = row(rows, "gemm 32x64");
  const ProfileRow* fused = row(rows, "rms_norm_gemm");
  const ProfileRow* replay = row(rows, "replay (graph)");
  ASSERT_TRUE(norm && gemm && fused && replay) << names;
  EXPECT_EQ(rows.size(), 4u) << names;
  EXPECT_EQ(norm->calls, 2u);
  EXPECT_EQ(gemm->calls, 1u) << "the recorded gemm is not timed";
  EXPECT_EQ(fused->calls, 1u);
  EXPECT_EQ(replay->calls, 2u);
  for (const ProfileRow& r : rows) EXPECT_GT(r.total_us, 0.0) << r.kernel;
  const std::string table = cuda_profile_table(*be);
  EXPECT_NE(table.find("replay (graph)"), std::string::npos) << table;

  ASSERT_TRUE(cuda_set_profiling(*be, false));
  be->rms_norm(x, nullptr, nw, normed, 1e-5f);
  EXPECT_TRUE(cuda_profile(*be).empty());
  ASSERT_TRUE(cuda_set_profiling(*be, true));
  EXPECT_TRUE(cuda_profile(*be).empty()) << "on again: a fresh table";
}

}  // namespace
}  // namespace dm
