// v9: the prompt scan (d_state 16) with lanes over channels and time slices over warps, so that
// every B and C read is a broadcast. Opt-in (DM_CUDA_SCAN=v9) while it is measured.
//
// Why: ncu's source counters of v7u (bench/results/h100_session12_scan_2026-11-28.md) show the
// L1/TEX unit 83-86% busy: v7's lane = 4·slice + state group layout makes every warp read its
// chunk's whole B and C, 32 different 16-byte pieces per load (4 wavefronts each: 64 wavefronts
// per warp and chunk), plus ~38 shuffles a chunk for the slice scan and the y reduce-scatter.
// Moving work between those limits (session 12's U / P / Q variants) gained nothing.
//
// Here lane = 4·c + g: channel c of the block's 8, state group g (states 4g .. 4g + 3), and warp
// w of the block's kS takes tokens w·kR .. w·kR + kR − 1 of each chunk (kT = kS·kR tokens):
//   staging: cp.async (16-byte pieces, zero-filled past L and past the last channel) of delta,
//            u, z ([kT][8] rows padded to 12 floats) and B, C ([kT][16]) into one of kStages
//            stages, chunk k + 3 issued while chunk k is scanned.
//   prep:    lane (c, g) takes tokens 2g, 2g + 1 of its warp's slice (conflict-free with the
//            padding): Δ = softplus(delta + bias) (0 past L), Δ·u into a warp buffer, u and
//            SiLU(z) kept for the gate; then every lane loads its channel's kR Δ and Δ·u
//            (16-byte broadcast loads).
//   pass A:  a = exp2(Δ·A·log2e) and x = Δ·B·u in registers (B: one 16-byte load per token,
//            the same 4 addresses for the 8 channels: one wavefront), the slice's map from a zero
//            state (H) and its decay product P = exp2(A·log2e·ΣΔ), published to shared memory.
//   barrier: the block's one __syncthreads per chunk (it also makes chunk k + 1's stage
//            visible and frees chunk k − 1's).
//   combine: warp w folds the chunk's carried state through slices 0 .. w − 1 (shared memory
//            reads, 4 FMAs each): its slice's true start; the last warp's end is the next carry.
//   pass B:  the rerun from the true start out of registers (2 FMAs an element), y = C·h over
//            the lane's 4 states, reduce-scattered over the 4 group lanes (two shuffle levels):
//            lane g ends with tokens 2g, 2g + 1 — the ones its prep took — and gates and stores
//            them (4 tokens × 8 channels a store instruction: whole 32-byte sectors).
// The arithmetic is v7's (ex2 / lg2 / rcp.approx, selective_scan_common.cuh), in v7's order
// within a slice; across slices the carry is folded sequentially instead of by a shuffle scan,
// so results differ from v7's in the last bits. Tokens past L: Δ = 0 and B = 0 (decay 1, input
// 0): the state passes through.
#include <cuda_runtime.h>

#include "selective_scan_common.cuh"
#include "selective_scan_v9.cuh"

namespace dm::cuda {
namespace {

using namespace scan;

constexpr int kCh = 8;            // channels per block (lane = 4·c + g)
constexpr int kR = 8;             // tokens per slice (per warp)
constexpr int kS = 8;             // slices (warps) per block
constexpr int kT = kS * kR;       // tokens per chunk
constexpr int kStages = 4;        // chunks in shared memory: k (scanned), k + 1, k + 2, k + 3
constexpr int kRow = 12;          // floats per staged delta / u / z row: 8 channels + 4 padding
constexpr int kWb = 12;           // floats per channel row of the warp's Δ / Δ·u buffer
constexpr int kThreads = 32 * kS;

struct V9Smem {
  struct Stage {
    float dl[kT][kRow];
    float u[kT][kRow];
    float z[kT][kRow];
    float B[kT][kN];
    float C[kT][kN];
  };
  Stage st[kStages];
  float4 hp[2][kS][32][2];   // per chunk parity, slice, lane: (H, P) of the lane's 4 states
  float4 carry[2][32];       // the state entering chunk k (parity k & 1), per lane
  float wdt[kS][kCh][kWb];   // per warp: Δ of its slice's tokens, per channel
  float wdu[kS][kCh][kWb];   // per warp: Δ·u
};

__global__ void __launch_bounds__(kThreads, 2)
    scan_v9_kernel(SelectiveScanParams p, const float* __restrict__ u,
                   const float* __restrict__ delta, const void* A_log, const float* __restrict__ B,
                   const float* __restrict__ C, const void* Dp, const float* __restrict__ z,
                   const void* dt_bias, float* state, float* __restrict__ y) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  V9Smem& sm = *reinterpret_cast<V9Smem*>(smem_raw);
  const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
  const int c = lane >> 2, g = lane & 3;
  const uint32_t c0 = blockIdx.x * kCh, ch = c0 + c;
  const bool cv = ch < p.channels;
  const uint32_t cc = cv ? ch : 0;
  const int L = int(p.L), nch = (L + kT - 1) / kT;
  const bool has_z = p.has_z;

  float A2[4];
#pragma unroll
  for (int j = 0; j < 4; ++j)
    A2[j] = -expf(load_f(A_log, p.A_log_dtype, size_t(cc) * kN + g * 4 + j)) * kLog2e;
  const float bias = load_f(dt_bias, p.dt_bias_dtype, cc);
  const float Dw = load_f(Dp, p.D_dtype, cc);

  // Chunk k into stage k % kStages, this thread's share of the 16-byte pieces; one commit group
  // per chunk (empty past the last) so that the waits count chunks.
  auto issue = [&](int k) {
    if (k < nch) {
      V9Smem::Stage& b = sm.st[k % kStages];
      const int t0 = k * kT;
      // delta, u, z: kT rows × 2 pieces each; B, C: kT rows × 4 pieces each.
      const int nrow = has_z ? 3 * 2 * kT : 2 * 2 * kT;
      for (int i = tid; i < nrow + 2 * 4 * kT; i += kThreads) {
        if (i < nrow) {
          const int a = i / (2 * kT), r = (i / 2) % kT, half = i & 1;
          const uint32_t col = c0 + 4 * half;
          const bool ok = t0 + r < L && col < p.channels;
          const float* base = a == 0 ? delta : a == 1 ? u : z;
          const uint32_t stride = a == 0 ? p.delta_stride : a == 1 ? p.u_stride : p.z_stride;
          float* dst = a == 0 ? &b.dl[r][4 * half] : a == 1 ? &b.u[r][4 * half] : &b.z[r][4 * half];
          cp_async16(dst, ok ? base + size_t(t0 + r) * stride + col : base, ok);
        } else {
          const int e = i - nrow, a = e / (4 * kT), r = (e / 4) % kT, q = e & 3;
          const bool ok = t0 + r < L;
          const float* base = a == 0 ? B : C;
          const uint32_t stride = a == 0 ? p.B_stride : p.C_stride;
          float* dst = a == 0 ? &b.B[r][4 * q] : &b.C[r][4 * q];
          cp_async16(dst, ok ? base + size_t(t0 + r) * stride + 4 * q : base, ok);
        }
      }
    }
    cp_async_commit();
  };

  if (w == 0) {
    float4 h0 = make_float4(0.f, 0.f, 0.f, 0.f);
    if (cv) {
      const float* sp = state + size_t(ch) * kN + g * 4;
      h0 = make_float4(sp[0], sp[1], sp[2], sp[3]);
    }
    sm.carry[0][lane] = h0;
  }
  issue(0);
  issue(1);
  issue(2);
  cp_async_wait<2>();  // chunk 0 (this thread's pieces)
  __syncthreads();     // chunk 0 and the carry visible

  float hs[4] = {0.f, 0.f, 0.f, 0.f};  // the slice's running state (pass B); the last warp's
                                       // is the carry out of the chunk
#pragma unroll 1
  for (int k = 0; k < nch; ++k) {
    const V9Smem::Stage& b = sm.st[k % kStages];
    const int par = k & 1, tw = w * kR;  // tw: the slice's first token in the chunk
    // Prep: tokens tw + 2g + i of channel c.
    float ug[2], gz[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int t = tw + 2 * g + i;
      const bool ok = k * kT + t < L;
      const float d = ok ? softplus_fast(b.dl[t][c] + bias) : 0.f;
      ug[i] = b.u[t][c];
      gz[i] = has_z ? silu_fast(b.z[t][c]) : 1.f;
      sm.wdt[w][c][2 * g + i] = d;
      sm.wdu[w][c][2 * g + i] = d * ug[i];
    }
    __syncwarp();
    float dtv[kR], duv[kR];
#pragma unroll
    for (int r = 0; r < kR; r += 4) {
      const float4 d4 = *reinterpret_cast<const float4*>(&sm.wdt[w][c][r]);
      const float4 u4 = *reinterpret_cast<const float4*>(&sm.wdu[w][c][r]);
      dtv[r] = d4.x, dtv[r + 1] = d4.y, dtv[r + 2] = d4.z, dtv[r + 3] = d4.w;
      duv[r] = u4.x, duv[r + 1] = u4.y, duv[r + 2] = u4.z, duv[r + 3] = u4.w;
    }
    // Pass A: the slice from a zero state.
    float a[kR][4], x[kR][4], H[4], dsum = 0.f;
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      const float4 b4 = *reinterpret_cast<const float4*>(&b.B[tw + r][4 * g]);
      const float Bv[4] = {b4.x, b4.y, b4.z, b4.w};
      dsum += dtv[r];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        a[r][j] = ex2_approx(dtv[r] * A2[j]);
        x[r][j] = Bv[j] * duv[r];
        H[j] = r == 0 ? x[r][j] : fmaf(a[r][j], H[j], x[r][j]);
      }
    }
    float P[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) P[j] = ex2_approx(dsum * A2[j]);
    sm.hp[par][w][lane][0] = make_float4(H[0], H[1], H[2], H[3]);
    sm.hp[par][w][lane][1] = make_float4(P[0], P[1], P[2], P[3]);
    cp_async_wait<1>();  // chunk k + 1 (this thread's pieces)
    __syncthreads();     // every slice's (H, P); chunk k + 1's stage; chunk k − 1's stage free
    issue(k + 3);        // into chunk k − 1's stage
    // Combine: the carry through slices 0 .. w − 1.
    {
      const float4 cr = sm.carry[par][lane];
      hs[0] = cr.x, hs[1] = cr.y, hs[2] = cr.z, hs[3] = cr.w;
#pragma unroll
      for (int sp = 0; sp < kS - 1; ++sp) {
        if (sp < w) {
          const float4 h4 = sm.hp[par][sp][lane][0], p4 = sm.hp[par][sp][lane][1];
          hs[0] = fmaf(p4.x, hs[0], h4.x);
          hs[1] = fmaf(p4.y, hs[1], h4.y);
          hs[2] = fmaf(p4.z, hs[2], h4.z);
          hs[3] = fmaf(p4.w, hs[3], h4.w);
        }
      }
    }
    // Pass B: the rerun from the true start.
    float yv[kR];
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      const float4 c4 = *reinterpret_cast<const float4*>(&b.C[tw + r][4 * g]);
      const float Cv[4] = {c4.x, c4.y, c4.z, c4.w};
      float acc = 0.f;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        hs[j] = fmaf(a[r][j], hs[j], x[r][j]);
        acc = fmaf(hs[j], Cv[j], acc);
      }
      yv[r] = acc;
    }
    if (w == kS - 1) sm.carry[par ^ 1][lane] = make_float4(hs[0], hs[1], hs[2], hs[3]);
    group_reduce_scatter<kR>(yv, g);  // lane g: tokens 2g, 2g + 1 of the slice
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int t = k * kT + tw + 2 * g + i;
      if (t < L && cv) y[size_t(t) * p.y_stride + ch] = fmaf(Dw, ug[i], yv[i]) * gz[i];
    }
  }
  cp_async_wait<0>();
  if (w == kS - 1 && cv) {
    float* sp = state + size_t(ch) * kN + g * 4;
    sp[0] = hs[0], sp[1] = hs[1], sp[2] = hs[2], sp[3] = hs[3];
  }
}

}  // namespace

bool scan_v9_applies(const SelectiveScanParams& p, const float* u, const float* delta,
                     const float* B, const float* C, const float* z) {
  return p.d_state == kN && p.channels % 4 == 0 && aligned16(u, p.u_stride) &&
         aligned16(delta, p.delta_stride) && aligned16(B, p.B_stride) &&
         aligned16(C, p.C_stride) && (!p.has_z || aligned16(z, p.z_stride));
}

cudaError_t launch_scan_v9(const SelectiveScanParams& p, const float* u, const float* delta,
                           const void* A_log, const float* B, const float* C, const void* D,
                           const float* z, const void* dt_bias, float* ssm_state, float* y,
                           cudaStream_t s) {
  const size_t smem = sizeof(V9Smem);
  static const cudaError_t attr = cudaFuncSetAttribute(
      scan_v9_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  if (attr != cudaSuccess) return attr;
  scan_v9_kernel<<<ceil_div(p.channels, kCh), kThreads, smem, s>>>(
      p, u, delta, A_log, B, C, D, p.has_z ? z : u, dt_bias, ssm_state, y);
  return cudaGetLastError();
}

}  // namespace dm::cuda
