// dst[i,:] = src[idx[i],:] as fp32 (also the embedding lookup): one block per output row.
// An index outside [0, src_rows) leaves that row unwritten and is recorded (the first one) in
// the backend's error slot, which the host turns into a dm::Error at the next synchronize.
#include "common.cuh"
#include "fused_step.cuh"

namespace dm::cuda {
namespace {

constexpr int kBlock = 256;

__global__ void __launch_bounds__(kBlock) gather_rows_kernel(GatherRowsParams p, const char* src,
                                                             const int32_t* idx, float* dst,
                                                             DeviceErrorInfo* err) {
  pdl_trigger();  // the decode step's first fused kernel may start loading its weights
  const uint32_t i = blockIdx.x;
  const int32_t r = idx[i];
  if (r < 0 || uint32_t(r) >= p.src_rows) {
    if (threadIdx.x == 0 && atomicCAS(&err->code, 0, kErrGatherIndex) == 0) {
      err->a = i;
      err->b = r;
      err->c = p.src_rows;
      __threadfence_system();
    }
    return;
  }
  const size_t esize = p.src_dtype == 0 ? 4 : 2;
  const void* row = src + size_t(r) * p.src_stride * esize;
  float* d = dst + size_t(i) * p.dst_stride;
  for (uint32_t c = threadIdx.x; c < p.cols; c += kBlock) d[c] = load_f(row, p.src_dtype, c);
}

}  // namespace

cudaError_t launch_gather_rows(const GatherRowsParams& p, const void* src, const int32_t* idx,
                               float* dst, DeviceErrorInfo* err, cudaStream_t s) {
  if (p.n == 0) return cudaSuccess;  // cols == 0 still checks the indices
  gather_rows_kernel<<<p.n, kBlock, 0, s>>>(p, static_cast<const char*>(src), idx, dst, err);
  return cudaGetLastError();
}

}  // namespace dm::cuda
