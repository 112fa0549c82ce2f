// Every CUDA and cuBLAS call is checked; a failure throws dm::Error "[cuda] <call>: <reason>".
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "core/error.h"

namespace dm::cuda {

[[noreturn]] void throw_cuda(cudaError_t err, const char* what, const char* file, int line);
[[noreturn]] void throw_cublas(cublasStatus_t st, const char* what, const char* file, int line);

}  // namespace dm::cuda

#define CUDA_CHECK(call)                                                          \
  do {                                                                            \
    const cudaError_t dm_cuda_err_ = (call);                                      \
    if (dm_cuda_err_ != cudaSuccess)                                              \
      ::dm::cuda::throw_cuda(dm_cuda_err_, #call, __FILE__, __LINE__);            \
  } while (0)

#define CUBLAS_CHECK(call)                                                        \
  do {                                                                            \
    const cublasStatus_t dm_cublas_st_ = (call);                                  \
    if (dm_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                   \
      ::dm::cuda::throw_cublas(dm_cublas_st_, #call, __FILE__, __LINE__);         \
  } while (0)
