// The GEMM itself is cuBLAS (src/backend/cuda/cuda_gemm.cpp); these are its two helpers:
// activations rounded to the weight dtype (fp16 / bf16, round to nearest even) so the product
// runs on tensor cores with fp32 accumulation, and the bias add for layers that have one.
#include "common.cuh"

namespace dm::cuda {
namespace {

constexpr int kBlock = 256;

template <typename T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// x (M×K, row stride x_stride) -> out (M×K, dense). Grid: (K tiles, M).
template <typename T>
__global__ void __launch_bounds__(kBlock) convert_rows_kernel(uint32_t K, const float* x,
                                                              uint32_t x_stride, T* out) {
  const size_t m = blockIdx.y;
  const uint32_t k = blockIdx.x * kBlock + threadIdx.x;
  if (k < K) out[m * K + k] = from_f32<T>(x[m * x_stride + k]);
}

__global__ void __launch_bounds__(kBlock) add_bias_kernel(uint32_t N, float* y, uint32_t y_stride,
                                                          const void* bias, uint32_t bias_dtype) {
  const size_t m = blockIdx.y;
  const uint32_t n = blockIdx.x * kBlock + threadIdx.x;
  if (n < N) y[m * y_stride + n] += load_f(bias, bias_dtype, n);
}

}  // namespace

cudaError_t launch_convert_rows(uint32_t M, uint32_t K, const float* x, uint32_t x_stride,
                                void* out, uint32_t out_dtype, cudaStream_t s) {
  if (M == 0 || K == 0) return cudaSuccess;
  const dim3 grid(ceil_div(K, kBlock), 1);
  // Rows in grid.y (at most 65535 per launch): long prompts go in slices.
  for (uint32_t m0 = 0; m0 < M; m0 += 65535u) {
    const uint32_t rows = M - m0 < 65535u ? M - m0 : 65535u;
    const dim3 g(grid.x, rows);
    const float* xs = x + size_t(m0) * x_stride;
    if (out_dtype == 1)
      convert_rows_kernel<__half><<<g, kBlock, 0, s>>>(K, xs, x_stride,
                                                       static_cast<__half*>(out) + size_t(m0) * K);
    else
      convert_rows_kernel<__nv_bfloat16><<<g, kBlock, 0, s>>>(
          K, xs, x_stride, static_cast<__nv_bfloat16*>(out) + size_t(m0) * K);
  }
  return cudaGetLastError();
}

cudaError_t launch_add_bias(uint32_t M, uint32_t N, float* y, uint32_t y_stride, const void* bias,
                            uint32_t bias_dtype, cudaStream_t s) {
  if (M == 0 || N == 0) return cudaSuccess;
  for (uint32_t m0 = 0; m0 < M; m0 += 65535u) {
    const uint32_t rows = M - m0 < 65535u ? M - m0 : 65535u;
    add_bias_kernel<<<dim3(ceil_div(N, kBlock), rows), kBlock, 0, s>>>(
        N, y + size_t(m0) * y_stride, y_stride, bias, bias_dtype);
  }
  return cudaGetLastError();
}

// Any kernel will do: it fails to launch-configure when the binary has no code for the device.
cudaError_t check_kernel_image() {
  cudaFuncAttributes attr;
  return cudaFuncGetAttributes(&attr, add_bias_kernel);
}

}  // namespace dm::cuda
