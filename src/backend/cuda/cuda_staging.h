// Page-locked staging memory for the CUDA backend's small host transfers: a decode step's token
// id in and its logits (50280 floats at 130m) out, every token. From pageable memory the driver
// stages such copies itself, chunk by chunk, and an upload first waits for the stream; from
// page-locked memory the copy is one DMA and an upload does not wait. Copies larger than
// kMaxBytes (weights, long prompts) go straight from / to the caller's memory as before.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

#include "backend/backend.h"

namespace dm::cuda_util {

class PinnedStaging {
 public:
  static constexpr size_t kMaxBytes = size_t(4) << 20;

  // DM_CUDA_PINNED_STAGING=0: never used (every copy from / to pageable memory, as before).
  PinnedStaging();
  ~PinnedStaging();
  PinnedStaging(const PinnedStaging&) = delete;
  PinnedStaging& operator=(const PinnedStaging&) = delete;

  // Copies src into the staging memory and enqueues its copy to dev_dst on s; src may be reused
  // at once. False, nothing done, when the copy is too large or page-locked memory is refused.
  bool upload(void* dev_dst, const void* src, size_t bytes, cudaStream_t s);
  // Enqueues dev_src into the staging memory on s, waits for s, copies the bytes to dst. False,
  // nothing done, as upload.
  bool download(void* dst, const void* dev_src, size_t bytes, cudaStream_t s);

 private:
  // Staging memory of at least `bytes`, no longer read by an earlier upload's copy.
  bool reserve(size_t bytes);

  bool enabled_ = true;
  void* host_ = nullptr;
  size_t bytes_ = 0;
  cudaEvent_t read_ = nullptr;  // recorded after the last staged upload's copy
  bool pending_ = false;        // read_ recorded and not yet waited for
};

// Backend::download_start / download_wait on CUDA: kSlots slots of Backend::kAsyncDownloadMax
// bytes in host-mapped page-locked memory, each written by a kernel (cuda/small_copy.cu) and
// followed by an event, so the host waits for that copy
// alone while later work (the next decode step) keeps the device busy. Tickets are waited for
// in order; at most kSlots are outstanding.
class PinnedAsyncDownloads {
 public:
  static constexpr int kSlots = Backend::kAsyncDownloadsOutstanding;

  PinnedAsyncDownloads() = default;
  ~PinnedAsyncDownloads();
  PinnedAsyncDownloads(const PinnedAsyncDownloads&) = delete;
  PinnedAsyncDownloads& operator=(const PinnedAsyncDownloads&) = delete;

  // False, nothing done, when page-locked memory is refused or DM_CUDA_PINNED_STAGING=0 (the
  // caller then downloads at once). Throws when kSlots copies are already outstanding.
  bool start(uint64_t* ticket, const void* dev_src, size_t bytes, cudaStream_t s);
  // Whether `ticket` came from start(); wait() requires it to be the oldest outstanding one.
  bool owns(uint64_t ticket) const { return ticket >= first_ && ticket < next_; }
  void wait(uint64_t ticket, void* dst);

 private:
  bool ready();

  bool tried_ = false, ok_ = false;
  unsigned char* host_ = nullptr;  // kSlots × kSlotBytes, host-mapped
  unsigned char* dev_ = nullptr;   // the same memory's device address
  cudaEvent_t done_[kSlots] = {};
  size_t bytes_[kSlots] = {};
  // Tickets [first_, next_) are outstanding; ticket t uses slot t % kSlots. They start high so
  // they never meet Backend's default tickets (which count from 1).
  uint64_t first_ = uint64_t(1) << 62, next_ = uint64_t(1) << 62;
};

}  // namespace dm::cuda_util
