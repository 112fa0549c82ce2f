// The v7 prompt scan with specialised warps (configurations p, q, r, s, t, x, y, z of
// selective_scan_v7.cu's table; x is the default at d_inner 3072): scan_v7s_kernel and its
// launcher. The chunk staging, the slice scan and the sm_90 primitives are v7's
// (selective_scan_v7_device.cuh).
#include "selective_scan_v7_device.cuh"

namespace dm::cuda::v7 {
namespace {

// v7 with specialised warps (configurations p … t, z; x is the default at 3072): CB compute
// warps only load Δ and Δ·u, scan and write raw y; NH prep warps and NH gate warps do the rest,
// so the shared-memory accesses that v7's compute warps made as 4-way conflicting column reads
// and writes of the [T][CB] boxes become 16-byte row accesses (ncu at 1536 × 4K of u: L1 86%
// busy, 2.5-way store and 3.8-way load conflicts, 24 of ~100 load wavefronts per warp and chunk
// in the prep columns). Measured (configuration table below): the conflicts go (ncu), the time
// does not: u is issue- and latency-bound as much as L1-bound; x is 1–2% faster than u at 3072
// and 16K tokens, 3% slower at 1536 × 4K. With one prep and one gate warp (p) the block waits on
// those two warps (89.6 against u's 77.8 µs at 1536 × 4K), so NH 2 splits the tokens in halves.
//   prep warps (w = CB + h, h < NH): lane i takes token i + 32·h (NH 2; tokens i and i + 32 with
//            NH 1), four channels per 16-byte read of the delta and u boxes (a row read:
//            conflict-free), and writes Δ and Δ·u into the stage's per-channel rows dt / du
//            (token t at t ^ (4·bit 5 of t), so the compute lanes' 16-byte reads of slices s and
//            s + 4 fall in different banks); arrive on prepped[stage].
//   compute warps: wait on full and prepped, scan (v6's in-warp scan), reduce-scatter y over
//            the state groups (lane i ends with tokens 2i, 2i + 1) and write them as one 8-byte
//            store into yr[buffer][channel][token]; arrive on ydone.
//   gate warps (w = CB + NH + h): wait ydone, read yr (rows: conflict-free) and u, z of the stage
//            (16-byte row reads), gate (y + D·u)·SiLU(z) into the [T][CB] box with 16-byte
//            stores, free yr (yfree) and arrive on gated; the first gate warp's lane 0 then
//            stores the box by TMA and, the stage's reads being all done (every other warp's
//            come before ydone or gated), reloads the stage with chunk j + NS; boxfree tells the
//            gate warps when a box's store has read it.
// No empty barriers: the gated wait orders the reload after every read.
template <int CB, int NS, int NY>
struct V7sSmem {
  static_assert(CB % 4 == 0, "16-byte row accesses of four channels");
  static_assert((kT * CB * 4) % 1024 == 0, "boxes start 1 KB aligned (the swizzle's period)");
  struct Stage {
    float delta[kT][CB];
    float u[kT][CB];
    float z[kT][CB];
    float B[kSl][kBSL];  // as in V7Smem
    float C[kSl][kBSL];
    float dt[CB][kT];  // Δ per channel, token t at t ^ (4·bit 5 of t)
    float du[CB][kT];  // Δ·u, same order
  };
  Stage st[NS];
  float y[NY][kT][CB];   // gated y, the TMA store's box
  float yr[NY][CB][kT];  // raw y (C·h summed over the states) per channel
  uint64_t full[NS], prepped[NS], ydone[NY], yfree[NY], gated[NY], boxfree[NY];
};

template <int CB, int NS, int NY, int NH, int MINB, bool SWZ, int MODE>
__global__ void __launch_bounds__(32 * (CB + 2 * NH), MINB)
    scan_v7s_kernel(const __grid_constant__ V7Maps maps, SelectiveScanParams p,
                    const void* A_log, const void* Dp, const void* dt_bias, float* state) {
#if DM_V7_DEVICE
  using SM = V7sSmem<CB, NS, NY>;
  using Stage = typename SM::Stage;
  extern __shared__ unsigned char smem_raw[];
  static_assert(!SWZ || CB == 8 || CB == 16, "TMA swizzle: 32-byte (CB 8) or 64-byte (CB 16) rows");
  static_assert(NH == 1 || NH == 2, "one prep / gate warp for both token halves, or one per half");
  constexpr uint32_t kAlign = SWZ ? 1024 : 128;
  SM& sm = *reinterpret_cast<SM*>(smem_raw +
                                  ((kAlign - (smem_u32(smem_raw) & (kAlign - 1))) & (kAlign - 1)));
  const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
  const uint32_t c0 = blockIdx.x * CB;
  const int L = int(p.L);
  const bool has_z = p.has_z;
  const int nch = (L + kT - 1) / kT;
  // Float offset of (token t, the 16-byte piece holding box column col) in a [T][CB] box, with
  // the TMA's swizzle (as boxoff in scan_v7_kernel).
  auto boxoff = [](int t, int col) {
    if constexpr (SWZ && CB == 8) return t * 8 + (col ^ (((t >> 2) & 1) << 2));
    else if constexpr (SWZ && CB == 16) return t * 16 + (col ^ (((t >> 1) & 3) << 2));
    else return t * CB + col;
  };
  const uint32_t stage_bytes =
      uint32_t(kT * CB * 4 * (has_z ? 3 : 2) + 2 * kSl * (kR + 1) * kN * 4);
  // One thread: chunk k into its stage, as in scan_v7_kernel. A copy on purpose: one helper for
  // both kernels changed their machine code (register allocation) and timed 1-2% slower at 3072
  // (bench/results/h100_session6_2026-11-27.md, call 16).
  auto issue = [&](int k) {
    Stage& b = sm.st[k % NS];
    const uint32_t fb = smem_u32(&sm.full[k % NS]);
    mbar_arrive_tx(fb, stage_bytes);
    const int t0 = k * kT;
    tma_load_2d(smem_u32(&b.delta[0][0]), &maps.delta, int(c0), t0, fb);
    tma_load_2d(smem_u32(&b.u[0][0]), &maps.u, int(c0), t0, fb);
    if (has_z) tma_load_2d(smem_u32(&b.z[0][0]), &maps.z, int(c0), t0, fb);
    if (maps.use3d && t0 + kT + 1 <= L) {
      tma_load_3d(smem_u32(&b.B[0][0]), &maps.B3, 0, 0, k * kSl, fb);
      tma_load_3d(smem_u32(&b.C[0][0]), &maps.C3, 0, 0, k * kSl, fb);
    } else {
#pragma unroll 1
      for (int sl = 0; sl < kSl; ++sl) {
        const int row0 = t0 + sl * kR - (sl & 1);
        tma_load_2d(smem_u32(&b.B[sl][0]), &maps.B, 0, row0, fb);
        tma_load_2d(smem_u32(&b.C[sl][0]), &maps.C, 0, row0, fb);
      }
    }
  };
  if (tid == 0) {
#pragma unroll
    for (int i = 0; i < NS; ++i) {
      mbar_init(smem_u32(&sm.full[i]), 1);
      mbar_init(smem_u32(&sm.prepped[i]), 32 * NH);
    }
#pragma unroll
    for (int i = 0; i < NY; ++i) {
      mbar_init(smem_u32(&sm.ydone[i]), 32 * CB);
      mbar_init(smem_u32(&sm.yfree[i]), 32 * NH);
      mbar_init(smem_u32(&sm.gated[i]), 32 * NH);
      mbar_init(smem_u32(&sm.boxfree[i]), 1);
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();

  if (w >= CB) {  // aux warps: NH prep warps, then NH gate warps; warp h of a role takes token
                  // half h (NH 2) or both halves (NH 1) of every box row
    const int a = w - CB, h0 = NH == 2 ? a % NH : 0;
    constexpr int NHALF = 2 / NH;  // token halves per aux warp
    const bool is_prep = a < NH;
    if (a == 0 && lane == 0) {
#pragma unroll 1
      for (int k = 0; k < NS && k < nch; ++k) issue(k);
    }
    float coef[CB];  // the prep's dt_bias, the gate's D
#pragma unroll
    for (int c = 0; c < CB; ++c) {
      const uint32_t cc = c0 + c < p.channels ? c0 + c : 0;
      coef[c] = is_prep ? load_f(dt_bias, p.dt_bias_dtype, cc) : load_f(Dp, p.D_dtype, cc);
    }
    if (is_prep) {
#pragma unroll 1
      for (int i = 0; i < nch; ++i) {
        const int si = i % NS;
        Stage& b = sm.st[si];
        mbar_wait(smem_u32(&sm.full[si]), uint32_t(i / NS) & 1u);
        const int rem = L - i * kT;
#pragma unroll
        for (int hh = 0; hh < NHALF; ++hh) {
          const int t = lane + 32 * (hh + h0), pos = t ^ ((t >> 5) << 2);
#pragma unroll
          for (int c = 0; c < CB; c += 4) {
            const float4 d4 = *reinterpret_cast<const float4*>(&b.delta[0][0] + boxoff(t, c));
            const float4 u4 = *reinterpret_cast<const float4*>(&b.u[0][0] + boxoff(t, c));
            const float dv[4] = {d4.x, d4.y, d4.z, d4.w}, uv[4] = {u4.x, u4.y, u4.z, u4.w};
#pragma unroll
            for (int q = 0; q < 4; ++q) {
              const float sp = softplus_fast(dv[q] + coef[c + q]);
              const float d = t < rem ? sp : 0.f;
              b.dt[c + q][pos] = d;
              b.du[c + q][pos] = d * uv[q];
            }
          }
        }
        mbar_arrive(smem_u32(&sm.prepped[si]));
      }
      return;
    }
#pragma unroll 1
    for (int j = 0; j < nch; ++j) {  // the gate of chunk j
      const int si = j % NS, yb = j % NY;
      const Stage& b = sm.st[si];
      mbar_wait(smem_u32(&sm.ydone[yb]), uint32_t(j / NY) & 1u);
      mbar_wait(smem_u32(&sm.full[si]), uint32_t(j / NS) & 1u);  // (complete: for visibility)
      float o[NHALF][CB];
#pragma unroll
      for (int hh = 0; hh < NHALF; ++hh) {
        const int t = lane + 32 * (hh + h0);
#pragma unroll
        for (int c = 0; c < CB; c += 4) {
          const float4 u4 = *reinterpret_cast<const float4*>(&b.u[0][0] + boxoff(t, c));
          const float uv[4] = {u4.x, u4.y, u4.z, u4.w};
          float zv[4] = {1.f, 1.f, 1.f, 1.f};
          if (has_z) {
            const float4 z4 = *reinterpret_cast<const float4*>(&b.z[0][0] + boxoff(t, c));
            zv[0] = silu_fast(z4.x), zv[1] = silu_fast(z4.y);
            zv[2] = silu_fast(z4.z), zv[3] = silu_fast(z4.w);
          }
#pragma unroll
          for (int q = 0; q < 4; ++q)
            o[hh][c + q] = fmaf(coef[c + q], uv[q], sm.yr[yb][c + q][t]) * zv[q];
        }
      }
      mbar_arrive(smem_u32(&sm.yfree[yb]));  // this warp's reads of yr are done
      // The TMA store of chunk j − NY has read this y buffer.
      if (j >= NY) mbar_wait(smem_u32(&sm.boxfree[yb]), uint32_t(j / NY - 1) & 1u);
#pragma unroll
      for (int hh = 0; hh < NHALF; ++hh) {
        const int t = lane + 32 * (hh + h0);
#pragma unroll
        for (int c = 0; c < CB; c += 4)
          *reinterpret_cast<float4*>(&sm.y[yb][0][0] + boxoff(t, c)) =
              make_float4(o[hh][c], o[hh][c + 1], o[hh][c + 2], o[hh][c + 3]);
      }
      fence_proxy_async();
      mbar_arrive(smem_u32(&sm.gated[yb]));  // also: this warp's reads of the stage are done
      if (a == NH && lane == 0) {
        mbar_wait(smem_u32(&sm.gated[yb]), uint32_t(j / NY) & 1u);
        tma_store_2d(&maps.y, int(c0), j * kT, smem_u32(&sm.y[yb][0][0]));
        if (j + NS < nch) issue(j + NS);  // every read of the stage is done
        if (j >= 1) {  // the store of chunk j − 1 has read its buffer
          asm volatile("cp.async.bulk.wait_group.read 1;" ::: "memory");
          mbar_arrive(smem_u32(&sm.boxfree[(j - 1) % NY]));
        }
      }
      __syncwarp();
    }
    if (a == NH && lane == 0) bulk_wait_all0();
    return;
  }

  // A compute warp: channel c0 + w.
  const int s = lane >> 2, g = lane & 3;
  const uint32_t c = c0 + w;
  const bool cv = c < p.channels;
  const uint32_t cc = cv ? c : 0;
  float A2[1][4], h[1][4];
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    A2[0][j] = -expf(load_f(A_log, p.A_log_dtype, size_t(cc) * kN + g * 4 + j)) * kLog2e;
    h[0][j] = cv ? state[size_t(c) * kN + g * 4 + j] : 0.f;
  }
  const int bo2 = s * kBSL + (s & 1) * kN + g * 4, bo3 = s * (kR + 1) * kN + g * 4;
  // Slice s's tokens s·R + 4h' + i sit at s·R + 4·(h' ^ (s >> 2)) + i (the prep's order).
  const int sw = (s >> 2) << 2;
#pragma unroll 1
  for (int k = 0; k < nch; ++k) {
    const int si = k % NS, yb = k % NY;
    const Stage& b = sm.st[si];
    mbar_wait(smem_u32(&sm.full[si]), uint32_t(k / NS) & 1u);
    mbar_wait(smem_u32(&sm.prepped[si]), uint32_t(k / NS) & 1u);
    float dtv[1][kR], duv[1][kR];
#pragma unroll
    for (int r = 0; r < kR; r += 4) {
      const float4 d4 = *reinterpret_cast<const float4*>(&b.dt[w][s * kR + (r ^ sw)]);
      const float4 u4 = *reinterpret_cast<const float4*>(&b.du[w][s * kR + (r ^ sw)]);
      dtv[0][r] = d4.x, dtv[0][r + 1] = d4.y, dtv[0][r + 2] = d4.z, dtv[0][r + 3] = d4.w;
      duv[0][r] = u4.x, duv[0][r + 1] = u4.y, duv[0][r + 2] = u4.z, duv[0][r + 3] = u4.w;
    }
    const bool f3 = maps.use3d && k * kT + kT + 1 <= L;
    const int bo = f3 ? bo3 : bo2;
    float yv[1][kR];
    warp_chunk_scan_nc<kR, MODE, 1>(dtv, duv, &b.B[0][0] + bo, &b.C[0][0] + bo, A2, h, s, g, yv);
    group_reduce_scatter(yv[0], g);  // lane i: tokens 2i, 2i + 1 of the chunk
    if (k >= NY) mbar_wait(smem_u32(&sm.yfree[yb]), uint32_t(k / NY - 1) & 1u);
    *reinterpret_cast<float2*>(&sm.yr[yb][w][2 * lane]) = make_float2(yv[0][0], yv[0][1]);
    mbar_arrive(smem_u32(&sm.ydone[yb]));
  }
  if (cv && s == 0) {
#pragma unroll
    for (int j = 0; j < 4; ++j) state[size_t(c) * kN + g * 4 + j] = h[0][j];
  }
#endif
}

// scan_v7s_kernel: CB compute warps + the prep and gate warps; B and C as 3D boxes.
template <int CB, int NS, int NY, int NH, int MINB, bool SWZ>
cudaError_t launch_s(const SelectiveScanParams& p, const float* u, const float* delta,
                     const void* A_log, const float* B, const float* C, const void* D,
                     const float* z, const void* dt_bias, float* ssm_state, float* y,
                     cudaStream_t s) {
  V7Maps m;
  if (!encode_maps(m, p, CB, SWZ, true, u, delta, B, C, z, y)) return cudaErrorNotSupported;
  const size_t smem = sizeof(V7sSmem<CB, NS, NY>) + (SWZ ? 1024 : 128);  // + room to align
  auto kern = scan_v7s_kernel<CB, NS, NY, NH, MINB, SWZ, kScanZeroDone>;
  static const cudaError_t attr =
      cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  if (attr != cudaSuccess) return attr;
  kern<<<ceil_div(p.channels, CB), 32 * (CB + 2 * NH), smem, s>>>(m, p, A_log, D, dt_bias,
                                                                   ssm_state);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_scan_v7s(char cfg, const SelectiveScanParams& p, const float* u,
                            const float* delta, const void* A_log, const float* B, const float* C,
                            const void* D, const float* z, const void* dt_bias, float* ssm_state,
                            float* y, cudaStream_t s) {
  switch (cfg) {
    // CB compute warps, NS stages, NY y buffers, NH prep and NH gate warps, blocks per SM,
    // swizzled boxes.
#define DM_V7S(n, cb, ns, ny, nh, mb, swz)                                                 \
  case n:                                                                                  \
    return launch_s<cb, ns, ny, nh, mb, swz>(p, u, delta, A_log, B, C, D, z, dt_bias,      \
                                             ssm_state, y, s);
    DM_V7S('p', 12, 4, 4, 1, 1, false)
    DM_V7S('x', 12, 4, 4, 2, 1, false)
    DM_V7S('q', 8, 4, 4, 1, 2, true)
    DM_V7S('r', 16, 4, 4, 1, 1, true)
    DM_V7S('s', 8, 4, 4, 2, 1, true)
    DM_V7S('y', 16, 4, 4, 2, 1, true)
    DM_V7S('z', 12, 3, 3, 2, 1, false)
    DM_V7S('t', 12, 5, 4, 2, 1, false)
#undef DM_V7S
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace dm::cuda::v7
