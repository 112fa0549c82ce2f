// The single-pass look-back prompt scans, opt-in through DM_CUDA_SCAN=v3<letter> (measured
// slower than v6 and v2 except v3p at d_inner 1536: cuda/README.md). Split from
// selective_scan.cu, whose launch_selective_scan calls launch_scan_lookback.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common.cuh"
#include "selective_scan_common.cuh"
#include "selective_scan_lookback.cuh"

namespace dm::cuda {
namespace {

using namespace scan;

// ---------------------------------------------------------------------------------------------
// v3: single pass, parallel over (channel group, time chunk) blocks, the state carried between
// chunks by a decoupled look-back (CUB style). A block takes a ticket (atomic, so the chunk
// before it in time belongs to a block that started earlier: no deadlock) = (chunk k, group g),
// stages its chunk of T = S·R tokens × CB = 8·WC channels (cp.async, 16-byte pieces), forms
// Δ = softplus(delta + bias) and Δ·u once per (token, channel), then:
//   pass 1: warp (wc, sg) owns 8 channels × segment sg of R tokens; lane = (channel, 4 states);
//           decays exp2(Δ·A·log2e) and inputs B·Δ·u kept in registers, the segment run from a
//           zero state: (decay product P, end state H) to shared memory;
//   compose: one thread per (channel, state) scans the S segments: each segment's exclusive
//           (P, H) and the chunk's aggregate; published (flag AGG) unless the previous chunk's
//           inclusive state is already there; then the look-back: walk back over earlier chunks
//           folding aggregates until an inclusive state (chunk 0: the state input) is found;
//           the chunk's inclusive end state published (flag INCL);
//   pass 2: each lane reruns its segment from its true start out of registers (no second exp),
//           y = C·h reduce-scattered over the channel's 4 lanes; then D·u, ·SiLU(z), 16-byte
//           stores of whole rows.
// Inputs are read once; the scratch (flags, per-chunk aggregates and inclusive states) is
// CB·16·12 bytes per chunk. The launcher cuts very long prompts into pieces (state carried
// through ssm_state) so the scratch stays bounded.
namespace v3 {
constexpr int kCPW = 8;  // channels per warp (4 lanes of 4 states each)
constexpr uint32_t kAgg = 1, kIncl = 2;

template <int WC, int S, int R>
struct Smem {
  static constexpr int CB = WC * kCPW, T = S * R, NP = CB * kN;
  float delta[T][CB];  // raw delta, then y (C·h before the gate)
  float u[T][CB];
  float z[T][CB];
  float B[T][kN];
  float C[T][kN];
  float2 dd[T][CB];  // (Δ, Δ·u)
  float2 seg[S][NP];  // per segment (P, H) from 0, then the exclusive (P, H) within the chunk
  float h0[NP];       // the state entering the chunk
  uint32_t ticket, pflag;
};

__device__ __forceinline__ uint32_t ld_acquire(const uint32_t* p) {
  uint32_t v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void st_release(uint32_t* p, uint32_t v) {
  asm volatile("st.release.gpu.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

__device__ __forceinline__ uint64_t ld_relaxed64(const uint64_t* p) {
  uint64_t v;
  asm volatile("ld.relaxed.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void st_relaxed64(uint64_t* p, uint64_t v) {
  asm volatile("st.relaxed.gpu.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}
// The tagged variants' per-launch reset: ticket counter 0, epoch + 1 (never 0: zeroed scratch
// matches no epoch). Stream-ordered before the scan, so graph replays get fresh epochs too.
__global__ void scan_epoch_kernel(uint32_t* hdr) {
  hdr[0] = 0;
  const uint32_t ep = hdr[1] + 1;
  hdr[1] = ep ? ep : 1;
}

struct Scratch {
  uint32_t* hdr;  // [0]: ticket counter; [1 + e]: flag of entry e
  float *agg_p, *agg_h, *incl;  // [entry][NP]
};

template <int WC, int S, int R, int MINB, bool KEEPX>
__global__ void __launch_bounds__(32 * WC * S, MINB) scan_v3_kernel(
    SelectiveScanParams p, const float* __restrict__ u, const float* __restrict__ delta,
    const void* A_log, const float* __restrict__ B, const float* __restrict__ C, const void* Dp,
    const float* __restrict__ z, const void* dt_bias, float* state, float* __restrict__ y,
    Scratch sc, uint32_t ngroups) {
  using SM = Smem<WC, S, R>;
  constexpr int CB = SM::CB, T = SM::T, NP = SM::NP, NT = 32 * WC * S, V = CB / 4;
  static_assert(NT % CB == 0 && NT % V == 0 && NP <= NT, "thread mapping");
  static_assert(R % 4 == 0, "reduce groups of 4 tokens");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  SM& sm = *reinterpret_cast<SM*>(smem_raw);

  const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
  const int wc = w % WC, sg = w / WC;
  const int g = lane & 3, cl = wc * kCPW + (lane >> 2);
  if (tid == 0) sm.ticket = atomicAdd(sc.hdr, 1u);
  __syncthreads();
  const uint32_t e = sm.ticket, k = e / ngroups, grp = e % ngroups;
  const uint32_t c0 = grp * CB;
  const int64_t L = p.L, t0 = int64_t(k) * T;
  const bool has_z = p.has_z;

  // Stage the chunk.
  {
    const int narr = has_z ? 3 : 2;
#pragma unroll 1
    for (int i = tid; i < narr * T * V; i += NT) {
      const int a = i / (T * V), r = i % (T * V), t = r / V, q = r % V;
      const int64_t tt = t0 + t;
      const bool ok = tt < L;
      const float* base = a == 0 ? delta : a == 1 ? u : z;
      const uint32_t stride = a == 0 ? p.delta_stride : a == 1 ? p.u_stride : p.z_stride;
      float* dst = a == 0 ? &sm.delta[t][4 * q] : a == 1 ? &sm.u[t][4 * q] : &sm.z[t][4 * q];
      cp_async16(dst, ok ? base + size_t(tt) * stride + c0 + 4 * q : base, ok);
    }
#pragma unroll 1
    for (int i = tid; i < 2 * T * 4; i += NT) {
      const int a = i / (T * 4), r = i % (T * 4), t = r / 4, q = r % 4;
      const int64_t tt = t0 + t;
      const bool ok = tt < L;
      const float* base = a == 0 ? B : C;
      const uint32_t stride = a == 0 ? p.B_stride : p.C_stride;
      float* dst = a == 0 ? &sm.B[t][4 * q] : &sm.C[t][4 * q];
      cp_async16(dst, ok ? base + size_t(tt) * stride + 4 * q : base, ok);
    }
    cp_async_commit();
  }
  float A2[4];
#pragma unroll
  for (int j = 0; j < 4; ++j)
    A2[j] = -expf(load_f(A_log, p.A_log_dtype, size_t(c0 + cl) * kN + g * 4 + j)) * kLog2e;
  const int qp = tid % CB;  // the prep loop's channel (fixed per thread)
  const float bias = load_f(dt_bias, p.dt_bias_dtype, c0 + qp);
  const int qv = tid % V;  // the store loop's 4-channel piece (fixed per thread)
  float Dv[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) Dv[j] = load_f(Dp, p.D_dtype, c0 + 4 * qv + j);
  cp_async_wait<0>();
  __syncthreads();

  // Δ and Δ·u once per (token, channel); padding tokens leave the state alone.
#pragma unroll 1
  for (int i = tid; i < T * CB; i += NT) {
    const int t = i / CB;
    const float d = t0 + t < L ? softplus_fast(sm.delta[t][qp] + bias) : 0.f;
    sm.dd[t][qp] = make_float2(d, d * sm.u[t][qp]);
  }
  __syncthreads();

  // Pass 1: the segment from a zero state, decays and inputs kept in registers.
  float a[R][4], x[KEEPX ? R : 1][4], P[4], H[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) P[j] = 1.f, H[j] = 0.f;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int t = sg * R + r;
    const float2 q = sm.dd[t][cl];
    const float4 b4 = *reinterpret_cast<const float4*>(&sm.B[t][g * 4]);
    const float bv[4] = {b4.x, b4.y, b4.z, b4.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      a[r][j] = ex2_approx(q.x * A2[j]);
      const float xv = bv[j] * q.y;
      if constexpr (KEEPX) x[r][j] = xv;
      H[j] = fmaf(a[r][j], H[j], xv);
      P[j] *= a[r][j];
    }
  }
  const int pair = cl * kN + g * 4;
#pragma unroll
  for (int j = 0; j < 4; ++j) sm.seg[sg][pair + j] = make_float2(P[j], H[j]);
  __syncthreads();
  if (tid == 0) sm.pflag = k > 0 ? ld_acquire(sc.hdr + 1 + (e - ngroups)) : kIncl;

  // Compose: thread tid < NP owns (channel tid / 16, state tid % 16).
  float Px = 1.f, Hx = 0.f;
  if (tid < NP) {
#pragma unroll
    for (int s = 0; s < S; ++s) {
      const float2 v = sm.seg[s][tid];
      sm.seg[s][tid] = make_float2(Px, Hx);
      Hx = fmaf(v.x, Hx, v.y);
      Px *= v.x;
    }
  }
  __syncthreads();
  const bool publish_agg = k > 0 && sm.pflag != kIncl;
  if (publish_agg) {
    if (tid < NP) {
      __stcg(sc.agg_p + size_t(e) * NP + tid, Px);
      __stcg(sc.agg_h + size_t(e) * NP + tid, Hx);
      __threadfence();
    }
    __syncthreads();
    if (tid == 0) st_release(sc.hdr + 1 + e, kAgg);
  }
  if (tid < NP) {
    float h0;
    if (k == 0) {
      h0 = state[size_t(c0) * kN + tid];
    } else {
      float accP = 1.f, accH = 0.f;
      uint32_t j = e - ngroups;
      for (;;) {
        uint32_t f;
        while ((f = ld_acquire(sc.hdr + 1 + j)) == 0) __nanosleep(20);
        if (f == kIncl) {
          h0 = fmaf(accP, __ldcg(sc.incl + size_t(j) * NP + tid), accH);
          break;
        }
        accH = fmaf(accP, __ldcg(sc.agg_h + size_t(j) * NP + tid), accH);
        accP *= __ldcg(sc.agg_p + size_t(j) * NP + tid);
        j -= ngroups;  // chunk 0 always publishes INCL, so this stops
      }
    }
    const float hin = fmaf(Px, h0, Hx);
    __stcg(sc.incl + size_t(e) * NP + tid, hin);
    __threadfence();
    if (t0 + T >= L) state[size_t(c0) * kN + tid] = hin;  // the last chunk
    sm.h0[tid] = h0;
  }
  __syncthreads();
  if (tid == 0) st_release(sc.hdr + 1 + e, kIncl);

  // Pass 2: rerun from the true start; y = C·h reduce-scattered over the channel's 4 lanes.
  float hs[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float2 v = sm.seg[sg][pair + j];
    hs[j] = fmaf(v.x, sm.h0[pair + j], v.y);
  }
#pragma unroll
  for (int r4 = 0; r4 < R; r4 += 4) {
    float yv[4];
#pragma unroll
    for (int rr = 0; rr < 4; ++rr) {
      const int r = r4 + rr, t = sg * R + r;
      const float4 c4 = *reinterpret_cast<const float4*>(&sm.C[t][g * 4]);
      const float cv[4] = {c4.x, c4.y, c4.z, c4.w};
      float xr[4];
      if constexpr (KEEPX) {
#pragma unroll
        for (int j = 0; j < 4; ++j) xr[j] = x[r][j];
      } else {
        const float du = sm.dd[t][cl].y;
        const float4 b4 = *reinterpret_cast<const float4*>(&sm.B[t][g * 4]);
        xr[0] = b4.x * du, xr[1] = b4.y * du, xr[2] = b4.z * du, xr[3] = b4.w * du;
      }
      float acc = 0.f;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        hs[j] = fmaf(a[r][j], hs[j], xr[j]);
        acc = fmaf(hs[j], cv[j], acc);
      }
      yv[rr] = acc;
    }
    reduce_scatter<2>(yv, g);
    sm.delta[sg * R + r4 + g][cl] = yv[0];
  }
  __syncthreads();

  // Gate and store whole rows.
#pragma unroll 1
  for (int i = tid; i < T * V; i += NT) {
    const int t = i / V;
    const int64_t tt = t0 + t;
    if (tt >= L) break;  // rows in order: the rest is padding too
    const float4 yv = *reinterpret_cast<const float4*>(&sm.delta[t][4 * qv]);
    const float4 uv = *reinterpret_cast<const float4*>(&sm.u[t][4 * qv]);
    float o[4] = {fmaf(Dv[0], uv.x, yv.x), fmaf(Dv[1], uv.y, yv.y), fmaf(Dv[2], uv.z, yv.z),
                  fmaf(Dv[3], uv.w, yv.w)};
    if (has_z) {
      const float4 zv = *reinterpret_cast<const float4*>(&sm.z[t][4 * qv]);
      o[0] *= silu_fast(zv.x), o[1] *= silu_fast(zv.y), o[2] *= silu_fast(zv.z),
          o[3] *= silu_fast(zv.w);
    }
    *reinterpret_cast<float4*>(y + size_t(tt) * p.y_stride + c0 + 4 * qv) =
        make_float4(o[0], o[1], o[2], o[3]);
  }
}

// v4 (DM_CUDA_SCAN=v3p, v3q): v3's tile work in persistent blocks: a block takes tickets one
// ahead and stages the next tile (cp.async, double buffer) while it works on this one, so the
// load latency and the ticket's round trip leave the critical path. Deadlock-free without
// co-residency: a block waits only on smaller tickets, and it finishes its tickets in order.
template <int WC, int S, int R>
struct Smem4 {
  static constexpr int CB = WC * kCPW, T = S * R, NP = CB * kN;
  struct Stage {
    float delta[T][CB];  // raw delta, then y
    float u[T][CB];
    float z[T][CB];
    float B[T][kN];
    float C[T][kN];
  } st[2];
  float2 dd[T][CB];
  float2 seg[S][NP];
  float h0[NP];
  uint32_t tk[2], pflag;
};

template <int WC, int S, int R, int MINB, bool KEEPX, bool TAG>
__global__ void __launch_bounds__(32 * WC * S, MINB) scan_v4_kernel(
    SelectiveScanParams p, const float* __restrict__ u, const float* __restrict__ delta,
    const void* A_log, const float* __restrict__ B, const float* __restrict__ C, const void* Dp,
    const float* __restrict__ z, const void* dt_bias, float* state, float* __restrict__ y,
    Scratch sc, uint32_t ngroups, uint32_t entries) {
  using SM = Smem4<WC, S, R>;
  constexpr int CB = SM::CB, T = SM::T, NP = SM::NP, NT = 32 * WC * S, V = CB / 4;
  static_assert(NT % CB == 0 && NT % V == 0 && NP <= NT, "thread mapping");
  static_assert(R % 4 == 0, "reduce groups of 4 tokens");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  SM& sm = *reinterpret_cast<SM*>(smem_raw);

  const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
  const int wc = w % WC, sg = w / WC;
  const int g = lane & 3, cl = wc * kCPW + (lane >> 2);
  const int64_t L = p.L;
  const bool has_z = p.has_z;
  const int qp = tid % CB, qv = tid % V;
  const int pair = cl * kN + g * 4;

  auto stage = [&](uint32_t e, int buf) {
    if (e < entries) {
      typename SM::Stage& b = sm.st[buf];
      const uint32_t k = e / ngroups, c0 = (e % ngroups) * CB;
      const int64_t t0 = int64_t(k) * T;
      const int narr = has_z ? 3 : 2;
#pragma unroll 1
      for (int i = tid; i < narr * T * V; i += NT) {
        const int a = i / (T * V), r = i % (T * V), t = r / V, q = r % V;
        const int64_t tt = t0 + t;
        const bool ok = tt < L;
        const float* base = a == 0 ? delta : a == 1 ? u : z;
        const uint32_t stride = a == 0 ? p.delta_stride : a == 1 ? p.u_stride : p.z_stride;
        float* dst = a == 0 ? &b.delta[t][4 * q] : a == 1 ? &b.u[t][4 * q] : &b.z[t][4 * q];
        cp_async16(dst, ok ? base + size_t(tt) * stride + c0 + 4 * q : base, ok);
      }
#pragma unroll 1
      for (int i = tid; i < 2 * T * 4; i += NT) {
        const int a = i / (T * 4), r = i % (T * 4), t = r / 4, q = r % 4;
        const int64_t tt = t0 + t;
        const bool ok = tt < L;
        const float* base = a == 0 ? B : C;
        const uint32_t stride = a == 0 ? p.B_stride : p.C_stride;
        float* dst = a == 0 ? &b.B[t][4 * q] : &b.C[t][4 * q];
        cp_async16(dst, ok ? base + size_t(tt) * stride + 4 * q : base, ok);
      }
    }
    cp_async_commit();
  };

  if (tid == 0) sm.tk[0] = atomicAdd(sc.hdr, 1u);
  const uint32_t epoch = TAG ? __ldcg(sc.hdr + 1) : 0u;  // set by the launch's epoch kernel
  __syncthreads();
  uint32_t e = sm.tk[0];
  if (e >= entries) return;
  stage(e, 0);
  if (tid == 0) sm.tk[1] = atomicAdd(sc.hdr, 1u);
  for (int it = 0;; ++it) {
    const int buf = it & 1;
    __syncthreads();  // the next ticket is visible; the other buffer fully consumed
    const uint32_t nxt = sm.tk[buf ^ 1];
    stage(nxt, buf ^ 1);
    const uint32_t k = e / ngroups, c0 = (e % ngroups) * CB;
    const int64_t t0 = int64_t(k) * T;
    typename SM::Stage& b = sm.st[buf];
    float A2[4];
#pragma unroll
    for (int j = 0; j < 4; ++j)
      A2[j] = -expf(load_f(A_log, p.A_log_dtype, size_t(c0 + cl) * kN + g * 4 + j)) * kLog2e;
    const float bias = load_f(dt_bias, p.dt_bias_dtype, c0 + qp);
    cp_async_wait<1>();
    __syncthreads();

#pragma unroll 1
    for (int i = tid; i < T * CB; i += NT) {
      const int t = i / CB;
      const float d = t0 + t < L ? softplus_fast(b.delta[t][qp] + bias) : 0.f;
      sm.dd[t][qp] = make_float2(d, d * b.u[t][qp]);
    }
    __syncthreads();

    float a[R][4], x[KEEPX ? R : 1][4], P[4], H[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) P[j] = 1.f, H[j] = 0.f;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int t = sg * R + r;
      const float2 q = sm.dd[t][cl];
      const float4 b4 = *reinterpret_cast<const float4*>(&b.B[t][g * 4]);
      const float bv[4] = {b4.x, b4.y, b4.z, b4.w};
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        a[r][j] = ex2_approx(q.x * A2[j]);
        const float xv = bv[j] * q.y;
        if constexpr (KEEPX) x[r][j] = xv;
        H[j] = fmaf(a[r][j], H[j], xv);
        P[j] *= a[r][j];
      }
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) sm.seg[sg][pair + j] = make_float2(P[j], H[j]);
    __syncthreads();
    if constexpr (TAG) {
    // v5 (BUILT, NEVER RUN ON A GPU YET: test before use). Tagged words (value | epoch << 32),
    // one per (entry, channel, state): each thread publishes and looks back on its own, no
    // flags, fences or barriers; a word with this launch's epoch is valid by itself. The state
    // read by chunk 0 and written by the last chunk are ordered through the data dependency of
    // the chain of relaxed words only (no acquire/release), as on every NVIDIA GPU in practice.
    if (tid == 0) sm.tk[buf] = atomicAdd(sc.hdr, 1u);  // the ticket after next
    if (tid < NP) {
      float Px = 1.f, Hx = 0.f;
#pragma unroll
      for (int s2 = 0; s2 < S; ++s2) {
        const float2 v = sm.seg[s2][tid];
        sm.seg[s2][tid] = make_float2(Px, Hx);
        Hx = fmaf(v.x, Hx, v.y);
        Px *= v.x;
      }
      uint64_t* incl = reinterpret_cast<uint64_t*>(sc.incl);
      uint64_t* aggp = reinterpret_cast<uint64_t*>(sc.agg_p);
      uint64_t* aggh = reinterpret_cast<uint64_t*>(sc.agg_h);
      const uint64_t hi = uint64_t(epoch) << 32;
      float h0;
      if (k == 0) {
        h0 = state[size_t(c0) * kN + tid];
      } else {
        uint32_t j = e - ngroups;
        uint64_t wi = ld_relaxed64(incl + size_t(j) * NP + tid);
        if ((wi >> 32) == epoch) {
          h0 = __uint_as_float(uint32_t(wi));
        } else {
          st_relaxed64(aggp + size_t(e) * NP + tid, hi | __float_as_uint(Px));
          st_relaxed64(aggh + size_t(e) * NP + tid, hi | __float_as_uint(Hx));
          float accP = 1.f, accH = 0.f;
          for (;;) {
            if ((wi >> 32) == epoch) {
              h0 = fmaf(accP, __uint_as_float(uint32_t(wi)), accH);
              break;
            }
            const uint64_t wp = ld_relaxed64(aggp + size_t(j) * NP + tid);
            const uint64_t wh = ld_relaxed64(aggh + size_t(j) * NP + tid);
            if ((wp >> 32) == epoch && (wh >> 32) == epoch) {
              accH = fmaf(accP, __uint_as_float(uint32_t(wh)), accH);
              accP *= __uint_as_float(uint32_t(wp));
              j -= ngroups;  // chunk 0 always publishes its inclusive state
            } else {
              __nanosleep(20);
            }
            wi = ld_relaxed64(incl + size_t(j) * NP + tid);
          }
        }
      }
      const float hin = fmaf(Px, h0, Hx);
      st_relaxed64(incl + size_t(e) * NP + tid, hi | __float_as_uint(hin));
      if (t0 + T >= L) state[size_t(c0) * kN + tid] = hin;
      sm.h0[tid] = h0;
    }
    __syncthreads();
    } else {
    if (tid == 0) {
      sm.pflag = k > 0 ? ld_acquire(sc.hdr + 1 + (e - ngroups)) : kIncl;
      sm.tk[buf] = atomicAdd(sc.hdr, 1u);  // the ticket after next (its slot is free now)
    }
    float Px = 1.f, Hx = 0.f;
    if (tid < NP) {
#pragma unroll
      for (int s2 = 0; s2 < S; ++s2) {
        const float2 v = sm.seg[s2][tid];
        sm.seg[s2][tid] = make_float2(Px, Hx);
        Hx = fmaf(v.x, Hx, v.y);
        Px *= v.x;
      }
    }
    __syncthreads();
    if (k > 0 && sm.pflag != kIncl) {
      if (tid < NP) {
        __stcg(sc.agg_p + size_t(e) * NP + tid, Px);
        __stcg(sc.agg_h + size_t(e) * NP + tid, Hx);
        __threadfence();
      }
      __syncthreads();
      if (tid == 0) st_release(sc.hdr + 1 + e, kAgg);
    }
    if (tid < NP) {
      float h0;
      if (k == 0) {
        h0 = state[size_t(c0) * kN + tid];
      } else {
        float accP = 1.f, accH = 0.f;
        uint32_t j = e - ngroups;
        for (;;) {
          uint32_t f;
          while ((f = ld_acquire(sc.hdr + 1 + j)) == 0) __nanosleep(20);
          if (f == kIncl) {
            h0 = fmaf(accP, __ldcg(sc.incl + size_t(j) * NP + tid), accH);
            break;
          }
          accH = fmaf(accP, __ldcg(sc.agg_h + size_t(j) * NP + tid), accH);
          accP *= __ldcg(sc.agg_p + size_t(j) * NP + tid);
          j -= ngroups;
        }
      }
      const float hin = fmaf(Px, h0, Hx);
      __stcg(sc.incl + size_t(e) * NP + tid, hin);
      __threadfence();
      if (t0 + T >= L) state[size_t(c0) * kN + tid] = hin;
      sm.h0[tid] = h0;
    }
    __syncthreads();
    if (tid == 0) st_release(sc.hdr + 1 + e, kIncl);

    }

    float hs[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float2 v = sm.seg[sg][pair + j];
      hs[j] = fmaf(v.x, sm.h0[pair + j], v.y);
    }
#pragma unroll
    for (int r4 = 0; r4 < R; r4 += 4) {
      float yv[4];
#pragma unroll
      for (int rr = 0; rr < 4; ++rr) {
        const int r = r4 + rr, t = sg * R + r;
        const float4 c4 = *reinterpret_cast<const float4*>(&b.C[t][g * 4]);
        const float cv[4] = {c4.x, c4.y, c4.z, c4.w};
        float xr[4];
        if constexpr (KEEPX) {
#pragma unroll
          for (int j = 0; j < 4; ++j) xr[j] = x[r][j];
        } else {
          const float du = sm.dd[t][cl].y;
          const float4 b4 = *reinterpret_cast<const float4*>(&b.B[t][g * 4]);
          xr[0] = b4.x * du, xr[1] = b4.y * du, xr[2] = b4.z * du, xr[3] = b4.w * du;
        }
        float acc = 0.f;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          hs[j] = fmaf(a[r][j], hs[j], xr[j]);
          acc = fmaf(hs[j], cv[j], acc);
        }
        yv[rr] = acc;
      }
      reduce_scatter<2>(yv, g);
      b.delta[sg * R + r4 + g][cl] = yv[0];
    }
    __syncthreads();

    float Dv[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) Dv[j] = load_f(Dp, p.D_dtype, c0 + 4 * qv + j);
#pragma unroll 1
    for (int i = tid; i < T * V; i += NT) {
      const int t = i / V;
      const int64_t tt = t0 + t;
      if (tt >= L) break;
      const float4 yv = *reinterpret_cast<const float4*>(&b.delta[t][4 * qv]);
      const float4 uv = *reinterpret_cast<const float4*>(&b.u[t][4 * qv]);
      float o[4] = {fmaf(Dv[0], uv.x, yv.x), fmaf(Dv[1], uv.y, yv.y), fmaf(Dv[2], uv.z, yv.z),
                    fmaf(Dv[3], uv.w, yv.w)};
      if (has_z) {
        const float4 zv = *reinterpret_cast<const float4*>(&b.z[t][4 * qv]);
        o[0] *= silu_fast(zv.x), o[1] *= silu_fast(zv.y), o[2] *= silu_fast(zv.z),
            o[3] *= silu_fast(zv.w);
      }
      *reinterpret_cast<float4*>(y + size_t(tt) * p.y_stride + c0 + 4 * qv) =
          make_float4(o[0], o[1], o[2], o[3]);
    }
    e = nxt;
    if (e >= entries) break;
  }
  cp_async_wait<0>();
}

template <int WC, int S, int R>
size_t entry_floats() { return size_t(Smem<WC, S, R>::NP); }

// Scratch for `entries` chunk entries: header (counter + flags, 16-byte padded), then three
// [entries][NP] float arrays.
inline size_t hdr_bytes(size_t entries) { return ((entries + 1) * 4 + 255) / 256 * 256; }
inline size_t scratch_bytes(size_t entries, int np) {  // 8 bytes a value: room for tagged words
  return hdr_bytes(entries) + 3 * entries * size_t(np) * 8;
}

template <int WC, int S, int R, int MINB, bool KEEPX, bool PERSIST = false, bool TAG = false>
cudaError_t launch(const SelectiveScanParams& p0, const float* u, const float* delta,
                   const void* A_log, const float* B, const float* C, const void* D,
                   const float* z, const void* dt_bias, float* ssm_state, float* y,
                   void* scratch, size_t scratch_size, cudaStream_t s) {
  using SM = Smem<WC, S, R>;
  constexpr int CB = SM::CB, T = SM::T, NP = SM::NP;
  const size_t smem = PERSIST ? sizeof(Smem4<WC, S, R>) : sizeof(SM);
  // Only the kernel this configuration uses is instantiated (v4 for PERSIST, else v3).
  auto kern = [] {
    if constexpr (PERSIST) return scan_v4_kernel<WC, S, R, MINB, KEEPX, TAG>;
    else return scan_v3_kernel<WC, S, R, MINB, KEEPX>;
  }();
  static const cudaError_t attr =
      smem > 48 * 1024
          ? cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem))
          : cudaSuccess;
  if (attr != cudaSuccess) return attr;
  // Persistent: as many blocks as fit at once (more would only wait for a slot).
  static const unsigned resident = [&] {
    if (!PERSIST) return 0u;
    int dev = 0, sms = 0, per_sm = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kern, 32 * WC * S, smem);
    return unsigned(std::max(1, sms) * std::max(1, per_sm));
  }();
  const uint32_t ngroups = p0.channels / CB;
  // Tokens per launch: as many chunks as the scratch holds (DM_CUDA_SCAN_PIECE caps it, for
  // tests of the piecewise path).
  size_t piece_chunks = scratch_size / ((3 * size_t(NP) * 8 + 4) * ngroups);
  while (piece_chunks > 0 && scratch_bytes(piece_chunks * ngroups, NP) > scratch_size)
    --piece_chunks;
  if (const char* e = std::getenv("DM_CUDA_SCAN_PIECE")) {
    const size_t cap = std::max<size_t>(1, std::strtoull(e, nullptr, 10) / T);
    piece_chunks = std::min(piece_chunks, cap);
  }
  if (piece_chunks == 0) return cudaErrorInvalidValue;
  const int64_t piece = int64_t(piece_chunks) * T;
  for (int64_t ts = 0; ts < int64_t(p0.L); ts += piece) {
    SelectiveScanParams p = p0;
    p.L = uint32_t(std::min<int64_t>(piece, int64_t(p0.L) - ts));
    const uint32_t nchunks = uint32_t((p.L + T - 1) / T);
    const size_t entries = size_t(nchunks) * ngroups;
    Scratch sc;
    sc.hdr = static_cast<uint32_t*>(scratch);
    sc.agg_p = reinterpret_cast<float*>(static_cast<char*>(scratch) + hdr_bytes(entries));
    sc.agg_h = sc.agg_p + entries * NP;
    sc.incl = sc.agg_h + entries * NP;
    cudaError_t e = cudaSuccess;
    if constexpr (TAG) {
      sc.agg_p = reinterpret_cast<float*>(static_cast<char*>(scratch) + 256);
      sc.agg_h = sc.agg_p + 2 * entries * NP;
      sc.incl = sc.agg_h + 2 * entries * NP;
      scan_epoch_kernel<<<1, 1, 0, s>>>(sc.hdr);
      e = cudaGetLastError();
    } else {
      e = cudaMemsetAsync(scratch, 0, (entries + 1) * 4, s);
    }
    if (e != cudaSuccess) return e;
    if constexpr (PERSIST)
      kern<<<unsigned(std::min<size_t>(entries, resident)), 32 * WC * S, smem, s>>>(
          p, u + size_t(ts) * p.u_stride, delta + size_t(ts) * p.delta_stride, A_log,
          B + size_t(ts) * p.B_stride, C + size_t(ts) * p.C_stride, D,
          p.has_z ? z + size_t(ts) * p.z_stride : z, dt_bias, ssm_state,
          y + size_t(ts) * p.y_stride, sc, ngroups, uint32_t(entries));
    else
      kern<<<unsigned(entries), 32 * WC * S, smem, s>>>(
          p, u + size_t(ts) * p.u_stride, delta + size_t(ts) * p.delta_stride, A_log,
          B + size_t(ts) * p.B_stride, C + size_t(ts) * p.C_stride, D,
          p.has_z ? z + size_t(ts) * p.z_stride : z, dt_bias, ssm_state,
          y + size_t(ts) * p.y_stride, sc, ngroups);
    e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

}  // namespace v3

// Configurations, DM_CUDA_SCAN=v3<name>: WC warps of 8 channels, S segments of R tokens, MINB
// blocks per SM, KEEPX (inputs kept in registers between the passes). Measured on an H100
// (cuda/README.md); f was the best of a..h. p, q, r: persistent (v4); s..v: persistent with
// tagged, fence-free look-back words (v5, never run on a GPU).
struct V3Cfg { char name; int wc, s, r, minb; bool keepx; };
constexpr V3Cfg kV3[] = {{'a', 1, 8, 8, 2, true},   {'b', 1, 8, 8, 3, true},
                         {'c', 1, 4, 8, 4, true},   {'d', 2, 4, 8, 2, true},
                         {'e', 1, 16, 8, 1, true},  {'f', 1, 8, 16, 2, false},
                         {'g', 1, 16, 4, 2, true},  {'h', 1, 8, 4, 4, true},
                         {'p', 1, 8, 16, 2, false}, {'q', 1, 8, 8, 3, false},
                         {'r', 2, 8, 8, 1, false},  {'s', 1, 8, 16, 2, false},
                         {'t', 1, 8, 8, 3, false},  {'u', 1, 8, 8, 2, true},
                         {'v', 2, 8, 8, 1, false}};

const V3Cfg* find(char name) {
  for (const V3Cfg& c : kV3)
    if (c.name == name) return &c;
  return nullptr;
}

}  // namespace

bool lookback_known(char name) { return find(name) != nullptr; }
int lookback_channels(char name) { return find(name) ? find(name)->wc * v3::kCPW : 0; }
int lookback_tokens(char name) { return find(name) ? find(name)->s * find(name)->r : 1; }
size_t lookback_scratch_bytes(char name, size_t entries) {
  return v3::scratch_bytes(entries, lookback_channels(name) * kN);
}

cudaError_t launch_scan_lookback(char name, const SelectiveScanParams& p, const float* u,
                                 const float* delta, const void* A_log, const float* B,
                                 const float* C, const void* D, const float* z,
                                 const void* dt_bias, float* ssm_state, float* y, void* scratch,
                                 size_t scratch_bytes, cudaStream_t s) {
#define DM_SCAN_V3(n, wc, sg, r, mb, kx)                                                    \
  case n:                                                                                   \
    return v3::launch<wc, sg, r, mb, kx>(p, u, delta, A_log, B, C, D, z, dt_bias, ssm_state, \
                                         y, scratch, scratch_bytes, s);
#define DM_SCAN_V4(n, wc, sg, r, mb, kx)                                                    \
  case n:                                                                                   \
    return v3::launch<wc, sg, r, mb, kx, true>(p, u, delta, A_log, B, C, D, z, dt_bias,    \
                                               ssm_state, y, scratch, scratch_bytes, s);
#define DM_SCAN_V5(n, wc, sg, r, mb, kx)                                                      \
  case n:                                                                                     \
    return v3::launch<wc, sg, r, mb, kx, true, true>(p, u, delta, A_log, B, C, D, z, dt_bias, \
                                                     ssm_state, y, scratch, scratch_bytes, s);
  // One case per row of kV3 (the template arguments must be constants).
  switch (name) {
    DM_SCAN_V3('a', 1, 8, 8, 2, true)
    DM_SCAN_V3('b', 1, 8, 8, 3, true)
    DM_SCAN_V3('c', 1, 4, 8, 4, true)
    DM_SCAN_V3('d', 2, 4, 8, 2, true)
    DM_SCAN_V3('e', 1, 16, 8, 1, true)
    DM_SCAN_V3('f', 1, 8, 16, 2, false)
    DM_SCAN_V3('g', 1, 16, 4, 2, true)
    DM_SCAN_V3('h', 1, 8, 4, 4, true)
    DM_SCAN_V4('p', 1, 8, 16, 2, false)
    DM_SCAN_V4('q', 1, 8, 8, 3, false)
    DM_SCAN_V4('r', 2, 8, 8, 1, false)
    DM_SCAN_V5('s', 1, 8, 16, 2, false)
    DM_SCAN_V5('t', 1, 8, 8, 3, false)
    DM_SCAN_V5('u', 1, 8, 8, 2, true)
    DM_SCAN_V5('v', 2, 8, 8, 1, false)
    default: break;
  }
#undef DM_SCAN_V3
#undef DM_SCAN_V4
#undef DM_SCAN_V5
  return cudaErrorInvalidValue;
}

}  // namespace dm::cuda
