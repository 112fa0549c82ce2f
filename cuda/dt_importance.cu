// DeciMamba's token score ‖softplus(delta[t,:] + dt_bias)‖₂: one warp per token, squares summed
// in double like the CPU reference, so that near-equal scores (whose order picks the surviving
// tokens) do not depend on the summation order. Memory-bound (one read of delta: 201 MB for a
// 32K-token 130m layer): each lane keeps four 16-byte loads in flight where rows are aligned.
// (One block of 256 threads per token, the first form, read at ~1.2 TB/s on an H100: six
// elements a thread, then a block-wide double reduction with its barriers.)
#include "common.cuh"

namespace dm::cuda {
namespace {

constexpr int kWarps = 8;  // tokens per block

__device__ __forceinline__ double sq_softplus(float d, const void* dt_bias, uint32_t dtype,
                                              uint32_t c) {
  const double v = softplus(d + load_f(dt_bias, dtype, c));
  return v * v;
}

template <bool kVec4>
__global__ void __launch_bounds__(kWarps * 32) dt_importance_kernel(DtImportanceParams p,
                                                                    const float* delta,
                                                                    const void* dt_bias,
                                                                    float* scores) {
  const uint32_t lane = threadIdx.x & 31;
  const size_t t = size_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (t >= p.L) return;
  const float* dr = delta + t * p.delta_stride;
  const uint32_t C = p.channels, bt = p.dt_bias_dtype;
  double ss = 0;
  if constexpr (kVec4) {  // C % 4 == 0, rows 16-byte aligned: lane takes channels 4·lane + 128·i
    uint32_t c = 4 * lane;
    for (; c + 3 * 128 < C; c += 4 * 128) {
      float4 v[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) v[j] = *reinterpret_cast<const float4*>(dr + c + 128 * j);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const uint32_t cj = c + 128 * j;
        ss += sq_softplus(v[j].x, dt_bias, bt, cj) + sq_softplus(v[j].y, dt_bias, bt, cj + 1) +
              sq_softplus(v[j].z, dt_bias, bt, cj + 2) + sq_softplus(v[j].w, dt_bias, bt, cj + 3);
      }
    }
    for (; c < C; c += 128) {
      const float4 v = *reinterpret_cast<const float4*>(dr + c);
      ss += sq_softplus(v.x, dt_bias, bt, c) + sq_softplus(v.y, dt_bias, bt, c + 1) +
            sq_softplus(v.z, dt_bias, bt, c + 2) + sq_softplus(v.w, dt_bias, bt, c + 3);
    }
  } else {
    for (uint32_t c = lane; c < C; c += 32) ss += sq_softplus(dr[c], dt_bias, bt, c);
  }
  ss = warp_sum(ss);
  if (lane == 0) scores[t] = float(sqrt(ss));
}

}  // namespace

cudaError_t launch_dt_importance(const DtImportanceParams& p, const float* delta,
                                 const void* dt_bias, float* scores, cudaStream_t s) {
  if (p.L == 0) return cudaSuccess;
  const unsigned blocks = ceil_div(p.L, kWarps);
  const bool vec4 = p.channels % 4 == 0 && p.delta_stride % 4 == 0 &&
                    reinterpret_cast<uintptr_t>(delta) % 16 == 0;
  if (vec4)
    dt_importance_kernel<true><<<blocks, kWarps * 32, 0, s>>>(p, delta, dt_bias, scores);
  else
    dt_importance_kernel<false><<<blocks, kWarps * 32, 0, s>>>(p, delta, dt_bias, scores);
  return cudaGetLastError();
}

}  // namespace dm::cuda
