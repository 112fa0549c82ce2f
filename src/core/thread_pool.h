// parallel_for over an index range on a process-wide pool of worker threads. The CPU backend
// splits kernels over channels or rows with it; a range of one runs inline.
#pragma once

#include <cstdint>
#include <functional>

namespace dm {

// Calls fn(begin, end) on disjoint sub-ranges covering [0, n), in parallel, and waits.
// `grain` is the smallest sub-range worth a thread.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

// Number of worker threads (DM_THREADS overrides; default: hardware concurrency).
int thread_count();

}  // namespace dm
