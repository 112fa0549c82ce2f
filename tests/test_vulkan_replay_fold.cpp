// The Vulkan recorder's folded replay (recording.cpp, DM_VULKAN_REPLAY_FOLD=1, opt-in): a replay
// leaves its batch open so that the commands after it (a decode step's logits download) go to the queue in
// the same vkQueueSubmit, as a third command buffer after the captured one. Checked: one submit
// per upload + replay + download folded, two unfolded; the results bit-identical to the same
// chain run eagerly, also when an eager dispatch after the replay reads what the replay wrote,
// when two replays follow each other, and when the recording or the backend goes while a folded
// batch is still open. The validation run (ctest, BackendRecord.*) checks the barriers.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "backend_cache.h"
#ifdef DM_HAVE_VULKAN
#include "backend/vulkan/vulkan_backend.h"
#endif

namespace dm {
namespace {

#ifdef DM_HAVE_VULKAN
uint64_t submits(const Backend& be) {
  VulkanStats s;
  EXPECT_TRUE(vulkan_stats(be, &s));
  return s.submits;
}

// Buffer layout (floats, rows of C): x | w | y | z | e (eager z) | f (after-replay output) | g.
constexpr int64_t C = 256;
constexpr size_t kN = size_t(C);  // floats a row
struct Chain {
  std::unique_ptr<Buffer> buf;
  Tensor x, w, y, z, e, f, g;
  explicit Chain(Backend& be) : buf(be.alloc(size_t(7 * C * 4))) {
    auto at = [&](int i) { return make_tensor(*buf, DType::F32, 1, C, size_t(i * C * 4)); };
    x = at(0), w = at(1), y = at(2), z = at(3), e = at(4), f = at(5), g = at(6);
  }
  // Two dependent dispatches: y = norm(x), z = norm(y) (out is z or e).
  void run(Backend& be, const Tensor& out) const {
    be.rms_norm(x, nullptr, w, y, 1e-5f);
    be.rms_norm(y, nullptr, w, out, 1e-5f);
  }
};

std::vector<float> input(int step) {
  std::vector<float> v(kN);
  for (int64_t i = 0; i < C; ++i) v[size_t(i)] = float((i * 7 + step * 13) % 29) - 14.f + 0.25f * step;
  return v;
}

class VulkanReplayFold : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    if (!test::backend_available("vulkan")) GTEST_SKIP() << "no Vulkan device";
    setenv("DM_VULKAN_REPLAY_FOLD", GetParam(), 1);  // read when the step is recorded
  }
  void TearDown() override { unsetenv("DM_VULKAN_REPLAY_FOLD"); }
  bool folded() const { return std::strcmp(GetParam(), "0") != 0; }
  // The chain's weights set to w, then the chain recorded (each test's start).
  static std::unique_ptr<Recording> record_chain(Backend& be, const Chain& ch, float w) {
    const std::vector<float> wv(kN, w);
    be.upload(*ch.buf, size_t(C * 4), wv.data(), wv.size() * 4);
    return be.record([&] { ch.run(be, ch.z); });
  }
};

TEST_P(VulkanReplayFold, OneSubmitPerStepAndEagerResults) {
  Backend& be = test::cached_backend("vulkan");
  Chain ch(be);
  auto rec = record_chain(be, ch, 1.5f);
  ASSERT_NE(rec, nullptr);
  for (int step = 0; step < 4; ++step) {
    const std::vector<float> in = input(step);
    // Eager reference first, on its own output.
    be.upload(*ch.buf, 0, in.data(), in.size() * 4);
    ch.run(be, ch.e);
    std::vector<float> eager(kN), got(kN);
    be.download(*ch.buf, size_t(4 * C * 4), eager.data(), eager.size() * 4);
    // A decode step's shape: upload, replay, download.
    const std::vector<float> zero(kN, 0.f);
    be.upload(*ch.buf, size_t(3 * C * 4), zero.data(), zero.size() * 4);  // z cleared eagerly
    be.synchronize();
    be.upload(*ch.buf, 0, in.data(), in.size() * 4);
    const uint64_t s0 = submits(be);
    be.replay(*rec);
    be.download(*ch.buf, size_t(3 * C * 4), got.data(), got.size() * 4);
    EXPECT_EQ(submits(be) - s0, folded() ? 1u : 2u) << "step " << step;
    ASSERT_EQ(std::memcmp(got.data(), eager.data(), got.size() * 4), 0) << "step " << step;
  }
  // An eager dispatch after the replay reads its output (post's ordering against the tail), and
  // a second replay follows before anything waits.
  std::vector<float> in = input(7), after(kN), ref(kN);
  be.upload(*ch.buf, 0, in.data(), in.size() * 4);
  be.replay(*rec);
  be.rms_norm(ch.z, nullptr, ch.w, ch.f, 1e-5f);  // f = norm(z)
  be.replay(*rec);                                  // z again, after the read above (WAR)
  be.download(*ch.buf, size_t(5 * C * 4), after.data(), after.size() * 4);
  be.upload(*ch.buf, 0, in.data(), in.size() * 4);
  ch.run(be, ch.e);
  be.rms_norm(ch.e, nullptr, ch.w, ch.g, 1e-5f);
  be.download(*ch.buf, size_t(6 * C * 4), ref.data(), ref.size() * 4);
  EXPECT_EQ(std::memcmp(after.data(), ref.data(), ref.size() * 4), 0);
  // The recording goes while its folded batch is still open: the batch runs first.
  be.upload(*ch.buf, 0, in.data(), in.size() * 4);
  be.replay(*rec);
  rec.reset();
  std::vector<float> z(kN);
  be.download(*ch.buf, size_t(3 * C * 4), z.data(), z.size() * 4);
  be.rms_norm(ch.y, nullptr, ch.w, ch.e, 1e-5f);
  be.download(*ch.buf, size_t(4 * C * 4), ref.data(), ref.size() * 4);
  EXPECT_EQ(std::memcmp(z.data(), ref.data(), ref.size() * 4), 0);
}

// Greedy decoding's shape: replay, then download_start of a few bytes the replay wrote, the next
// replay before the wait (Executor::greedy_enqueue / greedy_take). Unfolded that is two submits
// a step (the replay's, the copy's); folded, one: the copy rides in the replay's submit. (H200,
// session 18: a submit boundary costs ~26 µs at 130m, bench_vulkan --sections unroll.)
TEST_P(VulkanReplayFold, GreedyStepSubmits) {
  Backend& be = test::cached_backend("vulkan");
  Chain ch(be);
  auto rec = record_chain(be, ch, 1.25f);
  ASSERT_NE(rec, nullptr);
  std::vector<std::vector<float>> eager(3, std::vector<float>(4));
  for (int step = 0; step < 3; ++step) {  // the reference: each step's first 4 values of z
    const std::vector<float> in = input(step);
    be.upload(*ch.buf, 0, in.data(), in.size() * 4);
    ch.run(be, ch.e);
    be.download(*ch.buf, size_t(4 * C * 4), eager[size_t(step)].data(), 16);
  }
  std::vector<uint64_t> tickets;
  for (int step = 0; step < 3; ++step) {
    const std::vector<float> in = input(step);
    be.upload(*ch.buf, 0, in.data(), in.size() * 4);
    const uint64_t s0 = submits(be);
    be.replay(*rec);
    tickets.push_back(be.download_start(*ch.buf, size_t(3 * C * 4), 16));
    EXPECT_EQ(submits(be) - s0, folded() ? 1u : 2u) << "step " << step;
  }
  for (int step = 0; step < 3; ++step) {
    std::vector<float> got(4);
    be.download_wait(tickets[size_t(step)], got.data());
    EXPECT_EQ(std::memcmp(got.data(), eager[size_t(step)].data(), 16), 0) << "step " << step;
  }
}

TEST_P(VulkanReplayFold, BackendGoesWithAFoldedBatchOpen) {
  std::unique_ptr<Backend> be = create_backend("vulkan");
  Chain ch(*be);
  const std::vector<float> w(kN, 1.f), in = input(1);
  be->upload(*ch.buf, size_t(C * 4), w.data(), w.size() * 4);
  be->upload(*ch.buf, 0, in.data(), in.size() * 4);
  auto rec = be->record([&] { ch.run(*be, ch.z); });
  ASSERT_NE(rec, nullptr);
  be->replay(*rec);
  ch.buf.reset();  // freed after the open batch has run
  be.reset();      // submits and waits for the open batch before the recording's commands go
  EXPECT_FALSE(rec->valid());
}

INSTANTIATE_TEST_SUITE_P(BackendRecord, VulkanReplayFold, ::testing::Values("1", "0"),
                         [](const auto& info) {
                           return std::string(std::strcmp(info.param, "0") ? "folded" : "unfolded");
                         });
#endif

}  // namespace
}  // namespace dm
