// Device helpers shared by the prompt-scan kernels (selective_scan.cu, selective_scan_v6.cu,
// selective_scan_v7.cu): the MUFU-only activations, the cp.async staging primitives, and the
// in-warp chunk scan of v6 and v7.
#pragma once

#include <cstdint>

#include "common.cuh"

namespace dm::cuda::scan {

constexpr float kLog2e = 1.4426950408889634f;
constexpr unsigned kFull = 0xffffffffu;
constexpr int kN = 16;  // d_state of the fast paths

__device__ __forceinline__ float ex2_approx(float x) {
  float r;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
  return r;
}
__device__ __forceinline__ float lg2_approx(float x) {
  float r;
  asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
  return r;
}
__device__ __forceinline__ float rcp_approx(float x) {
  float r;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
  return r;
}
// softplus with threshold 20 (log1p(e^x) = ln2·log2(1 + 2^(x·log2e))); SiLU via ex2 + rcp.
__device__ __forceinline__ float softplus_fast(float x) {
  return x > 20.f ? x : 0.6931471805599453f * lg2_approx(1.f + ex2_approx(x * kLog2e));
}
__device__ __forceinline__ float silu_fast(float x) {
  return x * rcp_approx(1.f + ex2_approx(-x * kLog2e));
}

// cp.async with a zero fill when !valid (src-size 0: nothing is read, the 16 bytes become 0).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async4(void* smem, const void* gmem, bool valid) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(s), "l"(gmem),
               "r"(valid ? 4 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

inline bool aligned16(const void* ptr, uint32_t stride) {
  return reinterpret_cast<uintptr_t>(ptr) % 16 == 0 && stride % 4 == 0;
}

// One level of the reduce-scatter of n = 2·OFF partial sums over lanes that differ in bit OFF:
// the lane with that bit set keeps the upper half. After the levels OFF = G/2 .. 1, lane g of a
// G-lane group holds the full sum of value g in yv[0].
template <int OFF, int N>
__device__ __forceinline__ void reduce_scatter(float (&yv)[N], int g) {
  const bool hi = g & OFF;
#pragma unroll
  for (int i = 0; i < OFF; ++i) {
    const float lo_v = yv[i], hi_v = yv[i + OFF];
    const float keep = hi ? hi_v : lo_v, send = hi ? lo_v : hi_v;
    yv[i] = keep + __shfl_xor_sync(kFull, send, OFF);
  }
  if constexpr (OFF > 1) reduce_scatter<OFF / 2>(yv, g);
}

// The in-warp scan of one chunk of kSlices·R tokens of one channel (v6 and v7; the design is in
// selective_scan_v6.cu's file comment). Lane = 4·s + g: slice s (tokens s·R .. s·R + R − 1 of
// the chunk), states 4g .. 4g + 3. dtv / duv: Δ and Δ·u of the slice's tokens; Bs / Cs: B and C
// of the slice's first token at this lane's 4 states, row r at + r·kN (shared memory); A2:
// A·log2(e) of the 4 states; h: the carried state (the same in every slice), replaced by the
// chunk's end state. yv[r]: Σ over this lane's 4 states of C·h at token r, before the reduction
// over the group (group_reduce_scatter). LEAN: the slice scan without predicated moves.
constexpr int kSlices = 8;  // time slices per warp (lanes = 8 slices × 4 state groups)

// How the slice scan treats the slices below the shuffle distance d (they have no partner):
//   kScanPredicated: the combine is skipped (predicated or branched, the compiler's choice);
//   kScanSelect:     the partner is replaced by the identity map (1, 0) with two selects (LEAN);
//   kScanZeroDone:   a slice whose map already starts at the chunk's start (slice 0 once the
//                    carry is folded in, slices < 2d after level d) gets decay 0, so combining it
//                    with any finite partner (the shuffle returns its own values) changes
//                    nothing: H = 0·Hq + H, P = 0·Pq. No selects per level, one per state to zero
//                    slice 0's decay. Every H is the value kScanSelect computes (while the states
//                    are finite): a zeroed decay only multiplies into decays of slices that are
//                    complete too, and no H update reads those.
constexpr int kScanPredicated = 0, kScanSelect = 1, kScanZeroDone = 2;

// Δ and Δ·u of slice s's R tokens from a channel's transposed rows pt / pu (16-byte aligned).
template <int R>
__device__ __forceinline__ void load_slice(const float* pt, const float* pu, int s,
                                           float (&dtv)[R], float (&duv)[R]) {
#pragma unroll
  for (int r = 0; r < R; r += 4) {
    const float4 d4 = *reinterpret_cast<const float4*>(pt + s * R + r);
    const float4 u4 = *reinterpret_cast<const float4*>(pu + s * R + r);
    dtv[r] = d4.x, dtv[r + 1] = d4.y, dtv[r + 2] = d4.z, dtv[r + 3] = d4.w;
    duv[r] = u4.x, duv[r + 1] = u4.y, duv[r + 2] = u4.z, duv[r + 3] = u4.w;
  }
}

// NC channels at once (v7's two-channel configurations): the channels share each B and C
// read (one 16-byte shared load feeds NC channels' elements), everything else is per channel:
// dtv / duv / A2 / h / yv carry a leading channel index. NC = 1 is warp_chunk_scan.
template <int R, int MODE, int NC>
__device__ __forceinline__ void warp_chunk_scan_nc(const float (&dtv)[NC][R],
                                                   const float (&duv)[NC][R], const float* Bs,
                                                   const float* Cs, const float (&A2)[NC][4],
                                                   float (&h)[NC][4], int s, int g,
                                                   float (&yv)[NC][R]) {
  // Local: a = exp2(Δ·A·log2e) (one ex2 per element, kept), x = Δ·B·u (kept), the slice run
  // from a zero state: end state H.
  float a[NC][R][4], x[NC][R][4], Pp[NC][4], H[NC][4];
  float dsum[NC];
#pragma unroll
  for (int q = 0; q < NC; ++q) dsum[q] = 0.f;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const float4 b4 = *reinterpret_cast<const float4*>(Bs + r * kN);
    const float Bv[4] = {b4.x, b4.y, b4.z, b4.w};
#pragma unroll
    for (int q = 0; q < NC; ++q) {
      dsum[q] += dtv[q][r];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        a[q][r][j] = ex2_approx(dtv[q][r] * A2[q][j]);
        x[q][r][j] = Bv[j] * duv[q][r];
        H[q][j] = r == 0 ? x[q][r][j] : fmaf(a[q][r][j], H[q][j], x[q][r][j]);
      }
    }
  }
  // The slice's decay product as one exp of the summed Δ: 4 MUFU instead of 4·(R−1) FMULs
  // (the kernels are issue-bound; the MUFU pipe has room).
#pragma unroll
  for (int q = 0; q < NC; ++q)
#pragma unroll
    for (int j = 0; j < 4; ++j) Pp[q][j] = ex2_approx(dsum[q] * A2[q][j]);
  // Slice 0 starts from the carried state; then the inclusive scan over slices.
#pragma unroll
  for (int q = 0; q < NC; ++q)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (s == 0) H[q][j] = fmaf(Pp[q][j], h[q][j], H[q][j]);
      if constexpr (MODE == kScanZeroDone) Pp[q][j] = s == 0 ? 0.f : Pp[q][j];
    }
#pragma unroll
  for (int d = 1; d < kSlices; d *= 2) {
#pragma unroll
    for (int q = 0; q < NC; ++q)
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        float Hq = __shfl_up_sync(kFull, H[q][j], 4 * d);
        float Pq = __shfl_up_sync(kFull, Pp[q][j], 4 * d);
        if constexpr (MODE == kScanZeroDone) {
          H[q][j] = fmaf(Pp[q][j], Hq, H[q][j]);
          Pp[q][j] *= Pq;
        } else if constexpr (MODE == kScanSelect) {
          // Below slice d the partner is the identity map (1, 0): no predicated moves.
          Hq = s >= d ? Hq : 0.f;
          Pq = s >= d ? Pq : 1.f;
          H[q][j] = fmaf(Pp[q][j], Hq, H[q][j]);
          Pp[q][j] *= Pq;
        } else if (s >= d) {
          H[q][j] = fmaf(Pp[q][j], Hq, H[q][j]);
          Pp[q][j] *= Pq;
        }
      }
  }
  // H: this slice's true end state. Start = the previous slice's end; carry = slice 7's end.
  float hs[NC][4];
#pragma unroll
  for (int q = 0; q < NC; ++q)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float prev = __shfl_up_sync(kFull, H[q][j], 4);
      hs[q][j] = s == 0 ? h[q][j] : prev;
      h[q][j] = __shfl_sync(kFull, H[q][j], 4 * (kSlices - 1) + g);
    }
  // Rerun from the true start out of registers (2 FMAs per element, no second exp).
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const float4 c4 = *reinterpret_cast<const float4*>(Cs + r * kN);
    const float Cv[4] = {c4.x, c4.y, c4.z, c4.w};
#pragma unroll
    for (int q = 0; q < NC; ++q) {
      float acc = 0.f;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        hs[q][j] = fmaf(a[q][r][j], hs[q][j], x[q][r][j]);
        acc = fmaf(hs[q][j], Cv[j], acc);
      }
      yv[q][r] = acc;
    }
  }
}

// One channel (v6, v7's one-channel configurations).
template <int R, bool LEAN>
__device__ __forceinline__ void warp_chunk_scan(const float (&dtv)[R], const float (&duv)[R],
                                                const float* Bs, const float* Cs,
                                                const float (&A2)[4], float (&h)[4], int s, int g,
                                                float (&yv)[R]) {
  constexpr int kMode = LEAN ? kScanSelect : kScanPredicated;
  warp_chunk_scan_nc<R, kMode, 1>(reinterpret_cast<const float(&)[1][R]>(dtv),
                                  reinterpret_cast<const float(&)[1][R]>(duv), Bs, Cs,
                                  reinterpret_cast<const float(&)[1][4]>(A2),
                                  reinterpret_cast<float(&)[1][4]>(h), s, g,
                                  reinterpret_cast<float(&)[1][R]>(yv));
}

// The sums of warp_chunk_scan's yv over the 4 state-group lanes of a slice, reduce-scattered:
// lane g ends with tokens g·R/4 .. g·R/4 + R/4 − 1 of its slice in yv[0 .. R/4).
template <int R>
__device__ __forceinline__ void group_reduce_scatter(float (&yv)[R], int g) {
#pragma unroll
  for (int off = 2; off >= 1; off >>= 1) {
    const bool hi = g & off;
    const int n = off * R / 4;  // values kept after this level
#pragma unroll
    for (int i = 0; i < n; ++i) {
      const float lo_v = yv[i], hi_v = yv[i + n];
      const float keep = hi ? hi_v : lo_v, send = hi ? lo_v : hi_v;
      yv[i] = keep + __shfl_xor_sync(kFull, send, off);
    }
  }
}

}  // namespace dm::cuda::scan
