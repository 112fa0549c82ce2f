// Backend::mamba_block_step for one row (batch 1): a whole Mamba block of a decode step as ONE
// kernel, where the fused path of fused_step.cu takes four (norm + in_proj + conv, x_proj,
// dt_proj + scan, out_proj). At 130m widths each of those four ran ~3.5 µs while its weights take
// well under that to read: the step was bound by kernel-to-kernel latency, not by bandwidth.
//
// Phases, separated by grid-wide barriers (every block is resident: the grid is the SM count
// times the blocks per SM the occupancy query allows, DM_CUDA_DECODE_BLOCK_PER_SM of them, 1 by
// default):
//   1. residual + x and its rms_norm, recomputed by every block into shared memory (a 768-float
//      row is cheap; rms_norm.cu's element split and double sum, so the same bits); the block's
//      in_proj rows (the GEMV plan below) → xz; the conv step + SiLU of its x rows → xc.
//   -- barrier --  block 0 writes residual += x (every block has read the old one by now).
//   2. x_proj (R + 2N rows, K split over the block's warps) from xc staged in shared memory.
//   -- barrier --
//   3. dt_proj + softplus + scan step + D skip + SiLU(z) gate, 16 lanes per channel
//      (fused_step.cu's dt_scan_n16 arithmetic) → dt, y, ssm_state.
//   -- barrier --
//   4. out_proj from y staged in shared memory → hidden (may be x's own buffer: x was last read
//      in phase 1).
// What makes it fast: each phase's weights do not depend on the phase before, so a block loads
// its share of the NEXT phase's matrix into registers (up to P 16-byte chunks per lane: all
// of 130m's in_proj, x_proj and out_proj) while it waits at the barrier: the barrier is split in
// an arrive (after the phase's writes) and a wait (before reading other blocks' writes), the
// loads issued between them, so the weight stream overlaps the barrier's latency and the
// arrival's fence does not wait for them. The same for everything else that does not depend on
// the previous phase: the conv taps before pdl_wait, the conv window with the residual row, the
// scan's dt_proj row, A, D, dt_bias and state between barrier 1's halves, u and z right after
// it (only dt_low, B and C wait for barrier 2). Launched with PDL (fused_step.cuh): phase 1's
// weights are loaded before pdl_wait(), so the next layer's kernel streams its in_proj while this
// one finishes (at ≤ 128 registers two blocks fit an SM, one of each kernel).
//
// The barrier (GridSync below) lives in kBlockBarrierWords device words owned by the backend:
// a generation counter (cooperative groups' scheme: never reset, so graph replays and later
// launches need nothing) or per-block flags stamped with an epoch (no atomics). Data written by
// other blocks within the kernel is read with ld.cg (L2), never through the non-coherent path.
//
// GEMV plan (host): a matrix of N rows × K is cut into groups of rb = 8 / ks rows, ks warps per
// row each taking every ks-th 8-element chunk of K; group g = blockIdx.x + i · G for rounds
// i = 0, 1, …; ks is the one of 1, 2, 4, 8 that gives the fewest chunks per lane (the longest
// lane decides when the barrier can pass). 130m on 132 SMs: in_proj ks 1, 9 chunks per lane;
// x_proj ks 8, 1; out_proj ks 1, 6.
//
// Measured (bench_cuda decode-settings, graph device time per token of the executor's step,
// random fp16 weights), one kernel against the four of fused_step.cu in the same process:
// 130m 490 against 347 µs on an H100 (569 against 326 on an H200); 2.8b 6622 against 2451
// (H200). Skipping the barriers (a timing-only experiment, wrong results) left 130m at 419 µs:
// the barriers cost ~1 µs each (72 a token); most of the rest was the body. Since then: the
// split barrier, the conv / scan / B, C inputs issued early, rows staged in one round trip, and
// the code cut from ~20K to ~9K PTX lines (row reductions and epilogues out of the unrolled
// steps). That revision, timed on an H100 in one process with the four-kernel path (session 5,
// device call 10, bench/results/h100_session5_2026-11-27.md): 130m 419.6 against 346.6 µs
// (flags barrier 459.6, 2 blocks per SM 456.4, no PDL 500.0); 2.8b 5209.5 against 2820.6.
// Still slower, so the path is opt-in (DM_CUDA_DECODE_BLOCK=1, cuda_backend.cpp).
// tools/gpu/decode_block_on_gpu.sh tests and times it in one GPU-host call.
//
// Supported: batch 1, d_state 16, d_conv 4, d_model ≤ 4096, d_inner ≤ 8192, the four matrices
// in one dtype (F32, F16, BF16) with K a multiple of 8 and 16-byte aligned rows. Other shapes
// run Backend's composition (cuda_backend.cpp).
#include <algorithm>
#include <cstdlib>
#include <string>

#include "causal_conv1d_step.cuh"
#include "fused_step.cuh"

namespace dm::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int kWarps = kBlock / 32;
constexpr int kNormPer = 16;                 // norm elements per thread in registers
constexpr uint32_t kMaxD = kBlock * kNormPer;  // 4096
constexpr uint32_t kMaxE = 8192;             // longest row staged in shared memory (32 KiB)
constexpr int kDtPre = 8;                    // dt_proj weights per lane loaded before barrier 2

// One GEMV phase (see the file comment); filled on the host.
struct GemvPlan {
  uint32_t N, K, w_stride;
  uint32_t ks, rb;    // warps per row, rows per group (rb · ks = 8)
  uint32_t cpg;       // chunks per lane per group: ceil(K / (ks · 256))
  uint32_t rounds;    // groups per block: ceil(ceil(N / rb) / G)
};

struct KernelArgs {
  MambaBlockStepParams p;
  MambaBlockStepPtrs a;
  GemvPlan in, xp, out;
  uint32_t scan_rounds;  // ceil(E · 16 / (G · 256))
  uint32_t row_floats;   // shared xs: max(D, E, in.rounds · in.rb)
  uint32_t parts;        // shared partial sums: 256 · the most rounds of the three GEMVs
  unsigned* barrier;      // kBlockBarrierWords
  uint32_t barrier_flags;  // GridSync::flags
};

// Loads of data other blocks of this kernel wrote: through L2, never a stale L1 line.
__device__ __forceinline__ float ld_cg(const float* p) { return __ldcg(p); }

// The grid barrier in two halves, so that a block can issue the next phase's weight loads
// between them: arrive() right after the phase's last global writes (thread 0's fence then waits
// only for those writes, not for the loads that follow), wait() before the first read of what
// other blocks wrote. Two schemes over the backend's kBlockBarrierWords (kernels.h), picked by
// DM_CUDA_DECODE_BLOCK_BARRIER:
//  counter  word 0, a generation counter (cooperative groups' grid sync): block 0 adds
//           2^31 − (G − 1), the others 1; the top bit flips when the last block arrives. Never
//           reset. Every arrival is an atomic on one address.
//  flags    word 1 holds an epoch e, words 2… one flag per block: barrier b of a launch stamps
//           the block's flag 4e + b (a plain store), and warp 0 of every block polls the G flags
//           until all are ≥ it (wrap-safe). Block 0 advances e once every block has read it
//           (after barrier 1). No atomics; a grid of another size later is fine (stale flags
//           are older stamps).
struct GridSync {
  unsigned* words;
  uint32_t flags;  // 0: counter, 1: flags
  unsigned epoch;  // flags: this launch's e (warp 0's copy)

  __device__ unsigned stamp(int b) const { return epoch * 4u + unsigned(b); }
  // Returns what wait() needs (counter: the value before this block's add).
  __device__ __forceinline__ unsigned arrive(int b) {
    __syncthreads();
    unsigned old = 0;
    if (threadIdx.x == 0) {
      __threadfence();
      if (flags) {
        asm volatile("st.relaxed.gpu.u32 [%0], %1;" ::"l"(words + 2 + blockIdx.x), "r"(stamp(b))
                     : "memory");
      } else {
        old = atomicAdd(words, blockIdx.x == 0 ? 0x80000000u - (gridDim.x - 1) : 1u);
      }
    }
    return old;
  }
  __device__ __forceinline__ void wait(int b, unsigned old) {
    if (flags) {
      if (threadIdx.x < 32) {
        const unsigned want = stamp(b);
        bool done;
        do {
          done = true;
          for (uint32_t j = threadIdx.x; j < gridDim.x; j += 32) {
            unsigned f;
            asm volatile("ld.relaxed.gpu.u32 %0, [%1];" : "=r"(f) : "l"(words + 2 + j) : "memory");
            done = done && int(f - want) >= 0;
          }
          done = __all_sync(0xffffffffu, done);
        } while (!done);
        __threadfence();
      }
    } else if (threadIdx.x == 0) {
      unsigned cur;
      do {
        asm volatile("ld.relaxed.gpu.u32 %0, [%1];" : "=r"(cur) : "l"(words) : "memory");
      } while (((old ^ cur) & 0x80000000u) == 0);
      __threadfence();
    }
    __syncthreads();
  }
};

template <typename WT, int P>
struct Chunks {
  WChunk<WT> c[P];
};

// Lane's chunk (i, j): round i, chunk j of its slice of row n = (blockIdx.x + i·G)·rb + r.
struct LanePos {
  uint32_t r, k0, step;
  __device__ explicit LanePos(const GemvPlan& pl) {
    const uint32_t wid = threadIdx.x >> 5, lane = threadIdx.x & 31;
    r = wid / pl.ks;
    k0 = ((wid % pl.ks) * 32 + lane) * 8;
    step = pl.ks * 256;
  }
  __device__ uint32_t row(const GemvPlan& pl, uint32_t i) const {
    return (blockIdx.x + i * gridDim.x) * pl.rb + r;
  }
};

// The lane's first P chunks into registers (weights only: may run before any barrier).
template <typename WT, int P>
__device__ __forceinline__ void gemv_preload(const GemvPlan& pl, const WT* __restrict__ w,
                                             Chunks<WT, P>& pre) {
  const LanePos lp(pl);
  uint32_t i = 0, j = 0;
#pragma unroll
  for (int t = 0; t < P; ++t) {
    const uint32_t n = lp.row(pl, i), k = lp.k0 + j * lp.step;
    if (i < pl.rounds && n < pl.N && k < pl.K)
      pre.c[t] = load_chunk<WT>(w + size_t(n) * pl.w_stride + k);
    if (++j == pl.cpg) j = 0, ++i;
  }
}

// The block's partial row sums of w · xs (xs: K floats in shared memory): each lane's sum over
// its chunks of round i lands in part[i · 256 + thread] (shared, rounds · 256 floats). Every
// thread of the block calls it (the chunk count is uniform); it ends with a barrier. Only loads
// and FMAs sit in the unrolled loops; the reductions and row epilogues run once per row in
// gemv_rows, which keeps the kernel small: an earlier form with a warp reduction and the
// epilogue in every unrolled step compiled to ~20K PTX lines for one instantiation, and every
// SM fetches the whole kernel's code each layer.
template <typename WT, int P>
__device__ __forceinline__ void gemv_run(const GemvPlan& pl, const WT* __restrict__ w,
                                         const float* xs, const Chunks<WT, P>& pre, float* part) {
  const LanePos lp(pl);
  const uint32_t total = pl.rounds * pl.cpg;
  float acc = 0.f;
  uint32_t i = 0, j = 0;
  auto consume = [&](const WChunk<WT>& c) {
    const uint32_t n = lp.row(pl, i), k = lp.k0 + j * lp.step;
    if (n < pl.N && k < pl.K) {
      float wv[8];
      unpack_chunk<WT>(c, wv);
      acc = dot8(wv, xs + k, acc);
    }
    if (++j == pl.cpg) {  // uniform over the block
      part[i * kBlock + threadIdx.x] = acc;
      acc = 0.f, j = 0, ++i;
    }
  };
#pragma unroll
  for (int t = 0; t < P; ++t)
    if (uint32_t(t) < total) consume(pre.c[t]);
  // Past the preloaded chunks, kStream in flight per lane (shapes that stream are not the
  // latency-bound ones this kernel is for: a short unrolled body keeps the code small).
  constexpr int kStream = 4;
  for (uint32_t t0 = P; t0 < total; t0 += kStream) {
    WChunk<WT> c[kStream];
    uint32_t li = i, lj = j;
#pragma unroll
    for (int q = 0; q < kStream; ++q) {
      const uint32_t n = lp.row(pl, li), k = lp.k0 + lj * lp.step;
      if (t0 + q < total && n < pl.N && k < pl.K)
        c[q] = load_chunk<WT>(w + size_t(n) * pl.w_stride + k);
      if (++lj == pl.cpg) lj = 0, ++li;
    }
#pragma unroll
    for (int q = 0; q < kStream; ++q)
      if (t0 + q < total) consume(c[q]);
  }
  __syncthreads();
}

// epi(n, y[n], slot) for each row n the block owns (slot = i · rb + row in group), from
// gemv_run's partial sums: a warp per row (its 32 · ks lane partials), lane 0 calls epi.
template <typename Epi>
__device__ __forceinline__ void gemv_rows(const GemvPlan& pl, const float* part, Epi&& epi) {
  const uint32_t wid = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (uint32_t slot = wid; slot < pl.rounds * pl.rb; slot += kWarps) {
    const uint32_t i = slot / pl.rb, r = slot % pl.rb;
    const uint32_t n = (blockIdx.x + i * gridDim.x) * pl.rb + r;
    if (n >= pl.N) continue;  // uniform over the warp
    const float* pr = part + i * kBlock + r * pl.ks * 32;
    float s = 0.f;
    for (uint32_t q = 0; q < pl.ks; ++q) s += pr[q * 32 + lane];
    s = warp_sum(s);
    if (lane == 0) epi(n, s, slot);
  }
}

// out[j] = p[base + first + j · step] (0 past limit), any weight dtype; the dtype switch outside
// the unrolled loop (one copy of the loads per dtype, not N switches).
template <int N>
__device__ __forceinline__ void load_strided(const void* p, uint32_t dtype, size_t base,
                                             uint32_t first, uint32_t step, uint32_t limit,
                                             float (&out)[N]) {
#define DM_LOAD_STRIDED(T, CVT)                                                     \
  _Pragma("unroll") for (int j = 0; j < N; ++j) {                                   \
    const uint32_t e = first + uint32_t(j) * step;                                  \
    out[j] = e < limit ? CVT(static_cast<const T*>(p)[base + e]) : 0.f;             \
  }
  switch (dtype) {
    case 1: DM_LOAD_STRIDED(__half, __half2float) break;
    case 2: DM_LOAD_STRIDED(__nv_bfloat16, __bfloat162float) break;
    default: DM_LOAD_STRIDED(float, float) break;
  }
#undef DM_LOAD_STRIDED
}

// dst[0, n) = src[0, n) (src written by other blocks of this kernel: through L2), every load
// of a thread issued before its first store: one round trip, not one per element.
__device__ __forceinline__ void stage_row(const float* src, float* dst, uint32_t n) {
  constexpr int kPer = 8;
  for (uint32_t base = 0; base < n; base += kBlock * kPer) {
    float t[kPer];
#pragma unroll
    for (int q = 0; q < kPer; ++q) {
      const uint32_t i = base + q * kBlock + threadIdx.x;
      t[q] = i < n ? ld_cg(src + i) : 0.f;
    }
#pragma unroll
    for (int q = 0; q < kPer; ++q) {
      const uint32_t i = base + q * kBlock + threadIdx.x;
      if (i < n) dst[i] = t[q];
    }
  }
}

// Phase 3's per-channel inputs: weights and state between barrier 1's halves, u and z after it;
// only dt_low, B and C wait for barrier 2.
struct ScanIn {
  float w[kDtPre];
  float A, bias, Dc, h, u, z;
};

__device__ __forceinline__ void scan_load_own(const KernelArgs& k, uint32_t c, uint32_t n,
                                              ScanIn& s) {
  const DtProjScanStepParams& p = k.p.scan;
  load_strided(k.a.dt_proj, p.dt.w_dtype, size_t(c) * p.dt.w_stride, n, 16, p.dt.K, s.w);
  s.A = -expf(load_f(k.a.A_log, p.scan.A_log_dtype, size_t(c) * 16 + n));
  s.bias = load_f(k.a.dt_bias, p.scan.dt_bias_dtype, c);
  s.Dc = load_f(k.a.D, p.scan.D_dtype, c);
  s.h = k.a.ssm_state[size_t(c) * 16 + n];
}
__device__ __forceinline__ void scan_load_phase1(const KernelArgs& k, uint32_t c, ScanIn& s) {
  s.u = ld_cg(k.a.xc + c);
  s.z = ld_cg(k.a.xz + k.p.scan.scan.channels + c);
}

// dt_scan_n16_kernel's arithmetic for channel c (16 lanes, lane n = state n); the whole warp
// calls it (shuffles), valid or not.
__device__ __forceinline__ void scan_step(const KernelArgs& k, uint32_t c, uint32_t n, bool valid,
                                          const ScanIn& s) {
  const DtProjScanStepParams& p = k.p.scan;
  const float* dt_low = k.a.x_dbl;
  const float* B = k.a.x_dbl + p.dt.K;
  const float* C = B + 16;
  // B[n] and C[n] issued with dt_low, before the dot product needs any of them.
  const float Bn = valid ? ld_cg(B + n) : 0.f, Cn = valid ? ld_cg(C + n) : 0.f;
  float dot = 0.f;
  if (valid) {
#pragma unroll
    for (int j = 0; j < kDtPre; ++j)
      if (n + 16 * j < p.dt.K) dot = fmaf(s.w[j], ld_cg(dt_low + n + 16 * j), dot);
    for (uint32_t rr = n + 16 * kDtPre; rr < p.dt.K; rr += 16)
      dot = fmaf(load_f(k.a.dt_proj, p.dt.w_dtype, size_t(c) * p.dt.w_stride + rr),
                 ld_cg(dt_low + rr), dot);
  }
#pragma unroll
  for (int o = 8; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
  float acc = 0.f;
  if (valid) {
    if (n == 0) k.a.dt[c] = dot;
    const float dt = softplus(dot + s.bias);
    const float du = dt * s.u;
    const float hn = expf(dt * s.A) * s.h + Bn * du;
    k.a.ssm_state[size_t(c) * 16 + n] = hn;
    acc = hn * Cn;
  }
#pragma unroll
  for (int o = 8; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  if (valid && n == 0) {
    acc += s.Dc * s.u;
    if (p.scan.has_z) acc *= silu(s.z);
    k.a.y[c] = acc;
  }
}

// causal_conv1d_step.cuh's conv_step_window for d_conv 4, the window (oldest first) and the
// taps already in registers: the same sum in the same order. Returns the value before SiLU and
// the advanced window in `win`.
__device__ __forceinline__ float conv4_step(float4& win, const float (&w)[4], float bias,
                                            float xn) {
  float acc = bias;
  acc += w[0] * win.y;
  acc += w[1] * win.z;
  acc += w[2] * win.w;
  acc += w[3] * xn;
  win = make_float4(win.y, win.z, win.w, xn);
  return acc;
}

template <typename WT, int P>
__global__ void __launch_bounds__(kBlock, 2) mamba_block_step_kernel(KernelArgs k) {
  // Shared: xs, the GEMVs' input row and then the conv inputs (k.row_floats: max(D, E, in_proj
  // rows per block)); part, the GEMVs' partial sums (k.parts);
  // new_residual (block 0: residual + x, D floats).
  extern __shared__ __align__(16) float smem[];
  const MambaBlockStepParams& p = k.p;
  const MambaBlockStepPtrs& a = k.a;
  const uint32_t D = p.front.norm.D, E = p.scan.scan.channels, tid = threadIdx.x;
  float* xs = smem;
  float* part = smem + k.row_floats;
  float* new_residual = part + k.parts;
  __shared__ double red[32];
  const WT* w_in = static_cast<const WT*>(a.in_proj);
  const WT* w_x = static_cast<const WT*>(a.x_proj);
  const WT* w_out = static_cast<const WT*>(a.out_proj);
  const CausalConv1dStepParams& cv = p.front.conv;
  // The in_proj row of the block's slot tid (gemv_rows' numbering): if it is an x row, this
  // thread runs its conv step, with the taps loaded up front.
  const uint32_t conv_n = (blockIdx.x + (tid / k.in.rb) * gridDim.x) * k.in.rb + tid % k.in.rb;
  const bool conv_mine = tid < k.in.rounds * k.in.rb && conv_n < E;

  // ---- Phase 1: weights first (before pdl_wait), then the norm, in_proj, conv step.
  // Preloaded chunks per lane and matrix (registers: the code of the unrolled steps grows with
  // them too): in_proj P, x_proj kPreX, out_proj kPreOut; 130m needs 9, 1 and 6.
  constexpr int kPreX = 2, kPreOut = P < 6 ? P : 6;
  Chunks<WT, P> pre;
  gemv_preload<WT, P>(k.in, w_in, pre);
  float nw[kNormPer];
  load_strided(a.norm_w, p.front.norm.weight_dtype, 0, tid, kBlock, D, nw);
  float conv_w[4] = {0.f, 0.f, 0.f, 0.f}, conv_b = 0.f;
  if (conv_mine) {
    load_strided(a.conv_w, cv.weight_dtype, size_t(conv_n) * 4, 0, 1, 4, conv_w);
    conv_b = cv.has_bias ? load_f(a.conv_b, cv.bias_dtype, conv_n) : 0.f;
  }
  pdl_wait();
  pdl_trigger();
  GridSync gs{k.barrier, k.barrier_flags, 0u};
  if (gs.flags && tid < 32) gs.epoch = *reinterpret_cast<volatile unsigned*>(k.barrier + 1);
  // The conv window (written by this layer's previous step) with the row: one round trip.
  float4 win = conv_mine ? *reinterpret_cast<const float4*>(a.conv_state + size_t(conv_n) * 4)
                         : make_float4(0.f, 0.f, 0.f, 0.f);
  // residual (+ x) into xs and its sum of squares in double: rms_norm.cu's element split and
  // order, so the same bits; then the normed row in place.
  const bool has_x = p.front.norm.has_residual != 0;
  double ss = 0;
#pragma unroll 4
  for (uint32_t i = tid; i < D; i += kBlock) {
    float v = a.residual[i];
    if (has_x) v = v + a.x[i];
    xs[i] = v;
    ss += double(v) * double(v);
  }
  const float scale = rms_scale(ss, red, D, p.front.norm.eps);
#pragma unroll
  for (int j = 0; j < kNormPer; ++j) {
    const uint32_t i = tid + j * kBlock;
    if (i < D) {
      const float v = xs[i], nv = (v * scale) * nw[j];
      xs[i] = nv;
      if (blockIdx.x == 0) a.normed[i] = nv, new_residual[i] = v;
    }
  }
  __syncthreads();
  gemv_run<WT, P>(k.in, w_in, xs, pre, part);
  const GemmParams& gi = p.front.gemm;
  gemv_rows(k.in, part, [&](uint32_t n, float s, uint32_t slot) {
    s = s + (gi.has_bias ? load_f(a.in_bias, gi.bias_dtype, n) : 0.f);
    a.xz[n] = s;
    if (n < E) xs[slot] = s;  // the conv input (xs is free after gemv_run)
  });
  __syncthreads();
  if (conv_mine) {  // causal_conv1d_step_kernel, batch 1, from the preloaded inputs
    a.xc[conv_n] = silu(conv4_step(win, conv_w, conv_b, xs[tid]));
    *reinterpret_cast<float4*>(a.conv_state + size_t(conv_n) * 4) = win;
  }
  for (uint32_t slot = tid + kBlock; slot < k.in.rounds * k.in.rb; slot += kBlock) {
    const uint32_t n = (blockIdx.x + (slot / k.in.rb) * gridDim.x) * k.in.rb + slot % k.in.rb;
    if (n < E)  // a block with more x rows than threads
      a.xc[n] = silu(conv_step_window(a.conv_state + size_t(n) * 4, a.conv_w, cv.weight_dtype,
                                      a.conv_b, cv.bias_dtype, cv.has_bias, n, 4, xs[slot]));
  }

  // ---- Barrier 1. Between its halves: x_proj's weights, the scan's own inputs.
  unsigned gen = gs.arrive(1);
  Chunks<WT, kPreX> pre_x;
  gemv_preload<WT, kPreX>(k.xp, w_x, pre_x);
  const uint32_t lane16 = tid & 15;
  const uint32_t c0 = (blockIdx.x * kBlock + tid) >> 4, cstride = gridDim.x * (kBlock / 16);
  ScanIn sin;
  if (c0 < E) scan_load_own(k, c0, lane16, sin);
  gs.wait(1, gen);
  if (gs.flags && blockIdx.x == 0 && tid == 0)  // every block has read e (its stamp 1 used it)
    *reinterpret_cast<volatile unsigned*>(k.barrier + 1) = gs.epoch + 1;
  // ---- Phase 2: residual += x (everyone has read the old one), x_proj from xc.
  if (has_x && blockIdx.x == 0)  // the same thread wrote new_residual[i] in phase 1
    for (uint32_t i = tid; i < D; i += kBlock) a.residual[i] = new_residual[i];
  if (c0 < E) scan_load_phase1(k, c0, sin);
  stage_row(a.xc, xs, E);
  __syncthreads();
  gemv_run<WT, kPreX>(k.xp, w_x, xs, pre_x, part);
  gemv_rows(k.xp, part, [&](uint32_t n, float s, uint32_t) {
    a.x_dbl[n] = s;  // no bias (mamba_block_step_supported)
  });

  // ---- Barrier 2, then phase 3: dt_proj + scan step (later rounds load their own inputs).
  gen = gs.arrive(2);
  gs.wait(2, gen);
  for (uint32_t q = 0; q < k.scan_rounds; ++q) {
    const uint32_t c = c0 + q * cstride;
    if (q > 0 && c < E) scan_load_own(k, c, lane16, sin), scan_load_phase1(k, c, sin);
    scan_step(k, c, lane16, c < E, sin);
  }

  // ---- Barrier 3 (out_proj's weights between its halves), then phase 4 from y.
  gen = gs.arrive(3);
  Chunks<WT, kPreOut> pre_out;
  gemv_preload<WT, kPreOut>(k.out, w_out, pre_out);
  gs.wait(3, gen);
  stage_row(a.y, xs, E);
  __syncthreads();
  gemv_run<WT, kPreOut>(k.out, w_out, xs, pre_out, part);
  const GemmParams& go = p.out;
  gemv_rows(k.out, part, [&](uint32_t n, float s, uint32_t) {
    a.hidden[n] = s + (go.has_bias ? load_f(a.out_bias, go.bias_dtype, n) : 0.f);
  });
}

GemvPlan plan_gemv(const GemmParams& g, uint32_t grid) {
  GemvPlan best{};
  uint32_t best_cost = ~0u;
  for (uint32_t ks = 1; ks <= 8; ks *= 2) {
    const uint32_t rb = 8 / ks;
    const uint32_t rounds = ceil_div(ceil_div(g.N, rb), grid);
    const uint32_t cpg = ceil_div(g.K, ks * 256);
    if (rounds * cpg < best_cost) {
      best_cost = rounds * cpg;
      best = GemvPlan{g.N, g.K, g.w_stride, ks, rb, cpg, rounds};
    }
  }
  return best;
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <typename WT>
bool vec_ok(const GemmParams& g, const void* w) {
  return g.K % 8 == 0 && aligned16(w) && (size_t(g.w_stride) * sizeof(WT)) % 16 == 0;
}

template <typename WT>
cudaError_t launch_typed(const MambaBlockStepParams& p, const MambaBlockStepPtrs& a,
                         unsigned* barrier, cudaStream_t s) {
  // in_proj's preloaded chunks per lane: 40 registers of fp16 / bf16, 32 of F32 (≤ 128 registers
  // without spills: two blocks per SM).
  constexpr int P = sizeof(WT) == 2 ? 10 : 4;
  auto kernel = mamba_block_step_kernel<WT, P>;
  const uint32_t D = p.front.norm.D, E = p.scan.scan.channels;
  KernelArgs k{};
  k.p = p;
  k.a = a;
  k.barrier = barrier;
  // Blocks per SM: what fits, capped by DM_CUDA_DECODE_BLOCK_PER_SM (default 1: a second block
  // slot stays free for the next layer's kernel to start its weight loads early). The plans
  // size shared memory, which may change the occupancy: plan for the most blocks, then check
  // that they fit.
  const char* e = std::getenv("DM_CUDA_DECODE_BLOCK_PER_SM");
  const int want = e ? std::max(1, std::atoi(e)) : 1;
  const uint32_t sms = uint32_t(sm_count());
  uint32_t grid = 0;
  size_t smem = 0;
  for (int per_sm = want; per_sm >= 1 && grid == 0; --per_sm) {
    const uint32_t g = sms * uint32_t(per_sm);
    k.in = plan_gemv(p.front.gemm, g);
    k.xp = plan_gemv(p.x_proj, g);
    k.out = plan_gemv(p.out, g);
    k.parts = kBlock * std::max({k.in.rounds, k.xp.rounds, k.out.rounds});
    k.row_floats = std::max({D, E, k.in.rounds * k.in.rb});
    const size_t bytes = (size_t(k.row_floats) + k.parts + D) * sizeof(float);
    int fit = 0;
    if (bytes > 48 * 1024 &&  // past the default: d_inner 8192 with d_model 4096 (~80 KB)
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)) !=
            cudaSuccess)
      cudaGetLastError();
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&fit, kernel, kBlock, bytes) != cudaSuccess) {
      cudaGetLastError();
      fit = 0;
    }
    if (fit >= per_sm) grid = g, smem = bytes;
  }
  if (grid == 0) return cudaErrorInvalidConfiguration;
  // DM_CUDA_DECODE_BLOCK_BARRIER=flags: the per-block flags barrier (GridSync), else the counter.
  if (const char* b = std::getenv("DM_CUDA_DECODE_BLOCK_BARRIER"))
    k.barrier_flags = std::string(b) == "flags" && grid <= kBlockBarrierWords - 2;
  k.scan_rounds = ceil_div(uint64_t(E) * 16, uint64_t(grid) * kBlock);
  return launch_pdl(kernel, dim3(grid), dim3(kBlock), smem, s, k);
}

}  // namespace

bool mamba_block_step_supported(const MambaBlockStepParams& p, const MambaBlockStepPtrs& a) {
  const RmsNormGemmParams& f = p.front;
  const bool shapes =
      f.norm.L == 1 && f.gemm.M == 1 && f.has_conv && f.conv.batch == 1 && f.conv.d_conv == 4 &&
      f.norm.D >= 1 && f.norm.D <= kMaxD && p.scan.scan.batch == 1 &&
      p.scan.scan.d_state == 16 && p.scan.dt.M == 1 && p.scan.scan.channels >= 1 &&
      p.scan.scan.channels <= kMaxE && p.scan.scan.has_z && p.x_proj.M == 1 &&
      !p.x_proj.has_bias && p.out.M == 1 && p.x_proj.w_dtype == f.gemm.w_dtype &&
      p.out.w_dtype == f.gemm.w_dtype;
  if (!shapes || !aligned16(a.conv_state)) return false;  // conv windows as float4
  switch (f.gemm.w_dtype) {  // the GEMVs' 16-byte chunk loads
    case 0:
      return vec_ok<float>(f.gemm, a.in_proj) && vec_ok<float>(p.x_proj, a.x_proj) &&
             vec_ok<float>(p.out, a.out_proj);
    case 1:
    case 2:
      return vec_ok<__half>(f.gemm, a.in_proj) && vec_ok<__half>(p.x_proj, a.x_proj) &&
             vec_ok<__half>(p.out, a.out_proj);
    default: return false;
  }
}

cudaError_t launch_mamba_block_step(const MambaBlockStepParams& p, const MambaBlockStepPtrs& a,
                                    unsigned* barrier, cudaStream_t s) {
  if (!mamba_block_step_supported(p, a)) return cudaErrorInvalidValue;
  switch (p.front.gemm.w_dtype) {
    case 0: return launch_typed<float>(p, a, barrier, s);
    case 1: return launch_typed<__half>(p, a, barrier, s);
    case 2: return launch_typed<__nv_bfloat16>(p, a, barrier, s);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace dm::cuda
