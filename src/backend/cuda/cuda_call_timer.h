// The CUDA backend's --profile (cuda_profile.h): a pair of events around each outermost Backend
// call, read back once they have completed, summed per call name. Events are recycled, so a
// long run holds only the pairs still in flight.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "backend/profile_table.h"

namespace dm::cuda_util {

class CallTimer {
 public:
  explicit CallTimer(cudaStream_t stream) : stream_(stream) {}
  ~CallTimer();
  CallTimer(const CallTimer&) = delete;
  CallTimer& operator=(const CallTimer&) = delete;

  // Marks the start / end of a call on the stream; nested calls (depth > 0) are not timed.
  void begin(std::string name);
  void end() noexcept;
  // Folds every completed pair into the table; with `wait`, synchronizes first (all complete).
  void collect(bool wait);
  std::vector<ProfileRow> rows();  // collect(true), then the table in first-seen order

 private:
  struct Pair {
    std::string name;
    cudaEvent_t start, stop;
  };
  cudaEvent_t event() noexcept;  // a recycled event, else a new one; null if none can be made
  cudaStream_t stream_;
  int depth_ = 0;
  std::string open_name_;
  cudaEvent_t open_start_ = nullptr;
  std::vector<Pair> pending_;  // in stream order
  std::vector<cudaEvent_t> free_;
  std::vector<ProfileRow> table_;
  std::map<std::string, size_t> index_;  // name → row of table_
};

}  // namespace dm::cuda_util
