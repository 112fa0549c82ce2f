// The Mamba-1 selective scan over a prompt, parallel over time, fp32 throughout:
//   Δ = softplus(delta + dt_bias); h_t = exp(Δ·A)·h_{t-1} + Δ·B_t·u_t; y_t = C_t·h_t + D·u_t;
//   y_t *= SiLU(z_t).
//
// d_state 16 (every published Mamba-1) runs a chunked block scan. A block owns 8 channels and
// walks the sequence in chunks of 64 tokens, carrying the state from chunk to chunk on chip.
// Within a chunk each of its 8 warps takes 8 consecutive tokens (a segment); a warp's lanes are
// 8 channels × 4 groups of 4 states, so a token row of u, delta, z, y is one 32-byte sector and
// B, C rows are read as float4. Per chunk:
//   1. each lane runs its segment from a zero state: decays a = exp(Δ·A) and inputs Δ·B·u stay in
//      registers, the segment's (decay product, end state) go to shared memory;
//   2. one barrier; each warp folds the segments before its own onto the carried state (a few
//      FMAs) to get its true start state, and the last warp publishes the chunk's end state;
//   3. each lane reruns its segment from the start state out of registers (no reloads, no second
//      exp), forms C·h over its 4 states, and a 4-lane reduce-scatter leaves each lane the full
//      y of 2 tokens, which it gates and stores.
// Inputs are read once, y written once: the kernel's DRAM traffic is the floor of
// docs/performance.md. The softplus runs once per (token, channel) and is shared by shuffles.
// Any other d_state runs a plain sequential kernel (thread per channel), correct but slow.
#include "common.cuh"

namespace dm::cuda {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr unsigned kFull = 0xffffffffu;

constexpr int kN = 16;       // d_state of the fast path
constexpr int kSPL = 4;      // states per lane
constexpr int kCPW = 8;      // channels per warp (and per block)
constexpr int kR = 8;        // tokens per warp segment
constexpr int kS = 8;        // warps per block = segments per chunk
constexpr int kChunk = kR * kS;
constexpr int kThreads = 32 * kS;

template <bool kVec>
__device__ __forceinline__ void load4(const float* p, bool valid, float (&v)[kSPL]) {
  if (!valid) {
#pragma unroll
    for (int j = 0; j < kSPL; ++j) v[j] = 0.f;
  } else if (kVec) {
    const float4 q = __ldg(reinterpret_cast<const float4*>(p));
    v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
  } else {
#pragma unroll
    for (int j = 0; j < kSPL; ++j) v[j] = __ldg(p + j);
  }
}

template <bool kVec>
__global__ void __launch_bounds__(kThreads, 2) selective_scan_n16_kernel(
    SelectiveScanParams p, const float* __restrict__ u, const float* __restrict__ delta,
    const void* A_log, const float* __restrict__ B, const float* __restrict__ C, const void* Dp,
    const float* __restrict__ z, const void* dt_bias, float* state, float* __restrict__ y) {
  // Per chunk parity (so one barrier per chunk suffices), segment, state, lane.
  __shared__ float2 seg[2][kS][kSPL][32];  // (decay product over the segment, end state from 0)
  __shared__ float carry[2][kSPL][32];     // state entering the chunk
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  const int g = lane & 3;   // states 4g .. 4g+3
  const int cl = lane >> 2;  // channel within the block
  const uint32_t c = blockIdx.x * kCPW + cl;
  const bool cv = c < p.channels;
  const uint32_t cc = cv ? c : 0;
  const int src_base = cl << 2;  // first lane of this channel's group

  float A2[kSPL];  // A · log2(e): exp(Δ·A) = exp2(Δ·A2)
#pragma unroll
  for (int j = 0; j < kSPL; ++j)
    A2[j] = -expf(load_f(A_log, p.A_log_dtype, size_t(cc) * kN + g * kSPL + j)) * kLog2e;
  const float Dv = load_f(Dp, p.D_dtype, cc);
  const float bias = load_f(dt_bias, p.dt_bias_dtype, cc);
  if (w == 0) {
#pragma unroll
    for (int j = 0; j < kSPL; ++j) carry[0][j][lane] = cv ? state[size_t(c) * kN + g * kSPL + j] : 0.f;
  }

  const int64_t L = p.L;
  const uint32_t nchunks = uint32_t((L + kChunk - 1) / kChunk);
  float hend[kSPL] = {0.f, 0.f, 0.f, 0.f};
  for (uint32_t ch = 0; ch < nchunks; ++ch) {
    const int par = ch & 1;
    const int64_t tb = int64_t(ch) * kChunk + w * kR;  // first token of this warp's segment

    // This lane's two tokens of its channel: Δ and Δ·u, shared with the group by shuffles.
    float dtv[2], duv[2], uv[2], zv[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int64_t t = tb + 2 * g + i;
      const bool tv = cv && t < L;
      const float dr = tv ? delta[size_t(t) * p.delta_stride + c] : 0.f;
      uv[i] = tv ? u[size_t(t) * p.u_stride + c] : 0.f;
      zv[i] = tv && p.has_z ? z[size_t(t) * p.z_stride + c] : 0.f;
      dtv[i] = tv ? softplus(dr + bias) : 0.f;
      duv[i] = dtv[i] * uv[i];
    }

    // 1. The segment from a zero state.
    float a[kR][kSPL], xb[kR][kSPL], P[kSPL], hl[kSPL];
#pragma unroll
    for (int j = 0; j < kSPL; ++j) P[j] = 1.f, hl[j] = 0.f;
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      const int64_t t = tb + r;
      const bool tv = t < L;
      const float dt = __shfl_sync(kFull, (r & 1) ? dtv[1] : dtv[0], src_base + (r >> 1));
      const float du = __shfl_sync(kFull, (r & 1) ? duv[1] : duv[0], src_base + (r >> 1));
      float Bv[kSPL];
      load4<kVec>(B + size_t(t) * p.B_stride + g * kSPL, tv, Bv);
#pragma unroll
      for (int j = 0; j < kSPL; ++j) {
        a[r][j] = tv ? exp2f(dt * A2[j]) : 1.f;  // a padding token leaves the state alone
        xb[r][j] = Bv[j] * du;
        hl[j] = fmaf(a[r][j], hl[j], xb[r][j]);
        P[j] *= a[r][j];
      }
    }
#pragma unroll
    for (int j = 0; j < kSPL; ++j) seg[par][w][j][lane] = make_float2(P[j], hl[j]);
    __syncthreads();

    // 2. The true start state: the carried state with the earlier segments folded on.
    float h[kSPL];
#pragma unroll
    for (int j = 0; j < kSPL; ++j) h[j] = carry[par][j][lane];
    for (int s = 0; s < w; ++s) {
#pragma unroll
      for (int j = 0; j < kSPL; ++j) {
        const float2 q = seg[par][s][j][lane];
        h[j] = fmaf(q.x, h[j], q.y);
      }
    }
    if (w == kS - 1) {
#pragma unroll
      for (int j = 0; j < kSPL; ++j) {
        hend[j] = fmaf(P[j], h[j], hl[j]);
        carry[par ^ 1][j][lane] = hend[j];
      }
    }

    // 3. Rerun from the start state; y partial over this lane's 4 states.
    float yv[kR];
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      float Cv[kSPL];
      load4<kVec>(C + size_t(tb + r) * p.C_stride + g * kSPL, tb + r < L, Cv);
      float acc = 0.f;
#pragma unroll
      for (int j = 0; j < kSPL; ++j) {
        h[j] = fmaf(a[r][j], h[j], xb[r][j]);
        acc = fmaf(h[j], Cv[j], acc);
      }
      yv[r] = acc;
    }
    // Reduce-scatter over the channel's 4 lanes: lane g ends with tokens 2g and 2g+1.
    float y4[4], y2[2];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const bool hi = g & 2;
      const float keep = hi ? yv[i + 4] : yv[i], send = hi ? yv[i] : yv[i + 4];
      y4[i] = keep + __shfl_xor_sync(kFull, send, 2);
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const bool hi = g & 1;
      const float keep = hi ? y4[i + 2] : y4[i], send = hi ? y4[i] : y4[i + 2];
      y2[i] = keep + __shfl_xor_sync(kFull, send, 1);
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int64_t t = tb + 2 * g + i;
      if (cv && t < L) {
        float o = y2[i] + Dv * uv[i];
        if (p.has_z) o *= silu(zv[i]);
        y[size_t(t) * p.y_stride + c] = o;
      }
    }
  }
  if (w == kS - 1 && cv) {
#pragma unroll
    for (int j = 0; j < kSPL; ++j) state[size_t(c) * kN + g * kSPL + j] = hend[j];
  }
}

// Any d_state: thread per channel, sequential over time, the state advanced in place.
constexpr int kGenericBlock = 128;

__global__ void __launch_bounds__(kGenericBlock) selective_scan_generic_kernel(
    SelectiveScanParams p, const float* u, const float* delta, const void* A_log, const float* B,
    const float* C, const void* Dp, const float* z, const void* dt_bias, float* state, float* y) {
  const uint32_t c = blockIdx.x * kGenericBlock + threadIdx.x;
  if (c >= p.channels) return;
  const uint32_t N = p.d_state;
  const float bias = load_f(dt_bias, p.dt_bias_dtype, c), Dv = load_f(Dp, p.D_dtype, c);
  float* h = state + size_t(c) * N;
  for (uint32_t t = 0; t < p.L; ++t) {
    const float dt = softplus(delta[size_t(t) * p.delta_stride + c] + bias);
    const float uv = u[size_t(t) * p.u_stride + c];
    const float du = dt * uv;
    const float* Br = B + size_t(t) * p.B_stride;
    const float* Cr = C + size_t(t) * p.C_stride;
    float acc = 0.f;
    for (uint32_t n = 0; n < N; ++n) {
      const float A = -expf(load_f(A_log, p.A_log_dtype, size_t(c) * N + n));
      const float hn = expf(dt * A) * h[n] + Br[n] * du;
      h[n] = hn;
      acc += hn * Cr[n];
    }
    acc += Dv * uv;
    if (p.has_z) acc *= silu(z[size_t(t) * p.z_stride + c]);
    y[size_t(t) * p.y_stride + c] = acc;
  }
}

bool aligned16(const void* ptr, uint32_t stride) {
  return reinterpret_cast<uintptr_t>(ptr) % 16 == 0 && stride % 4 == 0;
}

}  // namespace

cudaError_t launch_selective_scan(const SelectiveScanParams& p, const float* u,
                                  const float* delta, const void* A_log, const float* B,
                                  const float* C, const void* D, const float* z,
                                  const void* dt_bias, float* ssm_state, float* y,
                                  cudaStream_t s) {
  if (p.L == 0 || p.channels == 0) return cudaSuccess;
  if (p.d_state == kN) {
    const unsigned blocks = ceil_div(p.channels, kCPW);
    if (aligned16(B, p.B_stride) && aligned16(C, p.C_stride))
      selective_scan_n16_kernel<true><<<blocks, kThreads, 0, s>>>(p, u, delta, A_log, B, C, D, z,
                                                                  dt_bias, ssm_state, y);
    else
      selective_scan_n16_kernel<false><<<blocks, kThreads, 0, s>>>(p, u, delta, A_log, B, C, D, z,
                                                                   dt_bias, ssm_state, y);
  } else {
    selective_scan_generic_kernel<<<ceil_div(p.channels, kGenericBlock), kGenericBlock, 0, s>>>(
        p, u, delta, A_log, B, C, D, z, dt_bias, ssm_state, y);
  }
  return cudaGetLastError();
}

}  // namespace dm::cuda
