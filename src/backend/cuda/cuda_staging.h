// Page-locked staging memory for the CUDA backend's small host transfers: a decode step's token
// id in and its logits (50280 floats at 130m) out, every token. From pageable memory the driver
// stages such copies itself, chunk by chunk, and an upload first waits for the stream; from
// page-locked memory the copy is one DMA and an upload does not wait. Copies larger than
// kMaxBytes (weights, long prompts) go straight from / to the caller's memory as before.
#pragma once

#include <cstddef>

#include <cuda_runtime.h>

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

}  // namespace dm::cuda_util
