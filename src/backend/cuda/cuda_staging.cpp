#include "backend/cuda/cuda_staging.h"

#include <cstdlib>
#include <cstring>

#include "backend/cuda/cuda_check.h"

namespace dm::cuda_util {

PinnedStaging::PinnedStaging() {
  const char* e = std::getenv("DM_CUDA_PINNED_STAGING");
  enabled_ = !(e && std::strcmp(e, "0") == 0);
}

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

}  // namespace dm::cuda_util
