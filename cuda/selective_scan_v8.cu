// v8: the prompt scan (d_state 16) with lanes = channels × state groups and warps = time
// segments, meant to let one shared-memory read of B or C serve several channels. Measured
// slower than v7 at every width; not a default (the numbers and why: scan_v8_default below).
//
// Why: v7 (selective_scan_v7.cu, v7s) gives each channel a warp (lanes = 8 time slices × 4
// state groups) and scans the slices with shuffles: every compute warp reads all of a chunk's B
// and C (64 wavefronts per warp and chunk) and spends ~34 shuffles a chunk, ~14 instructions per
// (token, channel, state) against ~6 of arithmetic; it is bound by issue and L1 at 43-48% of the
// bandwidth floor (cuda/README.md, session 6).
//
// Here a chunk (T = 64 tokens) is cut into 8 segments of R = 8 tokens (v7's slices, so v7's
// staging and its B / C layout carry over). A compute warp holds 4 channels × 2 adjacent
// segments × 4 state groups: lane = g | cq << 2 | sp << 4 (state group g: states 4g .. 4g + 3,
// channel 4q + cq of the block, segment 2i + sp, for warp w = 4q + i). The 4 warps of a channel
// quad q are a team; teams never wait for each other.
//   pass 1:  each lane walks its segment's 8 tokens from a zero state: a = ex2(Δ·A·log2e),
//            x = Δu·B kept in registers (8 × 4 × 2), the segment's end state H, its decay
//            P = ex2(A·log2e·ΣΔ) (one ex2 per state instead of a running product). B comes as
//            one 16-byte read per token that the 16 lanes of a segment share (the two segments of
//            a warp sit in different bank halves; ncu still counts ~4 wavefronts per such read).
//   meet:    (P, H) go to shared memory (double-buffered over chunks), one named barrier per team
//            and chunk; a lane folds the chunk's carry-in (written by segment 7's lanes of the
//            chunk before) through segments 0 .. s − 1 into its true start state; segment 7's
//            lanes write the chunk's end state (the next carry). PAIR: a warp's two segments
//            are combined by shuffles first and the fold runs over the 4 segment pairs (fewer
//            shared reads; as many instructions: nvdisasm, 360 a chunk either way when UNR).
//            MB: mbarriers instead of the team barrier (warp i waits for the carry and pairs
//            0 .. i − 1 only; three P / H / carry buffers).
//   pass 2:  rerun from the true start out of registers (2 FMAs per element), y = Σ C·h over
//            the lane's 4 states, reduce-scattered over the 4 state-group lanes (lane g ends with
//            tokens 2g, 2g + 1 of its segment) into the raw-y rows yr.
// Prep and gate warps as v7s (selective_scan_v7s.cu): NH prep warps read delta / u boxes with
// 16-byte row reads and write Δ = softplus(delta + dt_bias) and Δ·u into per-channel rows; NH
// gate warps gate (y + D·u)·SiLU(z) into the [T][CB] box, store it by TMA and reload the stage.
// The per-channel rows (dt, du, yr) put token t of box column col at t ^ xo(col), xo = 0, 4, 16,
// 20 for col & 3 = 0 .. 3, so the 8 (channel, segment) 16-byte reads of a warp hit 8 different
// bank quads.
// Tokens past L have Δ = 0 and zero B (TMA fill): decay 1, input 0, the state is left alone.
#include "selective_scan_v7.cuh"
#include "selective_scan_v7_device.cuh"
#include "selective_scan_v8.cuh"

namespace dm::cuda {
namespace v8 {
namespace {

using namespace v7;

static_assert(kSl == 8 && kR == 8, "8 segments of 8 tokens: v7's slices");

template <int CB, int NS, int NY, bool MB>
struct V8Smem {
  static constexpr int kPB = MB ? 3 : 2;  // P / H / carry buffers (chunk k in [k % kPB])
  static_assert(CB % 4 == 0, "channel quads; 16-byte row accesses of four channels");
  struct Stage {
    float delta[kT][CB];
    float u[kT][CB];
    float z[kT][CB];
    float B[kSl][kBSL];  // as in V7Smem: 3D box or per-segment 2D boxes
    float C[kSl][kBSL];
    float dt[CB][kT];  // Δ per channel, token t at t ^ xo_of(channel)
    float du[CB][kT];  // Δ·u, same order
  };
  Stage st[NS];
  float y[NY][kT][CB];       // gated y, the TMA store's box
  float yr[NY][CB][kT];      // raw y (C·h summed over the states), token t at t ^ xo_of(channel)
  float P[kPB][kSl][CB][kN];  // segment (PAIR: segment pair) decays of chunk k
  float H[kPB][kSl][CB][kN];  // segment (pair) end states from a zero start
  float carry[kPB][CB][kN];   // chunk k's start state
  uint64_t full[NS], prepped[NS], ydone[NY], yfree[NY], gated[NY], boxfree[NY];
  // MB: pair j < 3 of team q published (warp 4q + j arrives), the carry of team q written.
  uint64_t ready[3][CB / 4][3], cready[3][CB / 4];
};

// A compile-time int for the unrolled chunk loop (std::integral_constant's conversion is host-only).
template <int V>
struct Ic {
  __device__ constexpr operator int() const { return V; }
};

#if DM_V7_DEVICE
// The XOR of token positions in the per-channel rows of box column col (see the file comment).
__device__ constexpr int xo_of(int col) { return 4 * ((col & 1) | ((col & 2) << 1)); }

__device__ __forceinline__ void named_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(threads) : "memory");
}
#endif

template <int CB, int NS, int NY, int NH, int MINB, bool SWZ, bool PAIR, bool UNR, bool MB>
__global__ void __launch_bounds__(32 * (CB + 2 * NH), MINB)
    scan_v8_kernel(const __grid_constant__ V7Maps maps, SelectiveScanParams p,
                   const void* A_log, const void* Dp, const void* dt_bias, float* state) {
#if DM_V7_DEVICE
  using SM = V8Smem<CB, NS, NY, MB>;
  static_assert(!MB || PAIR, "the mbarrier meet publishes segment pairs");
  using Stage = typename SM::Stage;
  extern __shared__ unsigned char smem_raw[];
  static_assert(!SWZ || CB == 8 || CB == 16, "TMA swizzle: 32-byte (CB 8) or 64-byte (CB 16) rows");
  static_assert(NH == 1 || NH == 2, "one prep / gate warp for both token halves, or one per half");
  static_assert(CB / 4 <= 15, "one named barrier per team (ids 1 .. 15)");
  constexpr uint32_t kAlign = SWZ ? 1024 : 128;
  SM& sm = *reinterpret_cast<SM*>(smem_raw +
                                  ((kAlign - (smem_u32(smem_raw) & (kAlign - 1))) & (kAlign - 1)));
  const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
  const uint32_t c0 = blockIdx.x * CB;
  const int L = int(p.L);
  const bool has_z = p.has_z;
  const int nch = (L + kT - 1) / kT;
  auto boxoff = [](int t, int col) {  // as in scan_v7s_kernel
    if constexpr (SWZ && CB == 8) return t * 8 + (col ^ (((t >> 2) & 1) << 2));
    else if constexpr (SWZ && CB == 16) return t * 16 + (col ^ (((t >> 1) & 3) << 2));
    else return t * CB + col;
  };
  const uint32_t stage_bytes =
      uint32_t(kT * CB * 4 * (has_z ? 3 : 2) + 2 * kSl * (kR + 1) * kN * 4);
  auto issue = [&](int k) {  // one thread: chunk k into its stage, as in scan_v7s_kernel
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
    if constexpr (MB) {
#pragma unroll
      for (int b = 0; b < 3; ++b)
#pragma unroll
        for (int t = 0; t < CB / 4; ++t) {
          mbar_init(smem_u32(&sm.cready[b][t]), 32);
#pragma unroll
          for (int j = 0; j < 3; ++j) mbar_init(smem_u32(&sm.ready[b][t][j]), 32);
        }
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();

  if (w >= CB) {  // aux warps (scan_v7s_kernel's): NH prep warps, then NH gate warps
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
          const int t = lane + 32 * (hh + h0);
#pragma unroll
          for (int c = 0; c < CB; c += 4) {
            const float4 d4 = *reinterpret_cast<const float4*>(&b.delta[0][0] + boxoff(t, c));
            const float4 u4 = *reinterpret_cast<const float4*>(&b.u[0][0] + boxoff(t, c));
            const float dv[4] = {d4.x, d4.y, d4.z, d4.w}, uv[4] = {u4.x, u4.y, u4.z, u4.w};
#pragma unroll
            for (int q = 0; q < 4; ++q) {
              const float sp = softplus_fast(dv[q] + coef[c + q]);
              const float d = t < rem ? sp : 0.f;
              const int pos = t ^ xo_of(c + q);
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
            o[hh][c + q] =
                fmaf(coef[c + q], uv[q], sm.yr[yb][c + q][t ^ xo_of(c + q)]) * zv[q];
        }
      }
      mbar_arrive(smem_u32(&sm.yfree[yb]));  // this warp's reads of yr are done
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

  // A compute warp: team q (box columns 4q .. 4q + 3), segments 2i, 2i + 1.
  const int q = w >> 2, i = w & 3;
  const int g = lane & 3, cq = (lane >> 2) & 3, sp = lane >> 4;
  const int s = 2 * i + sp, ch = 4 * q + cq;
  const uint32_t c = c0 + ch;
  const bool cv = c < p.channels;
  const uint32_t cc = cv ? c : 0;
  float A2[4], hend[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    A2[j] = -expf(load_f(A_log, p.A_log_dtype, size_t(cc) * kN + g * 4 + j)) * kLog2e;
    hend[j] = cv ? state[size_t(c) * kN + g * 4 + j] : 0.f;
  }
  if (s == kSl - 1)
    *reinterpret_cast<float4*>(&sm.carry[0][ch][g * 4]) =
        make_float4(hend[0], hend[1], hend[2], hend[3]);
  if (MB && i == 3) mbar_arrive(smem_u32(&sm.cready[0][q]));
  const int xo = xo_of(cq);
  const int bo2 = s * kBSL + (s & 1) * kN + g * 4, bo3 = s * (kR + 1) * kN + g * 4;
  // Chunk k, whose stage (and y buffer) is si_ and whose P / H / carry buffer is pb_: ints, or
  // Ic constants where the loop is unrolled (UNR), so the addresses fold into
  // immediates (a loop of ~420 instructions a chunk had ~100 of integer address arithmetic).
  // MB: b3 = k % 3 (the P / H / carry buffer), ph3 = (k / 3) & 1 (its mbarriers' phase).
  auto chunk = [&](const int k, const auto si_, const auto pb_, const int b3, const int ph3) {
    const int si = si_, yb = UNR ? si : k % NY, pb = MB ? b3 : int(pb_);
    const Stage& b = sm.st[si];
    mbar_wait(smem_u32(&sm.full[si]), uint32_t(k / NS) & 1u);
    mbar_wait(smem_u32(&sm.prepped[si]), uint32_t(k / NS) & 1u);
    float dtv[kR], duv[kR];
#pragma unroll
    for (int r = 0; r < kR; r += 4) {
      const int t = (s * kR + r) ^ xo;
      const float4 d4 = *reinterpret_cast<const float4*>(&b.dt[ch][t]);
      const float4 u4 = *reinterpret_cast<const float4*>(&b.du[ch][t]);
      dtv[r] = d4.x, dtv[r + 1] = d4.y, dtv[r + 2] = d4.z, dtv[r + 3] = d4.w;
      duv[r] = u4.x, duv[r + 1] = u4.y, duv[r + 2] = u4.z, duv[r + 3] = u4.w;
    }
    const bool f3 = maps.use3d && k * kT + kT + 1 <= L;
    const float* Bs = &b.B[0][0] + (f3 ? bo3 : bo2);
    const float* Cs = &b.C[0][0] + (f3 ? bo3 : bo2);
    // Pass 1: the segment from a zero state.
    float a[kR][4], x[kR][4], H[4], Pp[4], dsum = 0.f;
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      const float4 b4 = *reinterpret_cast<const float4*>(Bs + r * kN);
      const float Bv[4] = {b4.x, b4.y, b4.z, b4.w};
      dsum += dtv[r];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        a[r][j] = ex2_approx(dtv[r] * A2[j]);
        x[r][j] = Bv[j] * duv[r];
        H[j] = r == 0 ? x[r][j] : fmaf(a[r][j], H[j], x[r][j]);
      }
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) Pp[j] = ex2_approx(dsum * A2[j]);
    float hs[4];
    if constexpr (!PAIR) {
      *reinterpret_cast<float4*>(&sm.P[pb][s][ch][g * 4]) =
          make_float4(Pp[0], Pp[1], Pp[2], Pp[3]);
      *reinterpret_cast<float4*>(&sm.H[pb][s][ch][g * 4]) = make_float4(H[0], H[1], H[2], H[3]);
      named_sync(1 + q, 128);
      // The true start: the carry folded through segments 0 .. s − 1 (the warp reads 0 .. 2i).
      const float4 c4 = *reinterpret_cast<const float4*>(&sm.carry[pb][ch][g * 4]);
      hs[0] = c4.x, hs[1] = c4.y, hs[2] = c4.z, hs[3] = c4.w;
#pragma unroll
      for (int sj = 0; sj < kSl - 1; ++sj) {
        if (sj <= 2 * i) {
          const float4 p4 = *reinterpret_cast<const float4*>(&sm.P[pb][sj][ch][g * 4]);
          const float4 h4 = *reinterpret_cast<const float4*>(&sm.H[pb][sj][ch][g * 4]);
          if (sj < s) {
            hs[0] = fmaf(p4.x, hs[0], h4.x), hs[1] = fmaf(p4.y, hs[1], h4.y);
            hs[2] = fmaf(p4.z, hs[2], h4.z), hs[3] = fmaf(p4.w, hs[3], h4.w);
          }
        }
      }
    } else {
      // The warp's two segments combined in registers first (segment 2i's map comes from lane
      // ^ 16); the odd lanes publish the pair's map in P / H [pb][i]; the fold then runs over
      // the pairs 0 .. i − 1 (warp-uniform), and the odd segment applies its partner's map.
      float P0[4], H0[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        P0[j] = __shfl_xor_sync(kFull, Pp[j], 16);
        H0[j] = __shfl_xor_sync(kFull, H[j], 16);
      }
      if (sp == 1) {
        *reinterpret_cast<float4*>(&sm.P[pb][i][ch][g * 4]) =
            make_float4(Pp[0] * P0[0], Pp[1] * P0[1], Pp[2] * P0[2], Pp[3] * P0[3]);
        *reinterpret_cast<float4*>(&sm.H[pb][i][ch][g * 4]) =
            make_float4(fmaf(Pp[0], H0[0], H[0]), fmaf(Pp[1], H0[1], H[1]),
                        fmaf(Pp[2], H0[2], H[2]), fmaf(Pp[3], H0[3], H[3]));
      }
      if constexpr (MB) {  // no team barrier: wait for the carry and the pairs before only
        if (i < 3) mbar_arrive(smem_u32(&sm.ready[pb][q][i]));
        mbar_wait(smem_u32(&sm.cready[pb][q]), uint32_t(ph3));
      } else {
        named_sync(1 + q, 128);
      }
      const float4 c4 = *reinterpret_cast<const float4*>(&sm.carry[pb][ch][g * 4]);
      hs[0] = c4.x, hs[1] = c4.y, hs[2] = c4.z, hs[3] = c4.w;
#pragma unroll
      for (int pj = 0; pj < kSl / 2 - 1; ++pj) {
        if (pj < i) {
          if constexpr (MB) mbar_wait(smem_u32(&sm.ready[pb][q][pj]), uint32_t(ph3));
          const float4 p4 = *reinterpret_cast<const float4*>(&sm.P[pb][pj][ch][g * 4]);
          const float4 h4 = *reinterpret_cast<const float4*>(&sm.H[pb][pj][ch][g * 4]);
          hs[0] = fmaf(p4.x, hs[0], h4.x), hs[1] = fmaf(p4.y, hs[1], h4.y);
          hs[2] = fmaf(p4.z, hs[2], h4.z), hs[3] = fmaf(p4.w, hs[3], h4.w);
        }
      }
      if (sp == 1) {
#pragma unroll
        for (int j = 0; j < 4; ++j) hs[j] = fmaf(P0[j], hs[j], H0[j]);
      }
    }
    const int nb = MB ? (pb == 2 ? 0 : pb + 1) : pb ^ 1;
    if (s == kSl - 1) {  // the chunk's end state: the next chunk's carry
#pragma unroll
      for (int j = 0; j < 4; ++j) hend[j] = fmaf(Pp[j], hs[j], H[j]);
      *reinterpret_cast<float4*>(&sm.carry[nb][ch][g * 4]) =
          make_float4(hend[0], hend[1], hend[2], hend[3]);
    }
    if (MB && i == 3) mbar_arrive(smem_u32(&sm.cready[nb][q]));
    // Pass 2: rerun from the true start out of registers.
    float yv[kR];
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      const float4 c4 = *reinterpret_cast<const float4*>(Cs + r * kN);
      const float Cv[4] = {c4.x, c4.y, c4.z, c4.w};
      float acc = 0.f;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        hs[j] = fmaf(a[r][j], hs[j], x[r][j]);
        acc = fmaf(hs[j], Cv[j], acc);
      }
      yv[r] = acc;
    }
    group_reduce_scatter(yv, g);  // lane g: tokens 2g, 2g + 1 of segment s
    if (k >= NY) mbar_wait(smem_u32(&sm.yfree[yb]), uint32_t(k / NY - 1) & 1u);
    *reinterpret_cast<float2*>(&sm.yr[yb][ch][(s * kR + 2 * g) ^ xo]) = make_float2(yv[0], yv[1]);
    mbar_arrive(smem_u32(&sm.ydone[yb]));
  };
  if constexpr (UNR) {
    static_assert(NS == 4 && NY == 4, "unrolled over the 4 stages");
    int b3 = 0, ph3 = 0;
    auto next3 = [&] {
      if (++b3 == 3) b3 = 0, ph3 ^= 1;
    };
#pragma unroll 1
    for (int k = 0; k < nch; k += 4) {
      chunk(k, Ic<0>{}, Ic<0>{}, b3, ph3);
      next3();
      if (k + 1 < nch) chunk(k + 1, Ic<1>{}, Ic<1>{}, b3, ph3);
      next3();
      if (k + 2 < nch) chunk(k + 2, Ic<2>{}, Ic<0>{}, b3, ph3);
      next3();
      if (k + 3 < nch) chunk(k + 3, Ic<3>{}, Ic<1>{}, b3, ph3);
      next3();
    }
  } else {
    static_assert(!MB, "MB: with UNR only");
#pragma unroll 1
    for (int k = 0; k < nch; ++k) chunk(k, k % NS, k & 1, 0, 0);
  }
  if (cv && s == kSl - 1) {
#pragma unroll
    for (int j = 0; j < 4; ++j) state[size_t(c) * kN + g * 4 + j] = hend[j];
  }
#endif
}

template <int CB, int NS, int NY, int NH, int MINB, bool SWZ, bool PAIR, bool UNR, bool MB>
cudaError_t launch(const SelectiveScanParams& p, const float* u, const float* delta,
                   const void* A_log, const float* B, const float* C, const void* D,
                   const float* z, const void* dt_bias, float* ssm_state, float* y,
                   cudaStream_t s) {
  V7Maps m;
  if (!encode_maps(m, p, CB, SWZ, true, u, delta, B, C, z, y)) return cudaErrorNotSupported;
  const size_t smem = sizeof(V8Smem<CB, NS, NY, MB>) + (SWZ ? 1024 : 128);  // + room to align
  auto kern = scan_v8_kernel<CB, NS, NY, NH, MINB, SWZ, PAIR, UNR, MB>;
  static const cudaError_t attr =
      cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  if (attr != cudaSuccess) return attr;
  kern<<<ceil_div(p.channels, CB), 32 * (CB + 2 * NH), smem, s>>>(m, p, A_log, D, dt_bias,
                                                                  ssm_state);
  return cudaGetLastError();
}

}  // namespace
}  // namespace v8

// Measured slower than the v7 default at every width (H100 80GB HBM3, session 7, three device
// calls, the default and v7u in each; bench/results/h100_session7_scan_2026-11-27.md), µs at
// L = 4K / 16K, the best v8 (k) against the default in the same runs (calls 2 and 3):
//   1536: 87.0–87.5 / 313.0–315.4 against 77.2–78.2 / 285.1–287.7
//   3072: 165.3–167.4 / 618.6–623.5 against 147.8–148.4 / 552.4–557.3
//   5120: 319.6–322.5 / 1221.1–1230.3 against 250.6–252.6 / 967.5–975.5
// (2048: j 120.7 / 466.6 against 101.3 / 381.0; 4096: k, i 239–245 / 919–933 against 196–199 /
// 753–760.) Why (ncu, nvdisasm; cuda/README.md, session 7): the shared-load wavefronts per warp
// and chunk stayed at v7's ~100 (a 16-byte load costs 4 wavefronts however many lanes share its
// address: the B / C "broadcast" saves nothing), the instructions at v7's 42–47 M, and the
// warps now also wait for each other (team barrier, or mbarriers in p / q). So v7 stays the
// default everywhere.
char scan_v8_default(uint32_t) { return 0; }

cudaError_t launch_scan_v8(char cfg, const SelectiveScanParams& p, const float* u,
                           const float* delta, const void* A_log, const float* B, const float* C,
                           const void* D, const float* z, const void* dt_bias, float* ssm_state,
                           float* y, cudaStream_t s) {
  if (cfg == 0) cfg = scan_v8_default(p.channels);
  switch (cfg) {
    // CB channels (compute warps) per block, NS stages, NY y buffers, NH prep and NH gate
    // warps, blocks per SM asked of the register allocator, swizzled boxes, PAIR (the fold over
    // pairs of segments, each warp's two combined by shuffles; else over single segments), UNR
    // (the chunk loop unrolled over the 4 stages), MB (the segments meet on mbarriers: warp i
    // waits for the carry and pairs 0 .. i − 1 only; else one named barrier per team).
#define DM_V8(n, cb, ns, ny, nh, mb, swz, pair, unr, mbar)                                     \
  case n:                                                                                     \
    return v8::launch<cb, ns, ny, nh, mb, swz, pair, unr, mbar>(p, u, delta, A_log, B, C, D, \
                                                                z, dt_bias, ssm_state, y, s);
    DM_V8('a', 12, 4, 4, 2, 1, false, false, false, false)
    DM_V8('b', 8, 3, 3, 1, 2, true, false, false, false)
    DM_V8('c', 16, 4, 4, 2, 1, true, false, false, false)
    DM_V8('d', 4, 3, 3, 1, 3, false, false, false, false)
    DM_V8('e', 12, 4, 4, 1, 1, false, false, false, false)
    DM_V8('f', 16, 4, 4, 1, 1, true, false, false, false)
    DM_V8('g', 12, 4, 4, 2, 1, false, true, false, false)
    DM_V8('h', 12, 4, 4, 1, 1, false, true, false, false)
    DM_V8('i', 16, 4, 4, 1, 1, true, true, false, false)
    DM_V8('j', 8, 3, 3, 1, 2, true, true, false, false)
    DM_V8('k', 12, 4, 4, 2, 1, false, true, true, false)
    DM_V8('l', 12, 4, 4, 1, 1, false, true, true, false)
    DM_V8('o', 12, 4, 4, 2, 1, false, false, true, false)
    DM_V8('p', 12, 4, 4, 2, 1, false, true, true, true)
    DM_V8('q', 12, 4, 4, 1, 1, false, true, true, true)
#undef DM_V8
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace dm::cuda
