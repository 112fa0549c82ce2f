// The Mamba-1 selective scan over a prompt, fp32 state and I/O:
//   Δ = softplus(delta + dt_bias); h_t = exp(Δ·A)·h_{t-1} + Δ·B_t·u_t; y_t = C_t·h_t + D·u_t;
//   y_t *= SiLU(z_t).
//
// d_state 16 (every published Mamba-1) runs, by default, v7 (selective_scan_v7.cu: v6's scan
// with TMA staging and warps coupled only by mbarriers) at d_inner ≥ 1536, v6
// (selective_scan_v6.cu: one warp per channel, time-parallel inside the warp, block-synchronous)
// where v7 cannot run, and below 1536 selective_scan_v2_kernel (described
// where it is defined): sequential over time per lane, a few states of one channel per lane, all
// inputs staged through shared memory by cp.async several stages ahead, one ex2.approx per
// (token, channel, state). DM_CUDA_SCAN=v2 forces v2, v6[<letter>] / v7[<letter>] a v6 / v7
// configuration. DM_CUDA_SCAN=v1 selects the older chunked block scan kept below for comparison:
//
// v1: a block owns 8 channels and walks the sequence in chunks of 64 tokens, carrying the state
// from chunk to chunk on chip. Within a chunk each of its 8 warps takes 8 consecutive tokens (a
// segment); a warp's lanes are 8 channels × 4 groups of 4 states. Per chunk: (1) each lane runs
// its segment from a zero state, decays and inputs kept in registers, the segment's (decay
// product, end state) to shared memory; (2) one barrier; each warp folds the earlier segments
// onto the carried state; (3) each lane reruns its segment from its true start and forms y.
// Measured 13–16% of the bandwidth floor on an H100: three dependent global-load latencies per
// chunk and only 8–16 warps per SM.
// Any other d_state runs a plain sequential kernel (thread per channel), correct but slow.
// DM_CUDA_SCAN=v3<letter> selects the single-pass look-back scans (v3, v4 persistent, v5 tagged;
// selective_scan_lookback.cu, measured slower than v6, see cuda/README.md); they need the
// scratch the backend sizes with selective_scan_scratch_bytes().
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common.cuh"
#include "selective_scan_common.cuh"
#include "selective_scan_lookback.cuh"
#include "selective_scan_v6.cuh"
#include "selective_scan_v7.cuh"

namespace dm::cuda {
namespace {

using namespace scan;

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

// ---------------------------------------------------------------------------------------------
// v2: everything staged through shared memory, one ex2.approx per (token, channel, state).
// A lane owns SPL states of one channel (G = 16/SPL lanes per channel, CPW = 32/G channels per
// warp); a block of W·S warps owns CB = W·CPW consecutive channels and walks the whole sequence
// in stages of kT tokens, kStages stages in flight (cp.async, 16-byte pieces where aligned). Per
// stage: (1) Δ = softplus(delta + bias) and Δ·u once per (token, channel) into shared memory,
// transposed to [channel][token] so a lane reads 4 tokens with one 16-byte load; (2) the scan:
//   S = 1: each lane advances its SPL states token by token (4 FP32 ops + 1 MUFU per element);
//   S > 1: the stage is cut into S segments of kT/S tokens, one per group of W warps; each lane
//          keeps its segment's decays and inputs in registers, runs it from a zero state, one
//          barrier, folds the earlier segments' (product, end state) onto the carried state and
//          reruns the segment from its true start (2 more FP32 ops per element, S× the warps);
// the partial y over a lane's states is reduce-scattered over the channel's G lanes every G
// tokens; (3) the block gates y (+D·u, ·SiLU(z)) and stores whole rows (16-byte stores).
// Inputs are read once, y written once. Δ, SiLU and the decays use ex2/lg2/rcp.approx: NMSE
// against the fp32 CPU reference ≤ 1.6e-12 in the tests (was ≤ 3e-14 with expf/log1pf).
// DM_CUDA_SCAN=s<SPL>w<W>[x<S>] picks an instantiation for measurements.
constexpr int kT = 32;       // tokens per stage
constexpr int kStages = 4;   // stages in flight
constexpr int kTP = kT + 4;  // padded row of the transposed Δ, Δ·u

template <int CB>
struct ScanStage {
  float delta[kT][CB];
  float u[kT][CB];
  float z[kT][CB];
  float B[kT][kN];
  float C[kT][kN];
};

template <int SPL, int W, int S>
struct ScanSmem {
  static constexpr int G = kN / SPL, CPW = 32 / G, CB = W * CPW;
  static_assert(CB % 4 == 0, "rows are staged in 16-byte pieces");
  ScanStage<CB> st[kStages];
  float dt[CB][kTP];  // Δ, transposed
  float du[CB][kTP];  // Δ·u, transposed
  float y[kT][CB];    // C·h before the gate
  float bias[CB], D[CB];
  float2 seg[S > 1 ? S : 1][SPL][W * 32];  // per segment: (decay product, end state from 0)
};

template <int SPL, int W, int S>
__global__ void __launch_bounds__(32 * W * S, 16 / (W * S) > 0 ? 16 / (W * S) : 1) selective_scan_v2_kernel(
    SelectiveScanParams p, const float* __restrict__ u, const float* __restrict__ delta,
    const void* A_log, const float* __restrict__ B, const float* __restrict__ C, const void* Dp,
    const float* __restrict__ z, const void* dt_bias, float* state, float* __restrict__ y,
    uint32_t vec_flags) {
  using SM = ScanSmem<SPL, W, S>;
  constexpr int G = SM::G, CPW = SM::CPW, CB = SM::CB, NT = 32 * W * S;
  constexpr int R = kT / S;  // tokens per segment
  static_assert(R % G == 0, "a segment holds whole reduce groups");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  SM& sm = *reinterpret_cast<SM*>(smem_raw);
  const bool vec_ch = vec_flags & 1, vec_bc = vec_flags & 2, vec_y = vec_flags & 4;

  const int tid = threadIdx.x, lane = tid & 31, w = (tid >> 5) % W, sg = (tid >> 5) / W;
  const int slot = tid % (32 * W);
  const int g = lane % G;                 // state group: states g·SPL ..
  const int cl = w * CPW + lane / G;      // channel within the block
  const uint32_t c0 = blockIdx.x * CB;
  const uint32_t c = c0 + cl;
  const bool cv = c < p.channels;
  const uint32_t cc = cv ? c : 0;
  const int64_t L = p.L;
  const bool has_z = p.has_z;

  float A2[SPL], h[SPL];
#pragma unroll
  for (int j = 0; j < SPL; ++j) {
    A2[j] = -expf(load_f(A_log, p.A_log_dtype, size_t(cc) * kN + g * SPL + j)) * kLog2e;
    h[j] = cv ? state[size_t(c) * kN + g * SPL + j] : 0.f;
  }
  #pragma unroll 1
  for (int i = tid; i < CB; i += NT) {
    const uint32_t ci = c0 + i < p.channels ? c0 + i : 0;
    sm.bias[i] = load_f(dt_bias, p.dt_bias_dtype, ci);
    sm.D[i] = load_f(Dp, p.D_dtype, ci);
  }

  const uint32_t nst = uint32_t((L + kT - 1) / kT);
  auto issue = [&](uint32_t s) {
    if (s < nst) {
      ScanStage<CB>& b = sm.st[s % kStages];
      const int64_t t0 = int64_t(s) * kT;
      if (vec_ch) {
        constexpr int V = CB / 4;  // 16-byte pieces per row
        const int narr = has_z ? 3 : 2;
        #pragma unroll 1
        for (int i = tid; i < narr * kT * V; i += NT) {
          const int a = i / (kT * V), r = i % (kT * V), t = r / V, q = r % V;
          const int64_t tt = t0 + t;
          const uint32_t ch = c0 + 4 * q;
          const bool ok = tt < L && ch < p.channels;
          const float* base = a == 0 ? delta : a == 1 ? u : z;
          const uint32_t stride = a == 0 ? p.delta_stride : a == 1 ? p.u_stride : p.z_stride;
          float* dst = a == 0 ? &b.delta[t][4 * q] : a == 1 ? &b.u[t][4 * q] : &b.z[t][4 * q];
          cp_async16(dst, ok ? base + size_t(tt) * stride + ch : base, ok);
        }
      } else {
        const int narr = has_z ? 3 : 2;
        #pragma unroll 1
        for (int i = tid; i < narr * kT * CB; i += NT) {
          const int a = i / (kT * CB), r = i % (kT * CB), t = r / CB, q = r % CB;
          const int64_t tt = t0 + t;
          const uint32_t ch = c0 + q;
          const bool ok = tt < L && ch < p.channels;
          const float* base = a == 0 ? delta : a == 1 ? u : z;
          const uint32_t stride = a == 0 ? p.delta_stride : a == 1 ? p.u_stride : p.z_stride;
          float* dst = a == 0 ? &b.delta[t][q] : a == 1 ? &b.u[t][q] : &b.z[t][q];
          cp_async4(dst, ok ? base + size_t(tt) * stride + ch : base, ok);
        }
      }
      if (vec_bc) {
        #pragma unroll 1
        for (int i = tid; i < 2 * kT * 4; i += NT) {
          const int a = i / (kT * 4), r = i % (kT * 4), t = r / 4, q = r % 4;
          const int64_t tt = t0 + t;
          const bool ok = tt < L;
          const float* base = a == 0 ? B : C;
          const uint32_t stride = a == 0 ? p.B_stride : p.C_stride;
          float* dst = a == 0 ? &b.B[t][4 * q] : &b.C[t][4 * q];
          cp_async16(dst, ok ? base + size_t(tt) * stride + 4 * q : base, ok);
        }
      } else {
        #pragma unroll 1
        for (int i = tid; i < 2 * kT * kN; i += NT) {
          const int a = i / (kT * kN), r = i % (kT * kN), t = r / kN, q = r % kN;
          const int64_t tt = t0 + t;
          const bool ok = tt < L;
          const float* base = a == 0 ? B : C;
          const uint32_t stride = a == 0 ? p.B_stride : p.C_stride;
          float* dst = a == 0 ? &b.B[t][q] : &b.C[t][q];
          cp_async4(dst, ok ? base + size_t(tt) * stride + q : base, ok);
        }
      }
    }
    cp_async_commit();  // always, so the group count stays in step
  };

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) issue(s);

  for (uint32_t s = 0; s < nst; ++s) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // stage s landed for everyone; stage s-1 fully consumed
    issue(s + kStages - 1);
    const ScanStage<CB>& b = sm.st[s % kStages];
    const int64_t t0 = int64_t(s) * kT;

    // (1) Δ and Δ·u once per (token, channel); padding tokens leave the state alone.
    #pragma unroll 1
    for (int i = tid; i < kT * CB; i += NT) {
      const int t = i / CB, q = i % CB;
      const bool ok = t0 + t < L;
      const float d = ok ? softplus_fast(b.delta[t][q] + sm.bias[q]) : 0.f;
      sm.dt[q][t] = d;
      sm.du[q][t] = d * b.u[t][q];
    }
    __syncthreads();

    if constexpr (S == 1) {
    // (2) The scan: G tokens at a time, then a reduce-scatter of y over the channel's lanes.
#pragma unroll 1
    for (int tg = 0; tg < kT; tg += G) {
      float yv[G];
#pragma unroll
      for (int k4 = 0; k4 < G; k4 += 4) {
        const float4 d4 = *reinterpret_cast<const float4*>(&sm.dt[cl][tg + k4]);
        const float4 u4 = *reinterpret_cast<const float4*>(&sm.du[cl][tg + k4]);
        const float dd[4] = {d4.x, d4.y, d4.z, d4.w}, uu[4] = {u4.x, u4.y, u4.z, u4.w};
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          const int t = tg + k4 + k;
          float Bv[SPL], Cv[SPL];
          if constexpr (SPL == 4) {
            const float4 b4 = *reinterpret_cast<const float4*>(&b.B[t][g * 4]);
            const float4 c4 = *reinterpret_cast<const float4*>(&b.C[t][g * 4]);
            Bv[0] = b4.x, Bv[1] = b4.y, Bv[2] = b4.z, Bv[3] = b4.w;
            Cv[0] = c4.x, Cv[1] = c4.y, Cv[2] = c4.z, Cv[3] = c4.w;
          } else if constexpr (SPL == 2) {
            const float2 b2 = *reinterpret_cast<const float2*>(&b.B[t][g * 2]);
            const float2 c2 = *reinterpret_cast<const float2*>(&b.C[t][g * 2]);
            Bv[0] = b2.x, Bv[1] = b2.y, Cv[0] = c2.x, Cv[1] = c2.y;
          } else {
            Bv[0] = b.B[t][g], Cv[0] = b.C[t][g];
          }
          float acc = 0.f;
#pragma unroll
          for (int j = 0; j < SPL; ++j) {
            const float a = ex2_approx(dd[k] * A2[j]);
            h[j] = fmaf(a, h[j], Bv[j] * uu[k]);
            acc = fmaf(h[j], Cv[j], acc);
          }
          yv[k4 + k] = acc;
        }
      }
      // Reduce-scatter: lane g of the channel ends with token tg + g.
      reduce_scatter<G / 2>(yv, g);
      sm.y[tg + g][cl] = yv[0];
    }
    } else {
      // (2') Segment sg of the stage: decays and inputs into registers, the segment from a zero
      // state, (product, end) to shared memory; then the true start from the carried state
      // folded with the earlier segments, and a rerun out of registers forming y.
      float av[R][SPL], xv[R][SPL], P[SPL], hl[SPL];
#pragma unroll
      for (int j = 0; j < SPL; ++j) P[j] = 1.f, hl[j] = 0.f;
#pragma unroll
      for (int k4 = 0; k4 < R; k4 += 4) {
        const int tb = sg * R + k4;
        const float4 d4 = *reinterpret_cast<const float4*>(&sm.dt[cl][tb]);
        const float4 u4 = *reinterpret_cast<const float4*>(&sm.du[cl][tb]);
        const float dd[4] = {d4.x, d4.y, d4.z, d4.w}, uu[4] = {u4.x, u4.y, u4.z, u4.w};
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          float Bv[SPL];
          if constexpr (SPL == 2) {
            const float2 b2 = *reinterpret_cast<const float2*>(&b.B[tb + k][g * 2]);
            Bv[0] = b2.x, Bv[1] = b2.y;
          } else {
            Bv[0] = b.B[tb + k][g];
          }
#pragma unroll
          for (int j = 0; j < SPL; ++j) {
            av[k4 + k][j] = ex2_approx(dd[k] * A2[j]);
            xv[k4 + k][j] = Bv[j] * uu[k];
            hl[j] = fmaf(av[k4 + k][j], hl[j], xv[k4 + k][j]);
            P[j] *= av[k4 + k][j];
          }
        }
      }
#pragma unroll
      for (int j = 0; j < SPL; ++j) sm.seg[sg][j][slot] = make_float2(P[j], hl[j]);
      __syncthreads();
      float hs[SPL];
#pragma unroll
      for (int j = 0; j < SPL; ++j) hs[j] = h[j];
#pragma unroll
      for (int s2 = 0; s2 < S; ++s2) {
#pragma unroll
        for (int j = 0; j < SPL; ++j) {
          const float2 q = sm.seg[s2][j][slot];
          if (s2 < sg) hs[j] = fmaf(q.x, hs[j], q.y);
          h[j] = fmaf(q.x, h[j], q.y);  // the carry into the next stage
        }
      }
#pragma unroll
      for (int tg = 0; tg < R; tg += G) {
        float yv[G];
#pragma unroll
        for (int k = 0; k < G; ++k) {
          const int t = sg * R + tg + k;
          float Cv[SPL];
          if constexpr (SPL == 2) {
            const float2 c2 = *reinterpret_cast<const float2*>(&b.C[t][g * 2]);
            Cv[0] = c2.x, Cv[1] = c2.y;
          } else {
            Cv[0] = b.C[t][g];
          }
          float acc = 0.f;
#pragma unroll
          for (int j = 0; j < SPL; ++j) {
            hs[j] = fmaf(av[tg + k][j], hs[j], xv[tg + k][j]);
            acc = fmaf(hs[j], Cv[j], acc);
          }
          yv[k] = acc;
        }
        reduce_scatter<G / 2>(yv, g);
        sm.y[sg * R + tg + g][cl] = yv[0];
      }
    }
    __syncthreads();

    // (3) Gate and store whole rows.
    if (vec_y) {
      constexpr int V = CB / 4;
      #pragma unroll 1
      for (int i = tid; i < kT * V; i += NT) {
        const int t = i / V, q = i % V;
        const int64_t tt = t0 + t;
        const uint32_t ch = c0 + 4 * q;
        if (tt >= L || ch >= p.channels) continue;
        const float4 yv = *reinterpret_cast<const float4*>(&sm.y[t][4 * q]);
        const float4 uv = *reinterpret_cast<const float4*>(&b.u[t][4 * q]);
        float o[4] = {yv.x, yv.y, yv.z, yv.w};
        const float uu[4] = {uv.x, uv.y, uv.z, uv.w};
#pragma unroll
        for (int k = 0; k < 4; ++k) o[k] = fmaf(sm.D[4 * q + k], uu[k], o[k]);
        if (has_z) {
          const float4 zv = *reinterpret_cast<const float4*>(&b.z[t][4 * q]);
          o[0] *= silu_fast(zv.x), o[1] *= silu_fast(zv.y), o[2] *= silu_fast(zv.z),
              o[3] *= silu_fast(zv.w);
        }
        *reinterpret_cast<float4*>(y + size_t(tt) * p.y_stride + ch) =
            make_float4(o[0], o[1], o[2], o[3]);
      }
    } else {
      #pragma unroll 1
      for (int i = tid; i < kT * CB; i += NT) {
        const int t = i / CB, q = i % CB;
        const int64_t tt = t0 + t;
        const uint32_t ch = c0 + q;
        if (tt >= L || ch >= p.channels) continue;
        float o = fmaf(sm.D[q], b.u[t][q], sm.y[t][q]);
        if (has_z) o *= silu_fast(b.z[t][q]);
        y[size_t(tt) * p.y_stride + ch] = o;
      }
    }
  }
  cp_async_wait<0>();
  if (cv) {
#pragma unroll
    for (int j = 0; j < SPL; ++j) state[size_t(c) * kN + g * SPL + j] = h[j];
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

template <int SPL, int W, int S>
cudaError_t launch_v2(const SelectiveScanParams& p, const float* u, const float* delta,
                      const void* A_log, const float* B, const float* C, const void* D,
                      const float* z, const void* dt_bias, float* ssm_state, float* y,
                      cudaStream_t s) {
  using SM = ScanSmem<SPL, W, S>;
  const size_t smem = sizeof(SM);
  static const cudaError_t attr = smem > 48 * 1024
      ? cudaFuncSetAttribute(selective_scan_v2_kernel<SPL, W, S>,
                             cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem))
      : cudaSuccess;
  if (attr != cudaSuccess) return attr;
  const bool ch4 = p.channels % 4 == 0;
  const bool vec_ch = ch4 && aligned16(u, p.u_stride) && aligned16(delta, p.delta_stride) &&
                      (!p.has_z || aligned16(z, p.z_stride));
  const bool vec_bc = aligned16(B, p.B_stride) && aligned16(C, p.C_stride);
  const bool vec_y = ch4 && aligned16(y, p.y_stride);
  const uint32_t flags = (vec_ch ? 1u : 0u) | (vec_bc ? 2u : 0u) | (vec_y ? 4u : 0u);
  selective_scan_v2_kernel<SPL, W, S><<<ceil_div(p.channels, SM::CB), 32 * W * S, smem, s>>>(
      p, u, delta, A_log, B, C, D, z, dt_bias, ssm_state, y, flags);
  return cudaGetLastError();
}

// The v6 configuration that runs by default for this width, 0 for none (v2 runs). Measured on
// an H100 80GB HBM3 (cuda/README.md, L = 4K / 16K): d_inner 1536 v6g 106.6 / 406.8 µs against
// v2's 166.6 / 649.9; d_inner 5120 v6j 292.6 / 1141.5 against 336.2 / 1323.1. Other widths are
// not measured; below 1536 (130m: 768) v6 would have under 6 warps per SM, so v2 stays there.
char v6_default(uint32_t channels) { return channels < 1536 ? 0 : channels < 4096 ? 'g' : 'j'; }

// The v7 configuration that runs by default for this width: scan_v7_default
// (selective_scan_v7.cu, with its measurements), from 1536 channels on; 0 below (v2 runs there:
// too few warps per SM for one channel per warp).
char v7_default(uint32_t channels) { return channels < 1536 ? 0 : scan_v7_default(channels); }

// DM_CUDA_SCAN picks a kernel for measurements: v1 (the chunked block scan), v2 (v2 at its
// per-width shape), s<SPL>w<W>[x<S>] (v2 with SPL states per lane, W warps per block, S
// segments), v3<letter> (a look-back scan, selective_scan_lookback.cu), v6[<letter>],
// v7[<letter>]; anything else or unset: the default. Encoded: 1, 2, SPL·100 + W·10 + S,
// 1000 + letter, 2000 [+ letter], 3000 [+ letter].
int scan_variant() {
  static const int v = [] {
    const char* e = std::getenv("DM_CUDA_SCAN");
    const std::string s = e ? e : "";
    if (s == "v1") return 1;
    if (s == "v2") return 2;  // v2's per-width default even where v6 is the default
    if (s == "v6") return 2000;
    if (s.size() == 3 && s[0] == 'v' && s[1] == '6' && s[2] >= 'a' && s[2] <= 'k')
      return 2000 + s[2];
    if (s == "v7") return 3000;
    if (s.size() == 3 && s[0] == 'v' && s[1] == '7' && s[2] >= 'a' && s[2] <= 'z')
      return 3000 + s[2];
    if (s.size() == 3 && s[0] == 'v' && s[1] == '3' && lookback_known(s[2])) return 1000 + s[2];
    // s<SPL>w<W>x<S>: S time segments per stage (two-phase); x1 when omitted.
    int spl = 0, w = 0, sg = 1;
    if (std::sscanf(s.c_str(), "s%dw%dx%d", &spl, &w, &sg) >= 2) return spl * 100 + w * 10 + sg;
    return 0;
  }();
  return v;
}

// The v3 configuration for these params, or 0 where v3 does not apply (d_state ≠ 16, channels
// not a multiple of the block's, unaligned rows) or another kernel was asked for.
char v3_choice(const SelectiveScanParams& p, const float* u, const float* delta, const float* B,
               const float* C, const float* z, const float* y) {
  const int v = scan_variant();
  if (p.d_state != kN) return 0;
  if (v < 1000 || v >= 2000) return 0;  // never the default: measured slower (cuda/README.md)
  const char name = char(v - 1000);
  const int cb = lookback_channels(name);
  if (cb == 0 || p.channels % cb != 0) return 0;
  const bool ok = aligned16(u, p.u_stride) && aligned16(delta, p.delta_stride) &&
                  aligned16(B, p.B_stride) && aligned16(C, p.C_stride) &&
                  aligned16(y, p.y_stride) && (!p.has_z || aligned16(z, p.z_stride));
  return ok ? name : 0;
}

constexpr size_t kV3ScratchCap = size_t(128) << 20;

}  // namespace

size_t selective_scan_scratch_bytes(const SelectiveScanParams& p, const float* u,
                                    const float* delta, const float* B, const float* C,
                                    const float* z, const float* y) {
  if (p.L == 0 || p.channels == 0) return 0;
  const char name = v3_choice(p, u, delta, B, C, z, y);
  if (!name) return 0;
  const int T = lookback_tokens(name);
  const size_t ngroups = p.channels / lookback_channels(name);
  const size_t entries = size_t((p.L + T - 1) / T) * ngroups;
  const size_t want = lookback_scratch_bytes(name, entries);
  if (want <= kV3ScratchCap) return want;
  // Pieces: whole chunk rows that fit under the cap (at least one row).
  size_t rows = std::max<size_t>(1, kV3ScratchCap / lookback_scratch_bytes(name, ngroups));
  while (rows > 1 && lookback_scratch_bytes(name, rows * ngroups) > kV3ScratchCap) --rows;
  return lookback_scratch_bytes(name, rows * ngroups);
}

cudaError_t launch_selective_scan(const SelectiveScanParams& p, const float* u,
                                  const float* delta, const void* A_log, const float* B,
                                  const float* C, const void* D, const float* z,
                                  const void* dt_bias, float* ssm_state, float* y,
                                  void* scratch, size_t scratch_size, cudaStream_t s) {
  if (p.L == 0 || p.channels == 0) return cudaSuccess;
  if (p.d_state == kN) {
    int v = scan_variant();
    if (v == 1) {
      const unsigned blocks = ceil_div(p.channels, kCPW);
      if (aligned16(B, p.B_stride) && aligned16(C, p.C_stride))
        selective_scan_n16_kernel<true><<<blocks, kThreads, 0, s>>>(p, u, delta, A_log, B, C, D,
                                                                    z, dt_bias, ssm_state, y);
      else
        selective_scan_n16_kernel<false><<<blocks, kThreads, 0, s>>>(p, u, delta, A_log, B, C, D,
                                                                     z, dt_bias, ssm_state, y);
      return cudaGetLastError();
    }
    // v7 (selective_scan_v7.cu): DM_CUDA_SCAN=v7[<letter>], or by default where v7_default.
    // Where it cannot run (no tensor-map encoder, unknown letter) v6 runs instead.
    if ((v >= 3000 || (v == 0 && v7_default(p.channels))) &&
        scan_v7_applies(p, u, delta, B, C, z, y)) {
      const char cfg = v > 3000 ? char(v - 3000) : v == 3000 ? 0 : v7_default(p.channels);
      const cudaError_t e =
          launch_scan_v7(cfg, p, u, delta, A_log, B, C, D, z, dt_bias, ssm_state, y, s);
      if (e != cudaErrorNotSupported && e != cudaErrorInvalidValue) return e;
    }
    // v6 (selective_scan_v6.cu): DM_CUDA_SCAN=v6[<letter>], or by default where v6_default
    // (also for DM_CUDA_SCAN=v7… where v7 did not run).
    if ((v >= 2000 || (v == 0 && v6_default(p.channels))) &&
        scan_v6_applies(p, u, delta, B, C, z, y)) {
      const char cfg = v > 2000 && v < 3000 ? char(v - 2000)
                       : v >= 2000           ? 0
                                             : v6_default(p.channels);
      return launch_scan_v6(cfg, p, u, delta, A_log, B, C, D, z, dt_bias, ssm_state, y, s);
    }
    // The look-back scans (selective_scan_lookback.cu), opt-in. They need room for at least one
    // row of chunk entries (else, e.g. while a graph is being recorded with too small a scratch,
    // v2 runs).
    const char name = v3_choice(p, u, delta, B, C, z, y);
    if (name && scratch &&
        scratch_size >= lookback_scratch_bytes(name, p.channels / lookback_channels(name)))
      return launch_scan_lookback(name, p, u, delta, A_log, B, C, D, z, dt_bias, ssm_state, y,
                                  scratch, scratch_size, s);
    // Measured on an H100 (cuda/README.md): two segments per stage win at d_inner 1536 (more
    // warps: 20% vs 15% of the floor), one segment at 5120 (34% vs 29%).
    // Unset or unknown DM_CUDA_SCAN (or v3 not applicable): the v2 default.
    if (v != 121 && v != 141 && v != 221 && v != 122 && v != 142 && v != 224)
      v = p.channels >= 4096 ? 141 : 122;
#define DM_SCAN_V2(spl, w, sg)                                                                 \
  case spl * 100 + w * 10 + sg:                                                                \
    return launch_v2<spl, w, sg>(p, u, delta, A_log, B, C, D, z, dt_bias, ssm_state, y, s);
    switch (v) {
      DM_SCAN_V2(1, 2, 1)
      DM_SCAN_V2(1, 4, 1)
      DM_SCAN_V2(2, 2, 1)
      DM_SCAN_V2(1, 2, 2)
      DM_SCAN_V2(1, 4, 2)
      DM_SCAN_V2(2, 2, 4)
      default: break;  // unreachable
    }
#undef DM_SCAN_V2
  }
  selective_scan_generic_kernel<<<ceil_div(p.channels, kGenericBlock), kGenericBlock, 0, s>>>(
      p, u, delta, A_log, B, C, D, z, dt_bias, ssm_state, y);
  return cudaGetLastError();
}

}  // namespace dm::cuda
