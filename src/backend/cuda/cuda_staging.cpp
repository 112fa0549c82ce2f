#include "backend/cuda/cuda_staging.h"

#include <cstring>
#include <string>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"
#include "core/env.h"
#include "core/error.h"

namespace dm::cuda_util {

namespace {
// DM_CUDA_PINNED_STAGING=0 turns both kinds of staging off (copies from / to the caller's memory).
bool staging_allowed() {
  return env_choice("cuda", "DM_CUDA_PINNED_STAGING", {"1", "0"}) == 0;
}
}  // namespace

PinnedStaging::PinnedStaging() : enabled_(staging_allowed()) {}

PinnedStaging::~PinnedStaging() {
  // Errors on the way out are ignored (the runtime may already be unloading).
  if (pending_) cudaEventSynchronize(read_);
  if (read_) cudaEventDestroy(read_);
  if (host_) cudaFreeHost(host_);
  cudaGetLastError();
}

bool PinnedStaging::reserve(size_t bytes) {
  if (!enabled_ || bytes == 0 || bytes > kMaxBytes) return false;
  if (pending_) {
    CUDA_CHECK(cudaEventSynchronize(read_));
    pending_ = false;
  }
  if (bytes <= bytes_) return true;
  if (!read_) CUDA_CHECK(cudaEventCreateWithFlags(&read_, cudaEventDisableTiming));
  size_t want = size_t(64) << 10;
  while (want < bytes) want *= 2;
  if (host_) CUDA_CHECK(cudaFreeHost(host_));
  host_ = nullptr;
  bytes_ = 0;
  if (cudaHostAlloc(&host_, want, cudaHostAllocPortable) != cudaSuccess) {
    cudaGetLastError();  // no page-locked memory: pageable copies from now on
    host_ = nullptr;
    enabled_ = false;
    return false;
  }
  bytes_ = want;
  return true;
}

bool PinnedStaging::upload(void* dev_dst, const void* src, size_t bytes, cudaStream_t s) {
  if (!reserve(bytes)) return false;
  std::memcpy(host_, src, bytes);
  CUDA_CHECK(cudaMemcpyAsync(dev_dst, host_, bytes, cudaMemcpyHostToDevice, s));
  CUDA_CHECK(cudaEventRecord(read_, s));
  pending_ = true;
  return true;
}

bool PinnedStaging::download(void* dst, const void* dev_src, size_t bytes, cudaStream_t s) {
  if (!reserve(bytes)) return false;
  CUDA_CHECK(cudaMemcpyAsync(host_, dev_src, bytes, cudaMemcpyDeviceToHost, s));
  CUDA_CHECK(cudaStreamSynchronize(s));
  std::memcpy(dst, host_, bytes);
  return true;
}

namespace {
constexpr size_t kSlotBytes = 256;  // Backend::kAsyncDownloadMax (checked by the backend)
}

PinnedAsyncDownloads::~PinnedAsyncDownloads() {
  for (cudaEvent_t e : done_)
    if (e) cudaEventDestroy(e);
  if (host_) cudaFreeHost(host_);
  cudaGetLastError();
}

bool PinnedAsyncDownloads::ready() {
  if (tried_) return ok_;
  tried_ = true;
  if (!staging_allowed()) return false;
  void* h = nullptr;
  if (cudaHostAlloc(&h, kSlots * kSlotBytes, cudaHostAllocMapped | cudaHostAllocPortable) !=
      cudaSuccess) {
    cudaGetLastError();  // no page-locked memory: downloads at once instead
    return false;
  }
  host_ = static_cast<unsigned char*>(h);
  void* d = nullptr;
  if (cudaHostGetDevicePointer(&d, h, 0) != cudaSuccess) {
    cudaGetLastError();  // not mapped into the device's address space: at once instead
    cudaFreeHost(h);
    host_ = nullptr;
    return false;
  }
  dev_ = static_cast<unsigned char*>(d);
  for (cudaEvent_t& ev : done_) CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  ok_ = true;
  return true;
}

bool PinnedAsyncDownloads::start(uint64_t* ticket, const void* dev_src, size_t bytes,
                                 cudaStream_t s) {
  if (!ready()) return false;
  if (next_ - first_ >= uint64_t(kSlots))
    throw Error("[cuda] download_start: " + std::to_string(kSlots) +
                " downloads already outstanding; wait for one first");
  const int slot = int(next_ % kSlots);
  // A kernel writes the slot through the mapping: no copy-engine operation between two kernels.
  CUDA_CHECK(cuda::launch_small_copy(dev_src, dev_ + slot * kSlotBytes, bytes, s));
  CUDA_CHECK(cudaEventRecord(done_[slot], s));
  bytes_[slot] = bytes;
  *ticket = next_++;
  return true;
}

void PinnedAsyncDownloads::wait(uint64_t ticket, void* dst) {
  if (ticket != first_ || first_ == next_)
    throw Error("[cuda] download_wait: ticket " + std::to_string(ticket) +
                " is not the oldest download started and not waited for");
  const int slot = int(ticket % kSlots);
  CUDA_CHECK(cudaEventSynchronize(done_[slot]));
  // The event follows the kernel that wrote the slot: its writes are visible to the host now.
  if (bytes_[slot] > 0) std::memcpy(dst, host_ + slot * kSlotBytes, bytes_[slot]);
  ++first_;
}

}  // namespace dm::cuda_util
