// v7: the prompt scan (d_state 16) with warps that never wait for each other mid-chunk.
//
// Why: v6 (selective_scan_v6.cu) keeps one warp per channel and the time-parallel slice scan,
// but its block walks every chunk in lockstep: one __syncthreads per chunk, then every warp
// gates (row-wise, transposed reads), prepares Δ (block-wide, transposed stores with 2.7-way
// bank conflicts) and scans, so all warps hit the same latency-bound phase (shuffle levels,
// MUFU chains) at the same time; 12 warps per SM then leave the issue slots half idle (ncu at
// 1536 × 4K: 49% busy, 0.84 eligible warps per scheduler, 5.7 cycles between a warp's
// instructions, ~17 instructions per element of which ~5 are staging, prep and gate
// bookkeeping; stalls per issued instruction: short scoreboard 1.3, wait 1.2, barrier 0.7).
//
// Here the block's warps are coupled only through mbarriers, with slack of several chunks:
//   staging: the tensor-memory accelerator (TMA) copies each chunk (T = 64 tokens) into one of
//            NS stages: one 2D box each for delta, u, z ([T][CB], zero-filled past L and past
//            the last channel; at CB 8 / 16 swizzled so that a channel's column read hits 8
//            banks, not 4 / 2) and B, C as one 3D box each ([8 slices][R + 1 rows][16], an
//            overlapping view of the rows, so slice s starts 576·s bytes in and the 8 slices'
//            16-byte reads of a token row hit both bank halves: conflict-free). The last chunk
//            or two (where slice 7's extra row would pass L) take 8 2D boxes per array instead.
//            Completion on full[stage]; every thread arrives on empty[stage] after its last read.
//   duty:    storing chunk j's y and reloading its stage with chunk j + NS is done by warp
//            j % CB once it has finished chunk j + 1, so the duty rotates and rarely waits. (A
//            first version gave it all to warp 0: that warp then paced the block, 126 µs at
//            1536 × 4K against v6's 106.6, the others stalled on full[] a third of the time.)
//            Option PROD: one extra warp does every chunk's duty and computes nothing (not yet
//            measured).
//   prep:    each warp prepares its own channel: lane i takes tokens i and i + 32 (column reads,
//            4-way conflicts at CB 4 / 12 and swizzled 8 / 16 — the wavefronts of a 16-byte row
//            read), Δ = softplus(delta + bias), Δ·u into a warp-private transposed buffer
//            (conflict-free), u and SiLU(z) kept in registers for the gate; no block-wide phase.
//   scan:    v6's: lane = 4·slice + state group, a = exp2(Δ·A·log2e) and Δ·B·u kept in registers,
//            the slice maps scanned with shuffles, the rerun from the true start, y
//            reduce-scattered over the 4 group lanes (lane i ends with tokens 2i, 2i+1). The
//            default configurations scan with kScanZeroDone (no selects per shuffle level,
//            selective_scan_common.cuh). Option NC = 2: a warp scans two channels, each B and C
//            read shared by both (measured slower: half the warps).
//   gate:    two shuffles a token bring y to the lane holding u and SiLU(z) of that token;
//            (y + D·u)·SiLU(z) is written to a y buffer ([T][CB], NY deep, the store's swizzle)
//            and, once every warp has (mbarrier ydone), the duty warp stores the box with one TMA
//            store (clipped at L and at the last channel); yfree tells the warps the buffer may
//            be rewritten.
// The arithmetic is v6's, in v6's order (ex2/lg2/rcp.approx as in selective_scan_common.cuh).
// Tokens past L have Δ = 0 and zero B (TMA fill): decay 1, input 0, the state is left alone;
// their y is clipped by the store. Needs the driver's cuTensorMapEncodeTiled (taken through
// cudaGetDriverEntryPointByVersion); without it launch_scan_v7 launches nothing and v6 runs.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "selective_scan_v7.cuh"
#include "selective_scan_v7_device.cuh"

namespace dm::cuda {
namespace v7 {
namespace {

template <int CB, int NC, int NS, int NY>
struct V7Smem {
  static constexpr int BW = CB * NC;  // channels per block: the boxes' width
  static_assert((kT * BW * 4) % 128 == 0, "TMA boxes start 128-byte aligned");
  struct Stage {
    float delta[kT][BW];
    float u[kT][BW];
    float z[kT][BW];
    // B and C, one of two layouts per chunk, both conflict-free for the 8 slices' 16-byte reads
    // of a token row (odd slices start a 64-byte bank half later): a chunk that ends at least one
    // row before L comes as one 3D box, dense [8 slices][R + 1 rows][16] (slice s at 576·s
    // bytes); otherwise 8 2D boxes, slice s at 640·s bytes from token row s·R − (s & 1), so its
    // row r sits at r + (s & 1) (boxes need 128-byte-aligned destinations).
    float B[kSl][kBSL];
    float C[kSl][kBSL];
  };
  Stage st[NS];
  float y[NY][kT][BW];  // gated y, the TMA store's box
  float dt[BW][2][kT];  // per channel: Δ, transposed, double-buffered
  float du[BW][2][kT];  // per channel: Δ·u
  uint64_t full[NS], empty[NS], ydone[NY], yfree[NY];
};

template <int CB, int NC, int NS, int NY, int MINB, bool PIPE, bool SWZ, int MODE, bool PROD>
__global__ void __launch_bounds__(32 * (CB + PROD), MINB)
    scan_v7_kernel(const __grid_constant__ V7Maps maps, SelectiveScanParams p, const void* A_log,
                   const void* Dp, const void* dt_bias, float* state, GemmSplitOut split) {
#if DM_V7_DEVICE
  using SM = V7Smem<CB, NC, NS, NY>;
  using Stage = typename SM::Stage;
  constexpr int BW = SM::BW;
  extern __shared__ unsigned char smem_raw[];
  static_assert(!SWZ || BW == 8 || BW == 16,
                "TMA swizzle: 32-byte (BW 8) or 64-byte (BW 16) rows");
  constexpr uint32_t kAlign = SWZ ? 1024 : 128;  // swizzled boxes: the pattern repeats in 1 KB
  SM& sm = *reinterpret_cast<SM*>(smem_raw +
                                  ((kAlign - (smem_u32(smem_raw) & (kAlign - 1))) & (kAlign - 1)));

  const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
  const int s = lane >> 2, g = lane & 3;  // slice, state group
  // This warp's NC channels: box columns w·NC + q, channels c0 + w·NC + q.
  const uint32_t c0 = blockIdx.x * BW;
  const int L = int(p.L);
  const bool has_z = p.has_z;

  // Per channel q: A·log2(e); the state carried from chunk to chunk (same in all slices).
  float A2[NC][4], h[NC][4], bias[NC], Dw[NC];
#pragma unroll
  for (int q = 0; q < NC; ++q) {
    const uint32_t c = c0 + w * NC + q;
    const bool cv = c < p.channels;
    const uint32_t cc = cv ? c : 0;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      A2[q][j] = -expf(load_f(A_log, p.A_log_dtype, size_t(cc) * kN + g * 4 + j)) * kLog2e;
      h[q][j] = cv ? state[size_t(c) * kN + g * 4 + j] : 0.f;
    }
    bias[q] = load_f(dt_bias, p.dt_bias_dtype, cc);
    Dw[q] = load_f(Dp, p.D_dtype, cc);
  }

  const int nch = (L + kT - 1) / kT;
  // Float offset of (token t, box column col) in a [T][BW] box: with SWZ the TMA swizzles
  // 16-byte pieces (32-byte mode: piece ^= bit 7 of the byte address; 64-byte mode: pieces ^=
  // bits 7-8), so a column read hits 8 banks instead of 4 (BW 8) or 2 (BW 16).
  auto boxoff = [&](int t, int col) {
    if constexpr (SWZ && BW == 8) return t * 8 + (col ^ (((t >> 2) & 1) << 2));
    else if constexpr (SWZ && BW == 16) return t * 16 + (col ^ (((t >> 1) & 3) << 2));
    else return t * BW + col;
  };
  int offa[NC], offb[NC];
#pragma unroll
  for (int q = 0; q < NC; ++q) {
    offa[q] = boxoff(lane, w * NC + q);
    offb[q] = boxoff(lane + 32, w * NC + q);
  }
  const uint32_t stage_bytes =
      uint32_t(kT * BW * 4 * (has_z ? 3 : 2) + 2 * kSl * (kR + 1) * kN * 4);
  // Load chunk k into its stage: one thread posts the byte count and issues the copies (5, or
  // 19 where B and C come as 2D per-slice boxes).
  auto issue = [&](int k) {
    const int si = k % NS;
    Stage& b = sm.st[si];
    const uint32_t fb = smem_u32(&sm.full[si]);
    mbar_arrive_tx(fb, stage_bytes);
    const int t0 = k * kT;
    tma_load_2d(smem_u32(&b.delta[0][0]), &maps.delta, int(c0), t0, fb);
    tma_load_2d(smem_u32(&b.u[0][0]), &maps.u, int(c0), t0, fb);
    if (has_z) tma_load_2d(smem_u32(&b.z[0][0]), &maps.z, int(c0), t0, fb);
    if (maps.use3d && t0 + kT + 1 <= L) {
      tma_load_3d(smem_u32(&b.B[0][0]), &maps.B3, 0, 0, k * kSl, fb);
      tma_load_3d(smem_u32(&b.C[0][0]), &maps.C3, 0, 0, k * kSl, fb);
    } else {
#pragma unroll
      for (int sl = 0; sl < kSl; ++sl) {
        const int row0 = t0 + sl * kR - (sl & 1);
        tma_load_2d(smem_u32(&b.B[sl][0]), &maps.B, 0, row0, fb);
        tma_load_2d(smem_u32(&b.C[sl][0]), &maps.C, 0, row0, fb);
      }
    }
  };
  // The block's duty for chunk j, taken in turn by warp j % CB once it has finished chunk j + 1
  // (so it rarely waits): store chunk j's y, tell the warps its buffer is free again, and reload
  // chunk j's stage with chunk j + NS.
  // PROD: one more warp (w == CB) does every chunk's duty in order and nothing else, so no
  // compute warp ever stalls on a store or a reload.
  auto duty_lane0 = [&](int j) {
    const int yb = j % NY, si = j % NS;
    mbar_wait(smem_u32(&sm.ydone[yb]), uint32_t(j / NY) & 1u);
    tma_store_2d(&maps.y, int(c0), j * kT, smem_u32(&sm.y[yb][0][0]));
    if (j + NS < nch) {
      mbar_wait(smem_u32(&sm.empty[si]), uint32_t(j / NS) & 1u);
      issue(j + NS);
    }
    bulk_wait_read0();  // the store has read its buffer
    mbar_arrive(smem_u32(&sm.yfree[yb]));
  };
  auto duty = [&](int j) {
    if (lane == 0) duty_lane0(j);
    __syncwarp();
  };

  if (tid == 0) {
#pragma unroll
    for (int i = 0; i < NS; ++i) {
      mbar_init(smem_u32(&sm.full[i]), 1);
      mbar_init(smem_u32(&sm.empty[i]), 32 * CB);
    }
#pragma unroll
    for (int i = 0; i < NY; ++i) {
      mbar_init(smem_u32(&sm.ydone[i]), 32 * CB);
      mbar_init(smem_u32(&sm.yfree[i]), 1);
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  if (tid == 0) {
#pragma unroll 1
    for (int k = 0; k < NS && k < nch; ++k) issue(k);
  }
  if (PROD && w == CB) {  // the producer warp: its channels (past the block's) are never used
    if (!SWZ && split.hi) {
      // y as out_proj's GEMM operand (kernels.h GemmSplitOut) instead of the TMA store: lane 0
      // first reloads chunk j's stage (every compute warp released it before its ydone
      // arrival, so that wait is over: the reload never waits on the stores), then the whole
      // warp converts chunk j's box, 16 bytes of a token row a lane at a time, and writes
      // hi / lo (8 bytes each) for the rows before L.
      constexpr int Q = BW / 4;  // 16-byte pieces per box row
#pragma unroll 1
      for (int j = 0; j < nch; ++j) {
        const int yb = j % NY, si = j % NS;
        mbar_wait(smem_u32(&sm.ydone[yb]), uint32_t(j / NY) & 1u);
        if (lane == 0 && j + NS < nch) {
          mbar_wait(smem_u32(&sm.empty[si]), uint32_t(j / NS) & 1u);
          issue(j + NS);
        }
        for (int pc = lane; pc < kT * Q; pc += 32) {
          const int t = pc / Q, q = pc % Q, row = j * kT + t;
          const uint32_t c = c0 + 4 * q;
          if (row < L && c < p.channels)
            split_store4(split, size_t(row), c, *reinterpret_cast<const float4*>(&sm.y[yb][t][4 * q]));
        }
        __syncwarp();
        if (lane == 0) mbar_arrive(smem_u32(&sm.yfree[yb]));
        __syncwarp();
      }
    } else if (lane == 0) {
#pragma unroll 1
      for (int j = 0; j < nch; ++j) duty_lane0(j);
      bulk_wait_all0();  // this thread's stores are complete
    }
    return;
  }

  // Prep of a chunk for channel q: lane i takes tokens i and i + 32; Δ and Δ·u go to the
  // channel's transposed buffers, u and SiLU(z) stay in registers for the gate.
  struct Gate {
    float ua, ub, za, zb;
  };
  auto prep = [&](const Stage& b, int rem, int q, int pb) {
    Gate r;
    float* pt = &sm.dt[w * NC + q][pb][0];
    float* pu = &sm.du[w * NC + q][pb][0];
    const int ta = lane, tb = lane + 32;
    const float sa = softplus_fast((&b.delta[0][0])[offa[q]] + bias[q]);
    const float sb = softplus_fast((&b.delta[0][0])[offb[q]] + bias[q]);
    const float da = ta < rem ? sa : 0.f, db = tb < rem ? sb : 0.f;
    r.ua = (&b.u[0][0])[offa[q]];
    r.ub = (&b.u[0][0])[offb[q]];
    // Without z the z rows are never loaded: SiLU of whatever is there, then dropped.
    const float sza = silu_fast((&b.z[0][0])[offa[q]]), szb = silu_fast((&b.z[0][0])[offb[q]]);
    r.za = has_z ? sza : 1.f;
    r.zb = has_z ? szb : 1.f;
    pt[ta] = da;
    pt[tb] = db;
    pu[ta] = da * r.ua;
    pu[tb] = db * r.ub;
    return r;
  };
  // The scan of a chunk (v6's scan_chunk; see selective_scan_v6.cu), the NC channels sharing
  // each B and C read: y of the slice's R tokens over this lane's 4 states; h becomes the carry
  // out of the chunk.
  const int bo2 = s * kBSL + (s & 1) * kN + g * 4, bo3 = s * (kR + 1) * kN + g * 4;
  auto scan = [&](const Stage& b, bool f3, int pb, float (&yv)[NC][kR]) {
    float dtv[NC][kR], duv[NC][kR];
#pragma unroll
    for (int q = 0; q < NC; ++q)
      load_slice(&sm.dt[w * NC + q][pb][0], &sm.du[w * NC + q][pb][0], s, dtv[q], duv[q]);
    const int bo = f3 ? bo3 : bo2;
    const float* Bs = &b.B[0][0] + bo;
    const float* Cs = &b.C[0][0] + bo;
    warp_chunk_scan_nc<kR, MODE, NC>(dtv, duv, Bs, Cs, A2, h, s, g, yv);
  };

  int si = 0, yb = 0;         // stage, y buffer
  uint32_t sph = 0, yph = 0;  // their use parities
  Gate cur[NC] = {};
  if constexpr (PIPE) {  // chunk 0's prep ahead of the loop
    mbar_wait(smem_u32(&sm.full[0]), 0);
#pragma unroll
    for (int q = 0; q < NC; ++q) cur[q] = prep(sm.st[0], L < kT ? L : kT, q, 0);
  }
#pragma unroll 1
  for (int k = 0; k < nch; ++k) {
    const Stage& b = sm.st[si];
    const int t0 = k * kT, pb = k & 1;
    Gate nxt[NC] = {};
    if constexpr (PIPE) {
      // Chunk k's Δ (written last iteration) visible; chunk k − 1's reads of the other buffer
      // done. Then chunk k + 1's prep, interleaved by the compiler with chunk k's scan.
      __syncwarp();
      const int sn = si + 1 == NS ? 0 : si + 1;
      if (k + 1 < nch) mbar_wait(smem_u32(&sm.full[sn]), si + 1 == NS ? sph ^ 1u : sph);
#pragma unroll
      for (int q = 0; q < NC; ++q) nxt[q] = prep(sm.st[sn], L - t0 - kT, q, pb ^ 1);
    } else {
      mbar_wait(smem_u32(&sm.full[si]), sph);
#pragma unroll
      for (int q = 0; q < NC; ++q) cur[q] = prep(b, L - t0, q, pb);
      __syncwarp();
    }
    float yv[NC][kR];
    scan(b, maps.use3d && t0 + kT + 1 <= L, pb, yv);
    // Every read of this stage is done: release it.
    mbar_arrive(smem_u32(&sm.empty[si]));
    float oa[NC], ob[NC];  // gated y of tokens lane and lane + 32
#pragma unroll
    for (int q = 0; q < NC; ++q) {
      group_reduce_scatter(yv[q], g);  // lane g: tokens 2g, 2g + 1 of its slice
      // Token i from lane i / 2, token i + 32 from lane 16 + i / 2 (element i & 1), the gate.
      const bool odd = lane & 1;
      const int src = lane >> 1;
      float y0 = __shfl_sync(kFull, yv[q][0], src), y1 = __shfl_sync(kFull, yv[q][1], src);
      const float ya = odd ? y1 : y0;
      y0 = __shfl_sync(kFull, yv[q][0], src + 16);
      y1 = __shfl_sync(kFull, yv[q][1], src + 16);
      const float yb2 = odd ? y1 : y0;
      oa[q] = fmaf(Dw[q], cur[q].ua, ya) * cur[q].za;
      ob[q] = fmaf(Dw[q], cur[q].ub, yb2) * cur[q].zb;
    }

    if (k >= NY) mbar_wait(smem_u32(&sm.yfree[yb]), yph ^ 1u);  // the store of chunk k − NY
#pragma unroll
    for (int q = 0; q < NC; ++q) {
      (&sm.y[yb][0][0])[offa[q]] = oa[q];
      (&sm.y[yb][0][0])[offb[q]] = ob[q];
    }
    fence_proxy_async();
    mbar_arrive(smem_u32(&sm.ydone[yb]));

    if (!PROD && k >= 1 && (k - 1) % CB == w) duty(k - 1);

    if constexpr (PIPE) {
#pragma unroll
      for (int q = 0; q < NC; ++q) cur[q] = nxt[q];
    }
    if (++yb == NY) yb = 0, yph ^= 1u;
    if (++si == NS) si = 0, sph ^= 1u;
  }
  if (!PROD && nch >= 1 && (nch - 1) % CB == w) duty(nch - 1);
  if (lane == 0) bulk_wait_all0();  // this thread's stores are complete
#pragma unroll
  for (int q = 0; q < NC; ++q) {
    const uint32_t c = c0 + w * NC + q;
    if (c < p.channels && s == 0) {
#pragma unroll
      for (int j = 0; j < 4; ++j) state[size_t(c) * kN + g * 4 + j] = h[q][j];
    }
  }
#endif
}

using EncodeTiled = PFN_cuTensorMapEncodeTiled_v12000;

EncodeTiled encoder() {
  static const EncodeTiled fn = []() -> EncodeTiled {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault,
                                         &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess || !f) {
      cudaGetLastError();
      std::fprintf(stderr, "decimamba: no cuTensorMapEncodeTiled from the driver; v7 scan off\n");
      return nullptr;
    }
    return reinterpret_cast<EncodeTiled>(f);
  }();
  return fn;
}

// A row-major fp32 matrix [rows][cols] with a row stride (floats), read or written as boxes of
// [box_rows][box_cols]; out-of-bounds elements read as 0 and are not written.
bool encode(CUtensorMap* m, const float* base, uint32_t cols, uint32_t rows, uint32_t stride,
            uint32_t box_cols, uint32_t box_rows, bool swz = false) {
  const EncodeTiled fn = encoder();
  if (!fn) return false;
  const cuuint64_t dims[2] = {cols, rows};
  const cuuint64_t strides[1] = {cuuint64_t(stride) * 4};
  const cuuint32_t box[2] = {box_cols, box_rows};
  const cuuint32_t estr[2] = {1, 1};
  return fn(m, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 2, const_cast<float*>(base), dims, strides, box,
            estr, CU_TENSOR_MAP_INTERLEAVE_NONE,
            !swz                ? CU_TENSOR_MAP_SWIZZLE_NONE
            : box_cols * 4 == 32 ? CU_TENSOR_MAP_SWIZZLE_32B
                                 : CU_TENSOR_MAP_SWIZZLE_64B,
            CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

bool encode3(CUtensorMap* m, const float* base, uint32_t L, uint32_t stride) {
  const EncodeTiled fn = encoder();
  if (!fn) return false;
  const uint32_t windows = (L - 1) / kR;
  const cuuint64_t dims[3] = {kN, kR + 1, windows > 0 ? windows : 1};
  const cuuint64_t strides[2] = {cuuint64_t(stride) * 4, cuuint64_t(stride) * 4 * kR};
  const cuuint32_t box[3] = {kN, kR + 1, kSl};
  const cuuint32_t estr[3] = {1, 1, 1};
  return fn(m, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 3, const_cast<float*>(base), dims, strides, box,
            estr, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE,
            CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

}  // namespace

bool encode_maps(V7Maps& m, const SelectiveScanParams& p, uint32_t BW, bool swz, bool t3d,
                 const float* u, const float* delta, const float* B, const float* C,
                 const float* z, float* y) {
  bool ok = encode(&m.delta, delta, p.channels, p.L, p.delta_stride, BW, kT, swz) &&
            encode(&m.u, u, p.channels, p.L, p.u_stride, BW, kT, swz) &&
            encode(&m.B, B, kN, p.L, p.B_stride, kN, kR + 1) &&
            encode(&m.C, C, kN, p.L, p.C_stride, kN, kR + 1) &&
            encode(&m.y, y, p.channels, p.L, p.y_stride, BW, kT, swz);
  if (ok && p.has_z) ok = encode(&m.z, z, p.channels, p.L, p.z_stride, BW, kT, swz);
  if (!ok) return false;
  if (!p.has_z) m.z = m.u;  // never read
  // The 3D views of B and C: window sl covers rows sl·R .. sl·R + R; only windows that end
  // before row L exist, so a box of 8 never reads past the tensor.
  m.use3d = t3d && encode3(&m.B3, B, p.L, p.B_stride) && encode3(&m.C3, C, p.L, p.C_stride);
  if (t3d && !m.use3d) {
    static bool told = false;
    if (!told) std::fprintf(stderr, "decimamba: v7 scan: no 3D B/C maps, per-slice boxes\n");
    told = true;
  }
  return true;
}

namespace {

template <int CB, int NC, int NS, int NY, int MINB, bool PIPE, bool SWZ, bool T3D, int MODE,
          bool PROD>
cudaError_t launch(const SelectiveScanParams& p, const float* u, const float* delta,
                   const void* A_log, const float* B, const float* C, const void* D,
                   const float* z, const void* dt_bias, float* ssm_state, float* y,
                   const GemmSplitOut& split, cudaStream_t s) {
  constexpr int BW = CB * NC;  // channels per block
  if (split.hi && (!PROD || SWZ)) return cudaErrorNotSupported;  // only u's producer writes it
  V7Maps m;
  if (!encode_maps(m, p, BW, SWZ, T3D, u, delta, B, C, z, y)) return cudaErrorNotSupported;
  const size_t smem = sizeof(V7Smem<CB, NC, NS, NY>) + (SWZ ? 1024 : 128);  // + room to align
  auto kern = scan_v7_kernel<CB, NC, NS, NY, MINB, PIPE, SWZ, MODE, PROD>;
  static const cudaError_t attr =
      cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  if (attr != cudaSuccess) return attr;
  kern<<<ceil_div(p.channels, BW), 32 * (CB + PROD), smem, s>>>(m, p, A_log, D, dt_bias,
                                                                 ssm_state, split);
  return cudaGetLastError();
}

}  // namespace
}  // namespace v7

using namespace v7;

bool scan_v7_applies(const SelectiveScanParams& p, const float* u, const float* delta,
                     const float* B, const float* C, const float* z, const float* y) {
  // The TMA: compute capability 9.0 or later.
  return device_sm90_or_later() && p.d_state == kN && p.channels % 4 == 0 &&
         p.L < (1u << 31) - kT && aligned16(u, p.u_stride) && aligned16(delta, p.delta_stride) &&
         aligned16(B, p.B_stride) && aligned16(C, p.C_stride) && aligned16(y, p.y_stride) &&
         (!p.has_z || aligned16(z, p.z_stride));
}

// Configurations (DM_CUDA_SCAN=v7<letter>): CB warps per block, NC channels per warp (CB·NC per
// block), NS stages (chunks loaded ahead), NY y buffers, MINB blocks per SM asked of the register
// allocator, PIPE (prep of chunk k + 1 before the scan of chunk k, for the compiler to
// interleave), SWZ (swizzled delta / u / z / y boxes, CB·NC 8 or 16), T3D (B and C as one 3D box
// a chunk; else 16 2D boxes a chunk), MODE (the slice scan's treatment of slices without a
// partner: kScanSelect, or kScanZeroDone, selective_scan_common.cuh), PROD (a producer warp).
// Session 1, H100 80GB HBM3 (2026-11-27, one run, v6 twice in the same run: 106.5 / 406.2 µs
// at d_inner 1536, L 4K / 16K; 292.6 / 1141.7 at 5120), µs at L = 4K / 16K:
//   a (CB 12, NS 4, 3D)         83.7 / 312.4 at 1536; 320.0 / 1231.8 at 5120
//   g (CB 12, NS 5) 85.2 / 316.0; i (a without 3D) 87.4 / 324.9; d (a + PIPE) 88.1 / 326.5
//   c (CB 4, NS 3, 4 blocks/SM) 90.4 / 347.1 at 1536; 365.4 / 1395.8 at 5120
//   e (CB 8, NS 4, swizzled, 3D, 2 blocks/SM) 255.9 / 990.8 at 5120;
//     103.6 / 391.9 at 1536 (192 blocks on 132 SMs); k (e with NS 5) 256.1 / 990.5;
//     j (e without 3D) 265.2 / 1022.0; h (e + PIPE) 274.0 / 1057.1; b (e unswizzled: 8-way
//     column conflicts) 294.5 / 1146.8; f (CB 16, swizzled, 1 block/SM) 294.9 / 1136.9.
// Session 2, H100 80GB HBM3 (2026-11-27, one run: `tools/gpu/scan_variants_on_gpu.sh`, v6 at its
// per-width default, a and e in the same run), µs at L = 4K / 16K, d_inner 1536 / 2048 / 3072 /
// 4096 / 5120 (cuda/README.md has the whole table):
//   l (a with kScanZeroDone) 82.5 / 307.2 at 1536 — the default below 2048 (a: 83.9 / 312.7);
//     161.0 / 609.0 at 3072
//   m (e with kScanZeroDone) 102.2 / 384.3, 160.3 / 611.1, 197.6 / 759.2, 252.5 / 975.2 at 2048,
//     3072, 4096, 5120 — the default from 2048 on (e: 103.9 / 391.6, 162.8 / 622.6, 201.3 /
//     774.7, 256.7 / 992.4; v6: 205.8 / 799.5, 208.9 / 808.9, 229.0 / 889.2, 292.9 / 1141.4)
//   n (CB 6, NC 2, l's scan: two channels per warp share each B / C read, 219 registers, one
//     block of 6 warps per SM) 108.3 / 413.6 at 1536; o (CB 4, NC 2, swizzled, 2 blocks/SM)
//     291.0 / 1128.2 at 5120: slower everywhere — half the B / C shared loads, but half the
//     warps (latency-bound: each warp's two channels interleave less than two warps would).
//   Measured and dropped: NC 2 with CB 8 (one block per SM) 322.4 / 1250.9 at 5120; NC 2 with
//     kScanSelect 111.5 / 427.8 at 1536, 300.6 / 1166.9 at 5120; ydone arrived one chunk late
//     (so the proxy fence finds the y stores complete) 96.9 / 366.6 at 1536 (l: 83.5 / 309.6 in
//     that run), 291.7 / 1223.4 at 5120 (m: 260.8 / 1006.9): the duty then waits for the slowest
//     warp's next scan; the carry and the previous slice's end from one rotating shuffle (4
//     shuffles a chunk fewer): m 260.8 / 1006.9 against e's 257.1 / 993.1 in the same run (at
//     m's 128-register cap the compiler re-derives the lane index), l unchanged.
//   u / v / w (l; m; m with one block per SM — each with PROD: a 13th / 9th warp does every
//     chunk's duty, the compute warps never branch on lane 0, which also removes the compiler's
//     warp-divergence checks (BRA.DIV) before their shuffles: u's compute loop is 442
//     instructions a chunk against l's ~485 plus its share of the duty; ptxas: 122 / 96 / 124
//     registers, no spills). Session 5, H100 80GB HBM3 (device call 11, one run, l and m in
//     the same run), µs at L = 4K / 16K for d_inner 1536 / 2048 / 3072 / 4096 / 5120:
//       u 77.4 / 287.6, 148.0 / 564.7, 149.8 / 566.4, 220.4 / 845.3, 290.8 / 1122.4
//       v 105.6 / 403.3, 105.7 / 402.0, 164.2 / 640.1, 202.8 / 789.6, 258.1 / 1013.5
//       w 115.9 / 438.1, 116.8 / 441.2, 172.7 / 657.2, 228.3 / 872.5, 283.7 / 1088.4
//       l 82.6 / 307.0, 159.5 / 607.6, 161.0 / 609.0, 236.9 / 909.1, 314.0 / 1210.1
//       m 101.8 / 384.2, 101.8 / 384.0, 159.6 / 610.7, 197.2 / 759.0, 252.1 / 974.6
//     u, the fastest at 1536 and 3072 (43–47% of the floor), was the default there (x at 3072
//     since session 6); m stays at 2048, 4096, 5120. u passed the scan and end-to-end tests
//     (device call 10) and compute-sanitizer memcheck and racecheck (call 12); v and w passed
//     the tests (call 10).
// p … t, z (scan_v7s_kernel: CB compute warps that only scan, NH prep and NH gate warps doing
//   16-byte row accesses of the boxes; session 6, H100 80GB HBM3, device call 3 of that session's
//   scan helper, one run with the default (u / m) in it), µs at L = 4K / 16K, 1536 / 3072 / 5120:
//     x (CB 12, NH 2: 16 warps)   80.3 / 285.8, 148.0 / 557.2, 283.5 / 1093.7
//     p (CB 12, NH 1)             89.6 / 334.7; z (x with NS 3) 83.9 / 311.6 at 1536
//     q / s / r / y (CB 8 / 16 with one or two prep + gate warp pairs): 102–126 at 1536 × 4K,
//     265.6–366.1 at 5120 × 4K (q, 2 blocks per SM at 96 registers, spills 20 bytes: 265.6)
//     default  77.8 / 287.6, 149.8 / 567.4, 252.2 / 974.9
//   call 4 (final): default (x at 3072) 77.5 / 287.3, 148.2 / 558.0, 252.8 / 975.8; u forced
//   77.6 / 287.5, 150.1 / 566.8; x forced 79.6 / 286.2, 148.2 / 557.4; t (x, NS 5) 81.4 / 301.2.
//   x passed the scan and end-to-end tests forced (27) and memcheck / racecheck (call 4).
//   ncu at 1536 × 4K (same call and call 1): shared-load bank conflicts 2.14 M → 0.36 M (x
//   against u), store conflicts 0.90 M → 0.20 M, L1/TEX 86% → 74% busy, but the same 45 M
//   warp instructions and issue slots 62% → 64% busy: the conflicts were not what bounds u.
//   x is the default at 3072 (1.2–1.8% faster there), u stays at 1536 (x 3% slower at 4K).
// One block of 12 warps per SM fits 1536 channels in one wave (128 blocks); at 5120, CB 12 / 16
// (one block per SM) give 3.23 / 2.42 blocks per SM, so the last wave runs a quarter / half full,
// while CB 8 with two blocks per SM comes in finer pieces.
// u (12 compute warps + a producer warp, one block per SM) at 1536 and x (u's blocks with the
// prep and gate split off) at 3072, where the blocks come in whole waves of 132 (one at 1536:
// 128 blocks; two at 3072: 256), m (8 warps, 2 blocks per SM, finer pieces) elsewhere. Measured
// at the published widths only (above); above 5120 m is assumed.
char scan_v7_default(uint32_t channels) {
  if (channels < 2048) return 'u';
  return channels > 2560 && channels <= 3072 ? 'x' : 'm';
}

cudaError_t launch_scan_v7(char cfg, const SelectiveScanParams& p, const float* u,
                           const float* delta, const void* A_log, const float* B, const float* C,
                           const void* D, const float* z, const void* dt_bias, float* ssm_state,
                           float* y, cudaStream_t s, const GemmSplitOut& split) {
  if (cfg == 0) cfg = scan_v7_default(p.channels);
#define DM_V7(n, cb, nc, ns, ny, mb, pipe, swz, t3d, mode, prod)                               \
  case n:                                                                                      \
    return launch<cb, nc, ns, ny, mb, pipe, swz, t3d, mode, prod>(p, u, delta, A_log, B, C, D, \
                                                                  z, dt_bias, ssm_state, y,    \
                                                                  split, s);
  constexpr int kSel = kScanSelect, kZero = kScanZeroDone;
  switch (cfg) {
    DM_V7('a', 12, 1, 4, 4, 1, false, false, true, kSel, false)
    DM_V7('b', 8, 1, 4, 4, 2, false, false, true, kSel, false)
    DM_V7('c', 4, 1, 3, 3, 4, false, false, true, kSel, false)
    DM_V7('d', 12, 1, 4, 4, 1, true, false, true, kSel, false)
    DM_V7('e', 8, 1, 4, 4, 2, false, true, true, kSel, false)
    DM_V7('f', 16, 1, 4, 4, 1, false, true, true, kSel, false)
    DM_V7('g', 12, 1, 5, 5, 1, false, false, true, kSel, false)
    DM_V7('h', 8, 1, 4, 4, 2, true, true, true, kSel, false)
    DM_V7('i', 12, 1, 4, 4, 1, false, false, false, kSel, false)
    DM_V7('j', 8, 1, 4, 4, 2, false, true, false, kSel, false)
    DM_V7('k', 8, 1, 5, 5, 2, false, true, true, kSel, false)
    DM_V7('l', 12, 1, 4, 4, 1, false, false, true, kZero, false)
    DM_V7('m', 8, 1, 4, 4, 2, false, true, true, kZero, false)
    DM_V7('n', 6, 2, 4, 4, 1, false, false, true, kZero, false)
    DM_V7('o', 4, 2, 4, 4, 2, false, true, true, kZero, false)
    DM_V7('u', 12, 1, 4, 4, 1, false, false, true, kZero, true)
    DM_V7('v', 8, 1, 4, 4, 2, false, true, true, kZero, true)
    DM_V7('w', 8, 1, 4, 4, 1, false, true, true, kZero, true)
    // Specialised warps (scan_v7s_kernel, selective_scan_v7s.cu): p, q, r, s, t, x, y, z.
    default:
      if (split.hi) return cudaErrorNotSupported;
      return launch_scan_v7s(cfg, p, u, delta, A_log, B, C, D, z, dt_bias, ssm_state, y, s);
  }
#undef DM_V7
}

// The scan writing out_proj's operand (kernels.h): v7u's producer warp is the one store path
// that writes it, so this runs where launch_selective_scan would run v7u — its default width
// (scan_v7_default 'u') with DM_CUDA_SCAN unset, or DM_CUDA_SCAN=v7u —
// and refuses (cudaErrorNotSupported, nothing launched) elsewhere: the caller then scans into y
// and converts. (Mirrors selective_scan.cu's choice; keep the two in step.)
cudaError_t launch_selective_scan_split(const SelectiveScanParams& p, const float* u,
                                        const float* delta, const void* A_log, const float* B,
                                        const float* C, const void* D, const float* z,
                                        const void* dt_bias, float* ssm_state, float* y,
                                        const GemmSplitOut& split, cudaStream_t s) {
  const char* e = std::getenv("DM_CUDA_SCAN");
  const std::string v = e ? e : "";
  const bool u_default = v.empty() && p.channels >= 1536 && scan_v7_default(p.channels) == 'u';
  if (!split.hi || split.cols != p.channels || !(u_default || v == "v7u") ||
      !scan_v7_applies(p, u, delta, B, C, z, y))
    return cudaErrorNotSupported;
  if (p.L == 0 || p.channels == 0) return cudaSuccess;
  return launch_scan_v7('u', p, u, delta, A_log, B, C, D, z, dt_bias, ssm_state, y, s, split);
}

}  // namespace dm::cuda
