// A copy of at most a few hundred bytes by a kernel, into host-mapped page-locked memory:
// Backend::download_start's copy on CUDA (greedy decoding's pick, 4 bytes a token). Measured on
// an H200 (session 11): with cudaMemcpyAsync, a copy-engine operation between two replayed decode
// steps, greedy decoding ran ~25 µs a token above the graphs' back-to-back device time; a kernel
// keeps the stream's work all kernels.
#include "common.cuh"
#include "fused_step.cuh"

namespace dm::cuda {
namespace {

__global__ void small_copy_kernel(const unsigned char* __restrict__ src,
                                  unsigned char* __restrict__ dst, uint32_t bytes) {
  pdl_wait();  // launched early (PDL): what the kernel before wrote is visible from here
  pdl_trigger();
  for (uint32_t i = threadIdx.x; i < bytes; i += blockDim.x) dst[i] = src[i];
}

}  // namespace

cudaError_t launch_small_copy(const void* src, void* mapped_dst, size_t bytes, cudaStream_t s) {
  if (bytes == 0) return cudaSuccess;
  return launch_pdl(small_copy_kernel, 1, 128, 0, s, static_cast<const unsigned char*>(src),
                    static_cast<unsigned char*>(mapped_dst), uint32_t(bytes));
}

}  // namespace dm::cuda
