// Vulkan's non-blocking small download (Backend::download_start / download_wait; the recorder's
// readback ring, src/backend/vulkan/async_download.cpp), in both modes of
// DM_VULKAN_ASYNC_DOWNLOAD (1: enqueued, not waited for; 0: Backend's default, at once). Checked:
// the bytes equal download()'s of the same range (sizes 1 .. 256, odd offsets); a ticket holds
// the bytes as they were when it was started, not what work enqueued after it writes; several
// outstanding while later work (dispatches, replays) is submitted come back in order with each
// one's own values, also across the ring's wrap; a greedy-like chain of replays, each reading
// the previous one's output, run ahead; the errors (too large, past the end, out of order, twice,
// while recording, too many outstanding); a backend that goes with tickets outstanding; the
// same bytes with the recorder polling its fences (DM_VULKAN_FENCE_SPIN_US) and the polling
// default (a discrete GPU only). Named BackendRecord.* so that ctest's validation run
// (cmake/vulkan.cmake) checks the barriers.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend_cache.h"
#include "core/error.h"
#ifdef DM_HAVE_VULKAN
#include "backend/vulkan/vulkan_backend.h"
#endif

namespace dm {
namespace {

#ifdef DM_HAVE_VULKAN
// A fresh Vulkan backend with DM_VULKAN_ASYNC_DOWNLOAD = mode (read by its constructor).
std::unique_ptr<Backend> vulkan_with(const char* mode) {
  setenv("DM_VULKAN_ASYNC_DOWNLOAD", mode, 1);
  std::unique_ptr<Backend> be;
  try {
    be = create_backend("vulkan");
  } catch (...) {
    unsetenv("DM_VULKAN_ASYNC_DOWNLOAD");
    throw;
  }
  unsetenv("DM_VULKAN_ASYNC_DOWNLOAD");
  return be;
}

constexpr const char* kModes[] = {"1", "0"};
constexpr int64_t C = 128;  // floats a row

// Rows of C floats: x | w | y (y = rms_norm(x)·w, written by the device).
struct Rows {
  std::unique_ptr<Buffer> buf;
  Tensor x, w, y;
  explicit Rows(Backend& be) : buf(be.alloc(size_t(3 * C * 4))) {
    x = make_tensor(*buf, DType::F32, 1, C, 0);
    w = make_tensor(*buf, DType::F32, 1, C, size_t(C * 4));
    y = make_tensor(*buf, DType::F32, 1, C, size_t(2 * C * 4));
  }
  static constexpr size_t kY = size_t(2 * C * 4);  // byte offset of y
  void set_x(Backend& be, int step) const {
    std::vector<float> v(static_cast<size_t>(C));
    for (int64_t i = 0; i < C; ++i) v[size_t(i)] = float((i * 5 + step * 11) % 23) - 11.f + 0.125f * step;
    be.upload(*buf, 0, v.data(), v.size() * 4);
  }
  void set_w(Backend& be) const {
    std::vector<float> v(static_cast<size_t>(C));
    for (int64_t i = 0; i < C; ++i) v[size_t(i)] = 0.5f + float(i % 7) * 0.25f;
    be.upload(*buf, size_t(C * 4), v.data(), v.size() * 4);
  }
  void norm(Backend& be) const { be.rms_norm(x, nullptr, w, y, 1e-5f); }
};

std::vector<uint8_t> wait_bytes(Backend& be, uint64_t ticket, size_t n) {
  std::vector<uint8_t> out(n + 8, 0xAB);  // a guard after the n bytes
  be.download_wait(ticket, out.data());
  for (size_t i = n; i < out.size(); ++i) EXPECT_EQ(out[i], 0xAB) << "wrote past " << n << " bytes";
  out.resize(n);
  return out;
}

TEST(BackendRecord, VulkanAsyncDownloadMatchesDownload) {
  if (!test::backend_available("vulkan")) GTEST_SKIP() << "no Vulkan device";
  for (const char* mode : kModes) {
    auto be = vulkan_with(mode);
    Rows r(*be);
    r.set_w(*be);
    r.set_x(*be, 0);
    r.norm(*be);  // y written by a dispatch just before the starts: the copies must see it
    const std::pair<size_t, size_t> cases[] = {{0, 4}, {1, 1}, {3, 13}, {r.kY, 4}, {r.kY + 5, 256},
                                               {size_t(3 * C * 4) - 7, 7}, {r.kY, 0}};
    std::vector<uint64_t> tickets;
    for (auto [off, n] : cases) tickets.push_back(be->download_start(*r.buf, off, n));
    for (size_t i = 0; i < tickets.size(); ++i) {
      const auto [off, n] = cases[i];
      const std::vector<uint8_t> got = wait_bytes(*be, tickets[i], n);
      std::vector<uint8_t> want(n);
      be->download(*r.buf, off, want.data(), n);
      EXPECT_EQ(got, want) << "mode " << mode << ": " << n << " bytes at " << off;
    }
  }
}

// Each ticket holds y as of its start: the dispatch and the upload enqueued after it (which
// overwrite y and x) come later on the queue. Up to five outstanding while later work is
// submitted; 300 rounds wrap the ring (256 slots).
TEST(BackendRecord, VulkanAsyncDownloadOrderAndRunAhead) {
  if (!test::backend_available("vulkan")) GTEST_SKIP() << "no Vulkan device";
  constexpr int kSteps = 300, kAhead = 5;
  for (const char* mode : kModes) {
    auto be = vulkan_with(mode);
    Rows r(*be);
    r.set_w(*be);
    // The reference: y's first 16 floats of each step, downloaded synchronously.
    std::vector<std::vector<float>> want(kSteps, std::vector<float>(16));
    for (int s = 0; s < kSteps; s += 7) {  // every 7th step suffices for a reference
      r.set_x(*be, s);
      r.norm(*be);
      be->download(*r.buf, r.kY, want[size_t(s)].data(), 64);
    }
    std::deque<std::pair<int, uint64_t>> out;  // step, ticket
    for (int s = 0; s < kSteps; ++s) {
      r.set_x(*be, s);
      r.norm(*be);
      out.emplace_back(s, be->download_start(*r.buf, r.kY, 64));
      while (int(out.size()) >= kAhead || (s == kSteps - 1 && !out.empty())) {
        const auto [step, ticket] = out.front();
        out.pop_front();
        std::vector<float> got(16);
        be->download_wait(ticket, got.data());
        if (step % 7 == 0) {
          ASSERT_EQ(std::memcmp(got.data(), want[size_t(step)].data(), 64), 0)
              << "mode " << mode << " step " << step;
        }
      }
    }
  }
}

// A greedy decode's shape: a recorded step reads y and writes it (y ← norm(y)·w, via x), each
// replay followed by download_start of its result; the host takes the previous step's result
// while the next step is queued. Same values as the same chain run eagerly with downloads.
TEST(BackendRecord, VulkanAsyncDownloadAfterReplaysRunAhead) {
  if (!test::backend_available("vulkan")) GTEST_SKIP() << "no Vulkan device";
  constexpr int kSteps = 12;
  for (const char* mode : kModes) {
    auto be = vulkan_with(mode);
    Rows r(*be);
    r.set_w(*be);
    auto step = [&] {
      be->rms_norm(r.y, nullptr, r.w, r.x, 1e-5f);  // x = norm(y)
      be->rms_norm(r.x, nullptr, r.w, r.y, 1e-5f);  // y = norm(x)
    };
    // Eager reference.
    r.set_x(*be, 1);
    r.norm(*be);
    std::vector<std::vector<float>> want(kSteps, std::vector<float>(size_t(C)));
    for (int s = 0; s < kSteps; ++s) {
      step();
      be->download(*r.buf, r.kY, want[size_t(s)].data(), size_t(C * 4));
    }
    r.set_x(*be, 1);
    r.norm(*be);
    auto rec = be->record(step);
    ASSERT_NE(rec, nullptr);
    std::deque<uint64_t> tickets;
    std::vector<float> got(64);  // 256 bytes: the first 64 floats
    int taken = 0;
    for (int s = 0; s < kSteps; ++s) {
      be->replay(*rec);
      tickets.push_back(be->download_start(*r.buf, r.kY, 256));
      if (tickets.size() > 1 + size_t(s % 3 == 0)) {  // at times two ahead
        be->download_wait(tickets.front(), got.data());
        tickets.pop_front();
        ASSERT_EQ(std::memcmp(got.data(), want[size_t(taken)].data(), 256), 0)
            << "mode " << mode << " step " << taken;
        ++taken;
      }
    }
    for (; !tickets.empty(); ++taken) {
      be->download_wait(tickets.front(), got.data());
      tickets.pop_front();
      ASSERT_EQ(std::memcmp(got.data(), want[size_t(taken)].data(), 256), 0)
          << "mode " << mode << " step " << taken;
    }
    EXPECT_EQ(taken, kSteps);
  }
}

TEST(BackendRecord, VulkanAsyncDownloadErrors) {
  if (!test::backend_available("vulkan")) GTEST_SKIP() << "no Vulkan device";
  for (const char* mode : kModes) {
    auto be = vulkan_with(mode);
    Rows r(*be);
    const size_t end = size_t(3 * C * 4);
    EXPECT_THROW(be->download_start(*r.buf, 0, Backend::kAsyncDownloadMax + 1), Error) << mode;
    EXPECT_THROW(be->download_start(*r.buf, end - 3, 4), Error) << mode;
    EXPECT_THROW(be->download_start(*r.buf, end + 1, 0), Error) << mode;
    float v = 0;
    EXPECT_THROW(be->download_wait(1, &v), Error) << mode << ": nothing started";
    const uint64_t a = be->download_start(*r.buf, 0, 4), b = be->download_start(*r.buf, 4, 4);
    EXPECT_NE(a, b);
    EXPECT_THROW(be->download_wait(b, &v), Error) << mode << ": not the oldest";
    EXPECT_THROW(be->download_wait(b + 100, &v), Error) << mode << ": never started";
    be->download_wait(a, &v);
    EXPECT_THROW(be->download_wait(a, &v), Error) << mode << ": twice";
    be->download_wait(b, &v);
    // While recording: a clear error, and the backend goes on.
    try {
      be->record([&] { be->download_start(*r.buf, 0, 4); });
      ADD_FAILURE() << mode << ": download_start while recording did not throw";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("recorded"), std::string::npos) << e.what();
    }
    r.set_w(*be);
    r.set_x(*be, 3);
    r.norm(*be);
    std::vector<float> y1(4), y2(4);
    be->download(*r.buf, r.kY, y1.data(), 16);
    be->download_wait(be->download_start(*r.buf, r.kY, 16), y2.data());
    EXPECT_EQ(y1, y2) << mode;
  }
  // The async ring's limit: 256 outstanding, then a clear error; the outstanding ones still come
  // back.
  auto be = vulkan_with("1");
  Rows r(*be);
  r.set_w(*be);
  r.set_x(*be, 2);
  std::vector<uint64_t> t;
  for (int i = 0; i < 256; ++i) t.push_back(be->download_start(*r.buf, size_t(4 * (i % 64)), 4));
  EXPECT_THROW(be->download_start(*r.buf, 0, 4), Error);
  std::vector<float> x(static_cast<size_t>(C));
  be->download(*r.buf, 0, x.data(), x.size() * 4);
  for (int i = 0; i < 256; ++i) {
    float v = -1;
    be->download_wait(t[size_t(i)], &v);
    ASSERT_EQ(v, x[size_t(i % 64)]) << i;
  }
  EXPECT_NO_THROW(be->download_wait(be->download_start(*r.buf, 0, 4), x.data()));
  EXPECT_THROW(vulkan_with("2"), Error) << "DM_VULKAN_ASYNC_DOWNLOAD=2";
}

// The backend (and its buffers) go while tickets are outstanding, after a replay too.
TEST(BackendRecord, VulkanAsyncDownloadBackendGoesWithTicketsOutstanding) {
  if (!test::backend_available("vulkan")) GTEST_SKIP() << "no Vulkan device";
  for (const char* mode : kModes) {
    auto be = vulkan_with(mode);
    auto r = std::make_unique<Rows>(*be);
    r->set_w(*be);
    r->set_x(*be, 4);
    auto rec = be->record([&] { r->norm(*be); });
    ASSERT_NE(rec, nullptr);
    be->replay(*rec);
    be->download_start(*r->buf, r->kY, 64);
    be->replay(*rec);
    be->download_start(*r->buf, r->kY, 64);
    r.reset();  // the buffer goes first: freed once the batches that use it have run
    be.reset();
    EXPECT_FALSE(rec->valid()) << mode;
  }
}

// DM_VULKAN_FENCE_SPIN_US (the recorder polls a fence before blocking on it): the same bytes
// from blocking and non-blocking downloads and replays, polling or not; the default (5000 µs on
// a discrete GPU, else 0) and a value set; a bad value is an error naming the variable.
TEST(BackendRecord, VulkanFenceSpinSameResults) {
  if (!test::backend_available("vulkan")) GTEST_SKIP() << "no Vulkan device";
  std::vector<std::vector<float>> runs;
  for (const char* spin : {"0", "50", "1000000"}) {
    setenv("DM_VULKAN_FENCE_SPIN_US", spin, 1);
    auto be = vulkan_with("1");
    unsetenv("DM_VULKAN_FENCE_SPIN_US");
    Rows r(*be);
    r.set_w(*be);
    std::vector<float> got;
    for (int step = 0; step < 6; ++step) {
      r.set_x(*be, step);
      r.norm(*be);
      std::vector<float> y(static_cast<size_t>(C));
      if (step % 2 == 0) {
        be->download(*r.buf, r.kY, y.data(), y.size() * 4);
      } else {
        // download_start takes at most 256 bytes: the row in two halves
        const uint64_t t0 = be->download_start(*r.buf, r.kY, y.size() * 2);
        const uint64_t t1 = be->download_start(*r.buf, r.kY + y.size() * 2, y.size() * 2);
        be->download_wait(t0, y.data());
        be->download_wait(t1, y.data() + y.size() / 2);
      }
      got.insert(got.end(), y.begin(), y.end());
    }
    runs.push_back(std::move(got));
  }
  EXPECT_EQ(runs[1], runs[0]);
  EXPECT_EQ(runs[2], runs[0]);
  // The default: polling on a discrete GPU only (lavapipe, a CPU device, needs its cores); a
  // value set overrides it.
  {
    auto be = vulkan_with("1");
    VulkanStats st;
    ASSERT_TRUE(vulkan_stats(*be, &st));
    EXPECT_EQ(st.fence_spin_us, st.discrete ? 5000u : 0u) << be->device_name();
    setenv("DM_VULKAN_FENCE_SPIN_US", "123", 1);
    auto set = vulkan_with("1");
    unsetenv("DM_VULKAN_FENCE_SPIN_US");
    ASSERT_TRUE(vulkan_stats(*set, &st));
    EXPECT_EQ(st.fence_spin_us, 123u);
  }
  setenv("DM_VULKAN_FENCE_SPIN_US", "-5", 1);
  try {
    vulkan_with("1");
    ADD_FAILURE() << "a negative spin was taken";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("DM_VULKAN_FENCE_SPIN_US"), std::string::npos) << e.what();
  }
  unsetenv("DM_VULKAN_FENCE_SPIN_US");
}
#endif

}  // namespace
}  // namespace dm
