// v6: the prompt scan (d_state 16), time-parallel inside a warp.
//
// Why: v2 walks time sequentially per lane, so a d_inner 1536 layer has only ~6 warps per SM
// and each 32-token stage is a chain of dependent phases: latency-bound at 20% of the
// bandwidth floor (cuda/README.md). Here every warp owns ONE channel and cuts each chunk of
// T = 8·R tokens into 8 slices of R tokens: lane = 4·slice + group, a lane holds 4 states
// (group g: states 4g .. 4g+3) of R tokens, so a channel's 16 states × T tokens are spread over
// all 32 lanes and a layer has d_inner warps (1536 at 130m … 5120 at 2.8b), not d_inner / 8.
//
// Per chunk and lane:
//   local:  a = exp2(Δ·A·log2e) (one ex2 per element, kept in registers), b = Δ·B·u (kept),
//           the slice run from a zero state: decay product P and end state H;
//   scan:   slice 0 folds the carried state into its H, then an inclusive scan of the affine
//           maps (P, H) over the 8 slices (shuffles by 4, 8, 16 lanes): H becomes each slice's
//           true end state; a slice's start is the previous slice's end, the carry into the
//           next chunk is slice 7's end;
//   rerun:  h = a·h + b from the true start (2 FMAs per element, no second exp), y = C·h
//           reduce-scattered over the 4 group lanes (each lane ends with R/4 tokens).
// The block (CB warps = CB channels, rows of 4·CB bytes) stages delta, u, z, B, C by cp.async
// NS − 2 chunks ahead; one barrier per chunk, and the three block-wide phases are software
// pipelined across it so no warp waits for another mid-chunk: in iteration k the block computes
// Δ = softplus(delta + bias) and Δ·u of chunk k+1 (once per (token, channel), transposed into
// shared memory), scans chunk k, and gates (+D·u, ·SiLU(z)) and stores chunk k−1 as whole rows.
// Inputs are read once from DRAM (B and C once per block, from L2 after the first), y written
// once. Tokens past L have Δ = 0 and zero B: decay 1, input 0, the state is left alone.
#include "selective_scan_common.cuh"
#include "selective_scan_v6.cuh"

namespace dm::cuda {
namespace {

using namespace scan;

template <int CB, int R, int NS>
struct V6Smem {
  static constexpr int T = kSlices * R;  // tokens per chunk
  static constexpr int TP = T + 4;       // transposed rows: 16-byte aligned, banks shifted by 4
  // B, C: one 16-float pad row after each slice's R rows, so the 8 slices' 16-byte reads of a
  // token row start 16 banks apart (conflict-free: 4 wavefronts for 512 bytes).
  static constexpr int BR = T + kSlices;
  static_assert(CB % 4 == 0, "rows are staged in 16-byte pieces");
  static_assert(R % 4 == 0, "a slice is read as float4s and reduce-scattered over 4 lanes");
  struct Stage {
    float delta[T][CB];
    float u[T][CB];
    float z[T][CB];
    float B[BR][kN];
    float C[BR][kN];
  };
  Stage st[NS];
  float dt[2][CB][TP];  // Δ, transposed, double-buffered (written one chunk ahead)
  float du[2][CB][TP];  // Δ·u
  float y[2][CB][TP];   // C·h before the gate, read one chunk later
  float bias[CB];
  alignas(16) float D[CB];
};

template <int CB, int R, int NS, int MINB, bool LEAN>
__global__ void __launch_bounds__(32 * CB, MINB) scan_v6_kernel(
    SelectiveScanParams p, const float* __restrict__ u, const float* __restrict__ delta,
    const void* A_log, const float* __restrict__ B, const float* __restrict__ C, const void* Dp,
    const float* __restrict__ z, const void* dt_bias, float* state, float* __restrict__ y) {
  using SM = V6Smem<CB, R, NS>;
  using Stage = typename SM::Stage;
  constexpr int T = SM::T, NT = 32 * CB, V = CB / 4, P = NS - 2;
  static_assert(P >= 2, "stage k+1 must be in flight while chunk k is scanned");
  static_assert(!LEAN || (T * V <= NT && T * 4 <= NT), "LEAN: at most one piece per array");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  SM& sm = *reinterpret_cast<SM*>(smem_raw);

  const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
  const int s = lane >> 2, g = lane & 3;  // slice, state group
  const uint32_t c0 = blockIdx.x * CB, c = c0 + w;
  const bool cv = c < p.channels;
  const uint32_t cc = cv ? c : 0;
  const int64_t L = p.L;
  const bool has_z = p.has_z;

  float A2[4], h[4];  // A·log2(e); the state carried from chunk to chunk (same in all slices)
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    A2[j] = -expf(load_f(A_log, p.A_log_dtype, size_t(cc) * kN + g * 4 + j)) * kLog2e;
    h[j] = cv ? state[size_t(c) * kN + g * 4 + j] : 0.f;
  }
  for (int i = tid; i < CB; i += NT) {
    const uint32_t ci = c0 + i < p.channels ? c0 + i : 0;
    sm.bias[i] = load_f(dt_bias, p.dt_bias_dtype, ci);
    sm.D[i] = load_f(Dp, p.D_dtype, ci);
  }

  const uint32_t nch = uint32_t((L + T - 1) / T);
  // Stage chunk k (16-byte pieces; rows past L or channels past the end are zero-filled). One
  // loop per array with compile-time trip counts, so no per-piece array selection.
  auto stage_rows = [&](float* dst0, const float* base, uint32_t stride, int64_t t0, int pieces,
                        int row_floats, bool pad) {
    constexpr int kMaxIt = (T * 4 + NT - 1) / NT;  // B/C rows have the most pieces (4 a row)
#pragma unroll
    for (int it = 0; it < kMaxIt; ++it) {
      const int i = tid + it * NT;
      if (i < T * pieces) {
        const int t = i / pieces, q = i % pieces;
        const int64_t tt = t0 + t;
        const uint32_t ch = (row_floats == kN ? 0 : c0) + 4 * q;
        const bool ok = tt < L && (row_floats == kN || ch < p.channels);
        const int row = pad ? t + t / R : t;
        cp_async16(dst0 + row * row_floats + 4 * q, ok ? base + size_t(tt) * stride + ch : base,
                   ok);
      }
    }
  };
  // LEAN: a thread stages the same pieces of every chunk (at most one per array), so their
  // offsets are computed once; per chunk a piece costs a compare, an add and the cp.async.
  const int lt = tid / V, lq = tid % V;  // channel-array piece: row lt, channels 4·lq ..
  const bool lrow = tid < T * V, lch = lrow && c0 + 4 * lq < p.channels;
  const uint32_t lcol = c0 + 4 * lq;
  const int bt = tid / 4, bq = tid % 4;  // B/C piece: row bt, states 4·bq ..
  const int bsoff = (bt + bt / R) * kN + 4 * bq;
  auto chunk_rem = [&](int64_t t0) { return L - t0 < T ? int(L - t0) : T; };
  auto issue_lean = [&](uint32_t k) {
    Stage& b = sm.st[k % NS];
    const int64_t t0 = int64_t(k) * T;
    const int rem = chunk_rem(t0);
    if (lrow) {
      const bool ok = lch && lt < rem;
      const float* sd = delta + size_t(t0) * p.delta_stride;
      const float* su = u + size_t(t0) * p.u_stride;
      cp_async16(&b.delta[lt][4 * lq], ok ? sd + lt * p.delta_stride + lcol : sd, ok);
      cp_async16(&b.u[lt][4 * lq], ok ? su + lt * p.u_stride + lcol : su, ok);
      if (has_z) {
        const float* sz = z + size_t(t0) * p.z_stride;
        cp_async16(&b.z[lt][4 * lq], ok ? sz + lt * p.z_stride + lcol : sz, ok);
      }
    }
    if (tid < T * 4) {
      const bool ok = bt < rem;
      const float* sb = B + size_t(t0) * p.B_stride;
      const float* sc = C + size_t(t0) * p.C_stride;
      cp_async16(&b.B[0][0] + bsoff, ok ? sb + bt * p.B_stride + 4 * bq : sb, ok);
      cp_async16(&b.C[0][0] + bsoff, ok ? sc + bt * p.C_stride + 4 * bq : sc, ok);
    }
  };
  auto issue = [&](uint32_t k) {
    if (LEAN && k < nch) {
      issue_lean(k);
    } else if (k < nch) {
      Stage& b = sm.st[k % NS];
      const int64_t t0 = int64_t(k) * T;
      stage_rows(&b.delta[0][0], delta, p.delta_stride, t0, V, CB, false);
      stage_rows(&b.u[0][0], u, p.u_stride, t0, V, CB, false);
      if (has_z) stage_rows(&b.z[0][0], z, p.z_stride, t0, V, CB, false);
      stage_rows(&b.B[0][0], B, p.B_stride, t0, 4, kN, true);
      stage_rows(&b.C[0][0], C, p.C_stride, t0, 4, kN, true);
    }
    cp_async_commit();  // always, so the group count stays in step
  };

  // Δ and Δ·u of chunk k, once per (token, channel), transposed for the lanes' float4 reads.
  // Thread tid always takes channel tid % CB (NT is a multiple of CB) and tokens tid / CB + 32·it.
  const int pq = tid % CB, pt = tid / CB;
  auto prep = [&](uint32_t k) {
    const Stage& b = sm.st[k % NS];
    const int64_t t0 = int64_t(k) * T;
    const int pb = k & 1;
    const float bias_q = sm.bias[pq];
#pragma unroll
    for (int it = 0; it < T / 32; ++it) {
      const int t = pt + 32 * it;
      const bool ok = LEAN ? t < chunk_rem(t0) : t0 + t < L;
      const float d = ok ? softplus_fast(b.delta[t][pq] + bias_q) : 0.f;
      sm.dt[pb][pq][t] = d;
      sm.du[pb][pq][t] = d * b.u[t][pq];
    }
  };

  // The scan of chunk k by warp w (channel c): see the file comment.
  auto scan_chunk = [&](uint32_t k) {
    const Stage& b = sm.st[k % NS];
    const int pb = k & 1;
    float dtv[R], duv[R];
    load_slice(&sm.dt[pb][w][0], &sm.du[pb][w][0], s, dtv, duv);
    const int row0 = s * (R + 1);
    float yv[R];
    warp_chunk_scan<R, LEAN>(dtv, duv, &b.B[row0][g * 4], &b.C[row0][g * 4], A2, h, s, g, yv);
    group_reduce_scatter(yv, g);  // lane g: tokens g·R/4 .. of its slice
    float* yo = &sm.y[pb][w][s * R + g * (R / 4)];
    if constexpr (R == 4) {
      yo[0] = yv[0];
    } else if constexpr (R == 8) {
      *reinterpret_cast<float2*>(yo) = make_float2(yv[0], yv[1]);
    } else {
#pragma unroll
      for (int i = 0; i < R / 4; i += 4)
        *reinterpret_cast<float4*>(yo + i) = make_float4(yv[i], yv[i + 1], yv[i + 2], yv[i + 3]);
    }
  };

  // Gate chunk k and store whole rows (16-byte stores).
  auto gate_piece = [&](const Stage& b, int pb, int64_t t0, int t, int q) {
    const float4 uv = *reinterpret_cast<const float4*>(&b.u[t][4 * q]);
    const float4 dv = *reinterpret_cast<const float4*>(&sm.D[4 * q]);
    const float uu[4] = {uv.x, uv.y, uv.z, uv.w}, dd[4] = {dv.x, dv.y, dv.z, dv.w};
    float o[4];
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) o[kk] = fmaf(dd[kk], uu[kk], sm.y[pb][4 * q + kk][t]);
    if (has_z) {
      const float4 zv = *reinterpret_cast<const float4*>(&b.z[t][4 * q]);
      o[0] *= silu_fast(zv.x), o[1] *= silu_fast(zv.y), o[2] *= silu_fast(zv.z),
          o[3] *= silu_fast(zv.w);
    }
    *reinterpret_cast<float4*>(y + size_t(t0 + t) * p.y_stride + c0 + 4 * q) =
        make_float4(o[0], o[1], o[2], o[3]);
  };
  auto gate = [&](uint32_t k) {
    const Stage& b = sm.st[k % NS];
    const int64_t t0 = int64_t(k) * T;
    const int pb = k & 1;
    if constexpr (LEAN) {
      if (lch && lt < chunk_rem(t0)) gate_piece(b, pb, t0, lt, lq);
    } else {
#pragma unroll 1
      for (int i = tid; i < T * V; i += NT) {
        const int t = i / V, q = i % V;
        const int64_t tt = t0 + t;
        const uint32_t ch = c0 + 4 * q;
        if (tt >= L || ch >= p.channels) continue;
        gate_piece(b, pb, t0, t, q);
      }
    }
  };

#pragma unroll 1
  for (int k = 0; k < P; ++k) issue(k);
  cp_async_wait<P - 1>();
  __syncthreads();  // stage 0 and bias visible
  prep(0);
#pragma unroll 1
  for (uint32_t k = 0; k < nch; ++k) {
    cp_async_wait<P - 2>();
    // Stage k+1 landed for everyone; prep(k), the y of chunk k−1 and all reads of the buffers
    // reused below (stage k−2, Δ of chunk k−1, y of chunk k−2) are done.
    __syncthreads();
    issue(k + P);
    if (k >= 1) gate(k - 1);
    if (k + 1 < nch) prep(k + 1);
    scan_chunk(k);
  }
  __syncthreads();
  gate(nch - 1);
  cp_async_wait<0>();
  if (cv && s == 0) {
#pragma unroll
    for (int j = 0; j < 4; ++j) state[size_t(c) * kN + g * 4 + j] = h[j];
  }
}

template <int CB, int R, int NS, int MINB, bool LEAN = false>
cudaError_t launch(const SelectiveScanParams& p, const float* u, const float* delta,
                   const void* A_log, const float* B, const float* C, const void* D,
                   const float* z, const void* dt_bias, float* ssm_state, float* y,
                   cudaStream_t s) {
  const size_t smem = sizeof(V6Smem<CB, R, NS>);
  auto kern = scan_v6_kernel<CB, R, NS, MINB, LEAN>;
  static const cudaError_t attr =
      smem > 48 * 1024
          ? cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem))
          : cudaSuccess;
  if (attr != cudaSuccess) return attr;
  kern<<<ceil_div(p.channels, CB), 32 * CB, smem, s>>>(p, u, delta, A_log, B, C, D, z, dt_bias,
                                                       ssm_state, y);
  return cudaGetLastError();
}

}  // namespace

bool scan_v6_applies(const SelectiveScanParams& p, const float* u, const float* delta,
                     const float* B, const float* C, const float* z, const float* y) {
  return p.d_state == kN && p.channels % 4 == 0 && aligned16(u, p.u_stride) &&
         aligned16(delta, p.delta_stride) && aligned16(B, p.B_stride) &&
         aligned16(C, p.C_stride) && aligned16(y, p.y_stride) &&
         (!p.has_z || aligned16(z, p.z_stride));
}

// Configurations (DM_CUDA_SCAN=v6<letter>): CB channels (= warps) per block, R tokens per
// slice (chunk 8·R), NS stage buffers (NS − 2 chunks staged ahead), MINB blocks per SM asked of
// the register allocator, LEAN (i, j, k): staging offsets computed once per thread, 32-bit
// bounds, the slice scan without predicated moves. R = 8 needs 123–130 registers (a and b of 32
// elements kept), so an SM holds 12–16 warps. Measured on an H100 80GB HBM3 (cuda/README.md):
// at d_inner 1536 g is the best (one 12-warp block per SM: 128 blocks on 132 SMs, where CB = 8
// leaves 192 blocks unevenly spread), at 5120 j (two 8-warp blocks per SM); R = 4 (d) halves
// the registers but doubles the per-chunk overheads and is slower everywhere.
cudaError_t launch_scan_v6(char cfg, const SelectiveScanParams& p, const float* u,
                           const float* delta, const void* A_log, const float* B, const float* C,
                           const void* D, const float* z, const void* dt_bias, float* ssm_state,
                           float* y, cudaStream_t s) {
  if (cfg == 0) cfg = p.channels >= 4096 ? 'j' : 'g';  // the best measured per width
#define DM_V6(n, cb, r, ns, mb, ...)                                                       \
  case n:                                                                                  \
    return launch<cb, r, ns, mb, ##__VA_ARGS__>(p, u, delta, A_log, B, C, D, z, dt_bias,   \
                                                ssm_state, y, s);
  switch (cfg) {
    DM_V6('a', 8, 8, 5, 2)
    DM_V6('b', 12, 8, 6, 1)
    DM_V6('c', 16, 8, 6, 1)
    DM_V6('d', 8, 4, 6, 3)
    DM_V6('e', 4, 8, 5, 3)
    DM_V6('f', 8, 8, 4, 2)
    DM_V6('g', 12, 8, 4, 1)
    DM_V6('h', 4, 8, 4, 4)
    DM_V6('i', 12, 8, 4, 1, true)
    DM_V6('j', 8, 8, 4, 2, true)
    DM_V6('k', 16, 8, 4, 1, true)
    default: return cudaErrorInvalidValue;
  }
#undef DM_V6
}

}  // namespace dm::cuda
