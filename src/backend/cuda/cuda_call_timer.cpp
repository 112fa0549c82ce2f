#include "backend/cuda/cuda_call_timer.h"

#include <cstddef>

#include "backend/cuda/cuda_check.h"

namespace dm::cuda_util {

CallTimer::~CallTimer() {
  // A destructor does not throw: whatever is still in flight is dropped.
  for (const Pair& p : pending_) {
    cudaEventDestroy(p.start);
    cudaEventDestroy(p.stop);
  }
  if (open_start_) cudaEventDestroy(open_start_);
  for (cudaEvent_t e : free_) cudaEventDestroy(e);
}

cudaEvent_t CallTimer::event() noexcept {
  if (!free_.empty()) {
    cudaEvent_t e = free_.back();
    free_.pop_back();
    return e;
  }
  cudaEvent_t e = nullptr;
  if (cudaEventCreate(&e) != cudaSuccess) {
    cudaGetLastError();
    return nullptr;
  }
  return e;
}

void CallTimer::begin(std::string name) {
  if (depth_++ > 0) return;
  collect(false);  // keeps the pairs in flight few
  open_name_ = std::move(name);
  open_start_ = event();
  if (!open_start_)
    ::dm::cuda::throw_cuda(cudaErrorMemoryAllocation, "cudaEventCreate (--profile)", __FILE__,
                           __LINE__);
  CUDA_CHECK(cudaEventRecord(open_start_, stream_));
}

void CallTimer::end() noexcept {
  // Runs in a destructor, also while an exception unwinds: a failing event call drops the row.
  if (depth_ == 0 || --depth_ > 0) return;
  cudaEvent_t stop = open_start_ ? event() : nullptr;
  if (stop && cudaEventRecord(stop, stream_) == cudaSuccess) {
    pending_.push_back({std::move(open_name_), open_start_, stop});
  } else {
    cudaGetLastError();
    if (stop) free_.push_back(stop);
    if (open_start_) free_.push_back(open_start_);
  }
  open_start_ = nullptr;
}

void CallTimer::collect(bool wait) {
  if (wait) CUDA_CHECK(cudaStreamSynchronize(stream_));
  size_t done = 0;
  for (; done < pending_.size(); ++done) {
    const Pair& p = pending_[done];
    const cudaError_t q = cudaEventQuery(p.stop);
    if (q == cudaErrorNotReady) break;  // the stream runs in order: later pairs are not done
    CUDA_CHECK(q);
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, p.start, p.stop));
    auto [it, fresh] = index_.emplace(p.name, table_.size());
    if (fresh) table_.push_back({p.name, 0, 0});
    table_[it->second].calls += 1;
    table_[it->second].total_us += 1e3 * double(ms);
    free_.push_back(p.start);
    free_.push_back(p.stop);
  }
  pending_.erase(pending_.begin(), pending_.begin() + std::ptrdiff_t(done));
}

std::vector<ProfileRow> CallTimer::rows() {
  collect(true);
  return table_;
}

}  // namespace dm::cuda_util
