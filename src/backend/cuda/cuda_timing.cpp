#include "backend/cuda/cuda_timing.h"

#include <algorithm>

#include <cuda_profiler_api.h>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"

namespace dm {
namespace {

CudaBackend& as_cuda(Backend& b) {
  auto* cb = dynamic_cast<CudaBackend*>(&b);
  if (!cb) fail("[cuda] timing needs the cuda backend, not '", b.name(), "'");
  return *cb;
}

class Events {
 public:
  explicit Events(size_t n) : ev_(n) {
    for (auto& e : ev_) CUDA_CHECK(cudaEventCreate(&e));
  }
  ~Events() {
    for (auto& e : ev_) cudaEventDestroy(e);
  }
  cudaEvent_t operator[](size_t i) const { return ev_[i]; }

 private:
  std::vector<cudaEvent_t> ev_;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

double cuda_time_ms(Backend& backend, const std::function<void()>& enqueue, int reps, int warmup) {
  CudaBackend& be = as_cuda(backend);
  for (int i = 0; i < warmup; ++i) enqueue();
  be.synchronize();
  Events ev(size_t(2 * reps));
  for (int r = 0; r < reps; ++r) {
    CUDA_CHECK(cudaEventRecord(ev[size_t(2 * r)], be.stream()));
    enqueue();
    CUDA_CHECK(cudaEventRecord(ev[size_t(2 * r + 1)], be.stream()));
  }
  be.synchronize();
  std::vector<double> ms;
  for (int r = 0; r < reps; ++r) {
    float t = 0;
    CUDA_CHECK(cudaEventElapsedTime(&t, ev[size_t(2 * r)], ev[size_t(2 * r + 1)]));
    ms.push_back(t);
  }
  return median(ms);
}

double cuda_loop_time_ms(Backend& backend, const std::function<void()>& enqueue, int iters,
                         int warmup, const std::function<void()>& settle) {
  CudaBackend& be = as_cuda(backend);
  if (iters < 1) fail("[cuda] cuda_loop_time_ms: iters = ", iters, ", want >= 1");
  for (int i = 0; i < warmup; ++i) enqueue();
  if (settle) settle();
  be.synchronize();
  Events ev(2);
  CUDA_CHECK(cudaEventRecord(ev[0], be.stream()));
  for (int i = 0; i < iters; ++i) enqueue();
  CUDA_CHECK(cudaEventRecord(ev[1], be.stream()));
  if (settle) settle();
  be.synchronize();
  float t = 0;
  CUDA_CHECK(cudaEventElapsedTime(&t, ev[0], ev[1]));
  return double(t) / iters;
}

double cuda_copy_bandwidth_gbs(Backend& backend, size_t bytes) {
  CudaBackend& be = as_cuda(backend);
  auto a = be.alloc(bytes), b = be.alloc(bytes);
  void* pa = static_cast<CudaBuffer&>(*a).ptr();
  void* pb = static_cast<CudaBuffer&>(*b).ptr();
  CUDA_CHECK(cudaMemsetAsync(pa, 0x3c, bytes, be.stream()));
  const double ms = cuda_time_ms(
      backend, [&] { CUDA_CHECK(cudaMemcpyAsync(pb, pa, bytes, cudaMemcpyDeviceToDevice, be.stream())); },
      10, 2);
  return 2.0 * double(bytes) / (ms * 1e-3) / 1e9;
}

void cuda_profiler_range(Backend& backend, const std::function<void()>& enqueue) {
  CudaBackend& be = as_cuda(backend);
  be.synchronize();
  CUDA_CHECK(cudaProfilerStart());
  enqueue();
  be.synchronize();
  CUDA_CHECK(cudaProfilerStop());
}

std::vector<unsigned long long> cuda_decode_block_trace(Backend& backend) {
  return as_cuda(backend).decode_block_trace();
}

}  // namespace dm
