// DeciMamba's token score ‖softplus(delta[t,:] + dt_bias)‖₂: one warp per token, squares summed
// in double like the CPU reference, so that near-equal scores (whose order picks the surviving
// tokens) do not depend on the summation order. One read of delta (201 MB for a 32K-token 130m
// layer): each lane keeps four 16-byte loads in flight where rows are aligned.
// dt_bias is staged once per block as fp32 in shared memory (kTokens tokens a warp share it), not
// loaded and converted per element. Each lane sums the same channels in the same order and with
// the same expressions as the first forms (not compared bit for bit).
// H100, 32K x 1536 (ncu, decimating 130m prefill, session 8): 108.6-110.4 us (1.8 TB/s; the
// form before, dt_bias read per element: 128.2-129.2 us). Not the floor (~67 us), and not simply
// compute-bound: a softplus with ~40% fewer instructions (series log1p, not kept: other
// rounding) measured 102.3 us; eight loads in flight per lane 131.1 us; 32 registers for full
// occupancy 112.2 us. (A block of 256 threads per token, the first form, read at ~1.2 TB/s.)
#include "common.cuh"

namespace dm::cuda {
namespace {

constexpr int kWarps = 8;                    // warps per block
constexpr int kTokens = 4;                   // tokens per warp
constexpr uint32_t kMaxSmemChannels = 8192;  // 32 KiB of staged dt_bias; more: read per element

__device__ __forceinline__ double sq(float v) {
  const double d = v;
  return d * d;
}

// kVec4: C % 4 == 0 and delta's rows 16-byte aligned (lane takes channels 4·lane + 128·i).
// kSmem: dt_bias staged as fp32 in shared memory.
template <bool kVec4, bool kSmem>
__global__ void __launch_bounds__(kWarps * 32) dt_importance_kernel(DtImportanceParams p,
                                                                    const float* delta,
                                                                    const void* dt_bias,
                                                                    float* scores) {
  extern __shared__ float4 sbias4[];  // C floats when kSmem
  float* sbias = reinterpret_cast<float*>(sbias4);
  const uint32_t C = p.channels, bt = p.dt_bias_dtype;
  if constexpr (kSmem) {
    for (uint32_t c = threadIdx.x; c < C; c += kWarps * 32) sbias[c] = load_f(dt_bias, bt, c);
    __syncthreads();
  }
  const auto bias = [&](uint32_t c) { return kSmem ? sbias[c] : load_f(dt_bias, bt, c); };
  const auto bias4 = [&](uint32_t c) {
    if constexpr (kSmem) {
      return sbias4[c / 4];
    } else {
      return make_float4(bias(c), bias(c + 1), bias(c + 2), bias(c + 3));
    }
  };
  const auto sq4 = [](float4 v, float4 b) {
    return sq(softplus(v.x + b.x)) + sq(softplus(v.y + b.y)) + sq(softplus(v.z + b.z)) +
           sq(softplus(v.w + b.w));
  };
  const uint32_t lane = threadIdx.x & 31;
  const size_t t0 = (size_t(blockIdx.x) * kWarps + (threadIdx.x >> 5)) * kTokens;
  for (size_t t = t0; t < t0 + kTokens && t < p.L; ++t) {
    const float* dr = delta + t * p.delta_stride;
    double ss = 0;
    if constexpr (kVec4) {
      uint32_t c = 4 * lane;
      for (; c + 3 * 128 < C; c += 4 * 128) {
        float4 v[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) v[j] = *reinterpret_cast<const float4*>(dr + c + 128 * j);
#pragma unroll
        for (int j = 0; j < 4; ++j) ss += sq4(v[j], bias4(c + 128 * j));
      }
      for (; c < C; c += 128) ss += sq4(*reinterpret_cast<const float4*>(dr + c), bias4(c));
    } else {
      for (uint32_t c = lane; c < C; c += 32) ss += sq(softplus(dr[c] + bias(c)));
    }
    ss = warp_sum(ss);
    if (lane == 0) scores[t] = float(sqrt(ss));
  }
}

template <bool kVec4>
void launch(const DtImportanceParams& p, const float* delta, const void* dt_bias, float* scores,
            cudaStream_t s) {
  const unsigned blocks = ceil_div(p.L, kWarps * kTokens);
  if (p.channels <= kMaxSmemChannels)
    dt_importance_kernel<kVec4, true>
        <<<blocks, kWarps * 32, p.channels * sizeof(float), s>>>(p, delta, dt_bias, scores);
  else
    dt_importance_kernel<kVec4, false><<<blocks, kWarps * 32, 0, s>>>(p, delta, dt_bias, scores);
}

}  // namespace

cudaError_t launch_dt_importance(const DtImportanceParams& p, const float* delta,
                                 const void* dt_bias, float* scores, cudaStream_t s) {
  if (p.L == 0) return cudaSuccess;
  const bool vec4 = p.channels % 4 == 0 && p.delta_stride % 4 == 0 &&
                    reinterpret_cast<uintptr_t>(delta) % 16 == 0;
  if (vec4)
    launch<true>(p, delta, dt_bias, scores, s);
  else
    launch<false>(p, delta, dt_bias, scores, s);
  return cudaGetLastError();
}

}  // namespace dm::cuda
