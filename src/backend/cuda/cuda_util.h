// Helpers the CUDA backend's source files share (cuda_backend.cpp, cuda_gemm.cpp,
// cuda_fusions.cpp): error reporting and the device pointer of a tensor.
#pragma once

#include <string>

#include <cuda_runtime.h>

#include "backend/cuda/cuda_backend.h"
#include "backend/params.h"
#include "core/tensor.h"

namespace dm::cuda_util {

std::string mib(size_t bytes);  // "12 MiB", rounded up
// "[cuda] out of memory: <what> of N MiB failed (...; F MiB free of T MiB)", thrown.
[[noreturn]] void out_of_memory(cudaError_t e, size_t bytes, const char* what);
void check_launch(cudaError_t e, const char* kernel);  // throws on a failed launch
// The CUDA buffer behind b (throws if another backend made it); while a graph is recorded, notes
// it among the recording's buffers.
CudaBuffer& dev(const Buffer& b, const char* what);
// Frees b's K-concatenated weight copies (cuda_gemm.cpp), waiting for the work that reads them.
void free_kcat_copies(CudaBuffer& b);
// cuBLAS takes int sizes: throws where a GEMM's would not fit.
void check_cublas_range(const GemmParams& p);

template <typename T = float>
T* dptr(const Tensor& t, const char* what) {
  return reinterpret_cast<T*>(static_cast<char*>(dev(*t.buf, what).ptr()) + t.offset);
}
template <typename T = float>
T* dptr(const Tensor* t, const char* what) {
  return t ? dptr<T>(*t, what) : nullptr;
}

}  // namespace dm::cuda_util
