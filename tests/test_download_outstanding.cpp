// Backend::download_start's promise to its callers (the executor keeps up to kGreedyAhead picks
// in flight): every backend takes kAsyncDownloadsOutstanding downloads started and not yet waited
// for, each holding the bytes as of its start (CUDA had 8 slots: the executor's 16 picks ahead
// failed there, H200 session 19).
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend_cache.h"

namespace dm {
namespace {

TEST(BackendDownloads, OutstandingUpToThePromise) {
  std::vector<std::string> names = test::device_backends();
  names.insert(names.begin(), "cpu");
  for (const std::string& name : names) {
    Backend& be = test::cached_backend(name);
    constexpr int kN = Backend::kAsyncDownloadsOutstanding;
    auto buf = be.alloc(sizeof(int32_t));
    std::vector<uint64_t> tickets;
    for (int i = 0; i < kN; ++i) {  // each start sees the value uploaded just before it
      const int32_t v = 1000 + 7 * i;
      be.upload(*buf, 0, &v, sizeof v);
      tickets.push_back(be.download_start(*buf, 0, sizeof(int32_t)));
    }
    for (int i = 0; i < kN; ++i) {
      int32_t got = -1;
      be.download_wait(tickets[size_t(i)], &got);
      ASSERT_EQ(got, 1000 + 7 * i) << name << " ticket " << i;
    }
  }
}

}  // namespace
}  // namespace dm
