// Backend::mamba_block_step for one row (batch 1): a whole Mamba block of a decode step as ONE
// kernel, where the fused path of fused_step.cu takes four (norm + in_proj + conv, x_proj,
// dt_proj + scan, out_proj). At 130m widths each of those four ran ~3.5 µs while its weights take
// well under that to read: the step was bound by kernel-to-kernel latency, not by bandwidth.
//
// Design (session 6; the session-5 kernel it replaces held the weights in registers and met at
// counter barriers, and measured slower than the four kernels):
//
// * Ownership. Block b owns cpb = ⌈E / SMs⌉ channels c0 = b·cpb … and rpb = ⌈D / G⌉ rows of
//   out_proj (G = ⌈E / cpb⌉ blocks, one per SM). Everything per channel (in_proj's x and z rows,
//   the conv step, its x_proj columns, dt_proj, the scan step, the gate) stays in the block.
// * Weights in shared memory, off the critical path. Before griddepcontrol.wait (PDL,
//   fused_step.cuh) every block copies ITS slice of the layer's weights into shared memory:
//   in_proj and out_proj rows as TMA bulk copies (sm_90; cp.async otherwise), the small tensors
//   as floats. With PDL the
//   kernel of layer l+1 starts as soon as every block of layer l has started, so layer l+1's
//   slices stream in while layer l computes (two kernels fit an SM: ~80 KB each at 130m).
// * No grid barrier: the three exchanges carry their own readiness. A value crosses blocks as
//   one 64-bit word (value bits | epoch << 32), stored and loaded with relaxed gpu-scope 64-bit
//   accesses (single-copy atomic), so a reader that sees this launch's epoch sees the value: one
//   L2 round trip per exchange, where a counter barrier costs a fence, an atomic and a poll
//   before the data can even be read (NCCL's LL protocol, one flag per word).
//     1. norm (every block, redundantly) → in_proj rows → conv step → the block's partial x_proj
//        sums over its channels (R + 2N of them) → exchange part[j][b];
//     2. block j (j < R + 2N) reduces output j over the G partials in a fixed order (the same
//        bits whatever the timing: decode stays reproducible) → exchange xdbl[j];
//     3. every block reads the R + 2N outputs → dt_proj + softplus + scan step + D skip + SiLU(z)
//        for its channels (dt_scan_n16_kernel's arithmetic) → exchange y[c];
//     4. every block reads y → its out_proj rows → hidden.
//   The epoch is a word of the exchange area that block 0 advances at its end (every block has
//   read it by then: block 0 has read a y of every block, each written after its reader's read
//   of the epoch); the next launch reads it after griddepcontrol.wait. Never reset, so graph
//   replays need nothing; flags only grow, so a stale word never passes for a fresh one.
// * Block 0 writes normed, x_dbl and the new residual (after step 3: every block has read the
//   old residual by then); each block its own channels' xz, xc, conv and ssm state, dt, y and its
//   rows of hidden (hidden may be x's own buffer: x was read in step 1 by everyone, before y).
//
// Every block must be resident at once (the exchanges wait on each other): G ≤ SMs and one
// block's shared memory fits an SM (checked on the host). A later kernel launched early by PDL
// never blocks this one: it starts only after every block of this one has started.
//
// Supported (mamba_block_step_supported): batch 1, d_state 16, d_conv 4, z present, x_proj
// without bias, d_model ≤ 1024, the four matrices in one dtype (F32, F16, BF16) with in_proj and
// out_proj rows of 16-byte multiples at 16-byte aligned addresses, the slices within shared
// memory (130m-class widths: 2.8b's do not fit and run the other forms, cuda_fusions.cpp).
//
// Measured (H100, bench_cuda decode-settings 130m, graph device time per token, one process
// each; bench/results/h100_session6_decode_block_2026-11-27.md): 358.1 / 358.7 µs against 344.2 /
// 343.7 for the four kernels: still ~4% slower, so opt-in (DM_CUDA_DECODE_BLOCK=1). The
// exchanges work (tests, replays bit-identical, memcheck / racecheck clean) and the weights are
// off the critical path; what is left is ~11.4 µs of dependent work per layer after the wait
// (bench_cuda decode-trace: norm 1.7, in_proj + conv 1.6, x_proj partials + two exchanges 4.0,
// scan 0.9, y exchange 1.5, out_proj 1.7) plus 1.4 µs from completion to the next release. The
// shared-memory-only phases run several times longer than their instruction count suggests
// (an estimate, not profiled) and got faster each
// time the machine code shrank (121 → 62 KB: 394 → 355 µs a token); ncu's stall sampling of
// one isolated launch puts instruction fetch at ~1 of 14.8 cycles per instruction, global-memory
// waits at 5.3 and block barriers at 3.2 (README's decode section).
// DM_CUDA_DECODE_BLOCK_TRACE=1 records the stamps (bench_cuda decode-trace reads them).
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "fused_step.cuh"

namespace dm::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int kWarps = kBlock / 32;
constexpr int kNormPer = 4;                    // norm elements per thread in registers
constexpr uint32_t kMaxD = kBlock * kNormPer;  // 1024 (130m-class widths: the code stays small)
constexpr size_t kStaticSmem = 32 * sizeof(double) + 9 * kWarps * sizeof(float) + 16;

// The exchange area (kernels.h, kDecodeExchangeBytes, zeroed once): u64 word 0 holds the epoch,
// then part (P · G words, [j][b]), xdbl (P), y (E).
constexpr uint32_t kPartWord = 8;

// Sizes and shared-memory offsets (bytes) of one launch, filled on the host.
struct Plan {
  uint32_t D, E, R, P;   // P = R + 2 · 16
  uint32_t cpb, rpb, G;  // channels per block, out_proj rows per block, blocks
  uint32_t scan_rounds;  // ⌈16 · cpb / 256⌉
  uint32_t o_win, o_wout, o_xs, o_res, o_ys, o_nw, o_xw, o_dtw, o_A, o_cw, o_cb, o_dtb, o_Dv,
      o_inb, o_outb, o_xz, o_xc, o_xd, o_h, o_win4, bytes;
};

struct KernelArgs {
  MambaBlockStepParams p;
  MambaBlockStepPtrs a;
  Plan pl;
  unsigned long long* ex;  // the exchange area
  uint32_t bulk;           // in_proj / out_proj slices by bulk copies (sm_90), else cp.async
};

// DM_CUDA_DECODE_BLOCK_TRACE=1 (timing diagnosis): blocks 0 and G − 1 record %globaltimer at
// kTraceStamps points of the kernel into the exchange area's last kDecodeTraceWords words (slot
// epoch mod kDecodeTraceSlots; word 11 the SM cycles from stamp 2 to 10, word 15 the epoch);
// CudaBackend reads them back.
constexpr int kTraceStamps = 11;
__device__ __forceinline__ unsigned long long global_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %globaltimer;" : "=l"(t));
  return t;
}

// ---- the exchange words
__device__ __forceinline__ void ll_store(unsigned long long* p, float v, unsigned epoch) {
  const unsigned long long w =
      (static_cast<unsigned long long>(epoch) << 32) | __float_as_uint(v);
  asm volatile("st.relaxed.gpu.global.u64 [%0], %1;" ::"l"(p), "l"(w) : "memory");
}
__device__ __forceinline__ unsigned long long ll_load(const unsigned long long* p) {
  unsigned long long w;
  asm volatile("ld.relaxed.gpu.global.u64 %0, [%1];" : "=l"(w) : "l"(p) : "memory");
  return w;
}
__device__ __forceinline__ bool ll_ready(unsigned long long w, unsigned epoch) {
  return unsigned(w >> 32) == epoch;
}
// A wait that never ends is a bug (a block not resident, a wrong epoch): trap after ~seconds, so
// it shows as a launch error instead of a hang.
__device__ __forceinline__ void ll_spin_check(uint32_t& spins) {
  if (++spins > (1u << 22)) __trap();
}
// dst[i] = the value of word src[i] for i in [0, n), the block's threads striding; each thread
// issues its loads in batches of 8 before it checks any (one round trip for a short row).
__device__ __forceinline__ void ll_read_row(const unsigned long long* src, float* dst, uint32_t n,
                                            unsigned epoch) {
  constexpr int kB = 4;
  for (uint32_t base = 0; base < n; base += kBlock * kB) {
    unsigned long long w[kB];
#pragma unroll
    for (int q = 0; q < kB; ++q) {
      const uint32_t i = base + q * kBlock + threadIdx.x;
      w[q] = i < n ? ll_load(src + i) : (static_cast<unsigned long long>(epoch) << 32);
    }
#pragma unroll
    for (int q = 0; q < kB; ++q) {
      const uint32_t i = base + q * kBlock + threadIdx.x;
      uint32_t spins = 0;
      while (!ll_ready(w[q], epoch)) ll_spin_check(spins), w[q] = ll_load(src + i);
      if (i < n) dst[i] = __uint_as_float(unsigned(w[q]));
    }
  }
}

// ---- weight staging
__device__ __forceinline__ void cp_async16(void* dst, const void* src) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d), "l"(src) : "memory");
#else
  *static_cast<uint4*>(dst) = *static_cast<const uint4*>(src);
#endif
}
__device__ __forceinline__ void cp_async_commit_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\ncp.async.wait_group 0;" ::: "memory");
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;" ::: "memory");
#endif
}

// rows × row_bytes (a multiple of 16) from src rows first_row(i) at stride src_stride bytes into
// dst (dense), 16-byte pieces over the block's threads.
template <typename RowOf>
__device__ __forceinline__ void stage_rows(char* dst, const char* src, size_t src_stride,
                                           uint32_t rows, uint32_t row_bytes, RowOf row_of) {
  const uint32_t per_row = row_bytes / 16, total = rows * per_row;
  for (uint32_t q = threadIdx.x; q < total; q += kBlock) {
    const uint32_t i = q / per_row, o = (q % per_row) * 16;
    cp_async16(dst + size_t(i) * row_bytes + o, src + size_t(row_of(i)) * src_stride + o);
  }
}

// The tensor memory accelerator's 1-D bulk copies (sm_90): one thread hands whole rows to the
// copy engine, which signals an mbarrier as the bytes land; the SM's load/store pipeline stays
// free for the kernel before this one, still computing on the same SM (PDL), where 16-byte
// cp.async pieces (~14 per thread per layer) share that pipeline with it.
// DM_CUDA_DECODE_BLOCK_COPY=cpasync takes the cp.async path on sm_90 too (for A/B); below sm_90
// it is the only one.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
__device__ __forceinline__ unsigned smem_addr(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}
#endif
__device__ __forceinline__ void bulk_begin(unsigned long long* mbar, unsigned bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(mbar)) : "memory");
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(mbar)),
               "r"(bytes)
               : "memory");
#endif
}
__device__ __forceinline__ void bulk_copy(void* dst, const void* src, unsigned bytes,
                                          unsigned long long* mbar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
          smem_addr(dst)),
      "l"(src), "r"(bytes), "r"(smem_addr(mbar))
      : "memory");
#endif
}
__device__ __forceinline__ void bulk_wait(unsigned long long* mbar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  unsigned done = 0;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], 0;\n"
        "selp.u32 %0, 1, 0, p;\n}"
        : "=r"(done)
        : "r"(smem_addr(mbar))
        : "memory");
  } while (!done);
#endif
}
// rows × row_bytes from src rows row_of(i) (stride src_stride bytes) into dst (dense) by thread 0
// as bulk copies: runs of consecutive source rows as one copy each.
template <typename RowOf>
__device__ __forceinline__ void bulk_rows(char* dst, const char* src, size_t src_stride,
                                          uint32_t rows, uint32_t row_bytes, RowOf row_of,
                                          unsigned long long* mbar) {
  uint32_t i = 0;
  while (i < rows) {
    uint32_t n = 1;
    if (src_stride == row_bytes)
      while (i + n < rows && row_of(i + n) == row_of(i) + n) ++n;
    bulk_copy(dst + size_t(i) * row_bytes, src + size_t(row_of(i)) * src_stride, n * row_bytes,
              mbar);
    i += n;
  }
}

// load_f with little code (the staging loop below is unrolled: load_f's switch there made the
// kernel ~120 KB of machine code, and every SM fetches the code it runs each layer): one 16- or
// 32-bit load, then the conversion.
__device__ __forceinline__ float load_any(const void* p, uint32_t dtype, size_t i) {
  if (dtype == 0 || dtype == 3) {
    const uint32_t u = static_cast<const uint32_t*>(p)[i];
    return dtype == 0 ? __uint_as_float(u) : float(int32_t(u));
  }
  const unsigned short h = static_cast<const unsigned short*>(p)[i];
  return dtype == 2 ? __uint_as_float(uint32_t(h) << 16) : __half2float(__ushort_as_half(h));
}

// For q in [0, total): store(q, fetch(q)), each thread's kN fetches issued before its first store
// (one memory round trip per kN · 256 items, where a load-store loop costs one per item: the
// compiler cannot move a load above a store that may alias it).
template <int kN, typename Fetch, typename Store>
__device__ __forceinline__ void batched(uint32_t total, Fetch fetch, Store store) {
  for (uint32_t base = 0; base < total; base += kBlock * kN) {
    float v[kN];
#pragma unroll
    for (int u = 0; u < kN; ++u) {
      const uint32_t q = base + u * kBlock + threadIdx.x;
      v[u] = q < total ? fetch(q) : 0.f;
    }
#pragma unroll
    for (int u = 0; u < kN; ++u) {
      const uint32_t q = base + u * kBlock + threadIdx.x;
      if (q < total) store(q, v[u]);
    }
  }
}

// Eight consecutive weights from shared memory as floats.
template <typename WT>
__device__ __forceinline__ void smem_chunk8(const WT* p, float (&w)[8]) {
  if constexpr (sizeof(WT) == 2) {
    WChunk<WT> c{*reinterpret_cast<const uint4*>(p)};
    unpack_chunk<WT>(c, w);
  } else {
    const float4 a = *reinterpret_cast<const float4*>(p);
    const float4 b = *reinterpret_cast<const float4*>(p + 4);
    w[0] = a.x, w[1] = a.y, w[2] = a.z, w[3] = a.w, w[4] = b.x, w[5] = b.y, w[6] = b.z, w[7] = b.w;
  }
}

// warp_sum (common.cuh) of each of kR partial sums at once: every lane ends with the totals.
template <int kR>
__device__ __forceinline__ void warp_sum_each(float (&acc)[kR]) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
#pragma unroll
    for (int m = 0; m < kR; ++m) acc[m] += __shfl_xor_sync(0xffffffffu, acc[m], o);
}

// Rows i in [0, nrows) of w (dense, K per row, K a multiple of 8) · x, all in shared memory:
// warp w takes rows w, w + 8, … kR at a time (kR chains in flight per lane), lanes stride over
// K in 8-element chunks; epi(i, sum) by lane 0.
template <typename WT, int kR, typename Epi>
__device__ __forceinline__ void rows_dot(const WT* w, uint32_t nrows, const float* x, uint32_t K,
                                         Epi epi) {
  const uint32_t wid = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (uint32_t base = 0; base < nrows; base += kWarps * kR) {
    float acc[kR];
#pragma unroll
    for (int m = 0; m < kR; ++m) acc[m] = 0.f;
    for (uint32_t k = lane * 8; k < K; k += 256) {
#pragma unroll
      for (int m = 0; m < kR; ++m) {
        const uint32_t i = base + wid + kWarps * m;
        if (i < nrows) {
          float wv[8];
          smem_chunk8<WT>(w + size_t(i) * K + k, wv);
          acc[m] = dot8(wv, x + k, acc[m]);
        }
      }
    }
    warp_sum_each<kR>(acc);
    if (lane == 0)
#pragma unroll
      for (int m = 0; m < kR; ++m) {
        const uint32_t i = base + wid + kWarps * m;
        if (i < nrows) epi(i, acc[m]);
      }
  }
}

// The same for a few long rows: every thread takes K-chunks tid, tid + 256, … of up to kR rows at
// once, the warps' sums meet in `red` (kWarps · kR floats) and thread m adds them in warp order.
// Ends with a barrier.
template <typename WT, int kR, typename Epi>
__device__ __forceinline__ void rows_dot_ksplit(const WT* w, uint32_t nrows, const float* x,
                                                uint32_t K, float* red, Epi epi) {
  const uint32_t wid = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (uint32_t base = 0; base < nrows; base += kR) {
    float acc[kR];
#pragma unroll
    for (int m = 0; m < kR; ++m) acc[m] = 0.f;
    for (uint32_t k = threadIdx.x * 8; k < K; k += kBlock * 8) {
      const float4 xa = *reinterpret_cast<const float4*>(x + k);
      const float4 xb = *reinterpret_cast<const float4*>(x + k + 4);
      const float xv[8] = {xa.x, xa.y, xa.z, xa.w, xb.x, xb.y, xb.z, xb.w};
#pragma unroll
      for (int m = 0; m < kR; ++m)
        if (base + m < nrows) {
          float wv[8];
          smem_chunk8<WT>(w + size_t(base + m) * K + k, wv);
#pragma unroll
          for (int j = 0; j < 8; ++j) acc[m] = fmaf(wv[j], xv[j], acc[m]);
        }
    }
    warp_sum_each<kR>(acc);
    if (lane == 0)
#pragma unroll
      for (int m = 0; m < kR; ++m) red[wid * kR + m] = acc[m];
    __syncthreads();
    if (threadIdx.x < kR && base + threadIdx.x < nrows) {
      float t = 0.f;
#pragma unroll
      for (int q = 0; q < kWarps; ++q) t += red[q * kR + threadIdx.x];
      epi(base + threadIdx.x, t);
    }
    __syncthreads();
  }
}

template <typename WT, bool kTrace>
__global__ void __launch_bounds__(kBlock, 2) mamba_block_step_kernel(KernelArgs k) {
  unsigned long long ts[kTrace ? kTraceStamps : 1], clk[2] = {0, 0};
  auto stamp = [&](int i) {
    if constexpr (kTrace) {
      if (threadIdx.x == 0) {
        ts[i] = global_ns();
        if (i == 2) clk[0] = clock64();
        if (i == 10) clk[1] = clock64();
      }
    }
  };
  stamp(0);
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ double red[32];
  __shared__ float wsum[kWarps];
  __shared__ float rsum[kWarps * 8];
  __shared__ unsigned long long mbar;  // the bulk copies' barrier (sm_90)
  const MambaBlockStepParams& p = k.p;
  const MambaBlockStepPtrs& a = k.a;
  const Plan& pl = k.pl;
  const uint32_t tid = threadIdx.x, wid = tid >> 5, lane = tid & 31, b = blockIdx.x;
  const uint32_t D = pl.D, E = pl.E, R = pl.R, P = pl.P, G = pl.G, cpb = pl.cpb;
  const uint32_t c0 = b * cpb, nc = min(cpb, E - c0);
  const uint32_t r0 = b * pl.rpb, nr = r0 < D ? min(pl.rpb, D - r0) : 0u;
  auto sm = [&](uint32_t off) { return reinterpret_cast<float*>(smem + off); };
  WT* w_in = reinterpret_cast<WT*>(smem + pl.o_win);    // [2 nc][D]: x rows, then z rows
  WT* w_out = reinterpret_cast<WT*>(smem + pl.o_wout);  // [nr][E]
  float *xs = sm(pl.o_xs), *res = sm(pl.o_res), *ys = sm(pl.o_ys), *nw = sm(pl.o_nw);
  float *xw = sm(pl.o_xw), *dtw = sm(pl.o_dtw), *As = sm(pl.o_A), *cw = sm(pl.o_cw);
  float *cb = sm(pl.o_cb), *dtb = sm(pl.o_dtb), *Dv = sm(pl.o_Dv), *inb = sm(pl.o_inb);
  float *outb = sm(pl.o_outb), *xzv = sm(pl.o_xz), *xcv = sm(pl.o_xc), *xd = sm(pl.o_xd);
  float *hs = sm(pl.o_h), *win4 = sm(pl.o_win4);

  // ---- Weights (nothing an earlier kernel writes): before griddepcontrol.wait.
  const RmsNormGemmParams& f = p.front;
  const DtProjScanStepParams& sc = p.scan;
  const size_t wsz = sizeof(WT);
  const uint32_t in_bytes = D * uint32_t(wsz), out_bytes = E * uint32_t(wsz);
  auto in_row = [&](uint32_t i) { return i < nc ? c0 + i : E + c0 + (i - nc); };
  auto out_row = [&](uint32_t i) { return r0 + i; };
  const bool bulk = k.bulk;
  if (bulk) {
    if (tid == 0) {
      bulk_begin(&mbar, (2 * nc * in_bytes) + nr * out_bytes);
      bulk_rows(reinterpret_cast<char*>(w_in), static_cast<const char*>(a.in_proj),
                size_t(f.gemm.w_stride) * wsz, 2 * nc, in_bytes, in_row, &mbar);
      bulk_rows(reinterpret_cast<char*>(w_out), static_cast<const char*>(a.out_proj),
                size_t(p.out.w_stride) * wsz, nr, out_bytes, out_row, &mbar);
    }
  } else {
    stage_rows(reinterpret_cast<char*>(w_in), static_cast<const char*>(a.in_proj),
               size_t(f.gemm.w_stride) * wsz, 2 * nc, in_bytes, in_row);
    stage_rows(reinterpret_cast<char*>(w_out), static_cast<const char*>(a.out_proj),
               size_t(p.out.w_stride) * wsz, nr, out_bytes, out_row);
  }
  cp_async_commit();
  // The small tensors as floats, one item space: norm weight (D), x_proj columns (P · nc, as
  // xw[j][i]), dt_proj rows (nc · R), A_log (nc · 16), conv taps (nc · 4), conv bias, dt bias,
  // D (nc each), in_proj bias (2 nc), out_proj bias (nr). Biases that are absent read as 0.
  {
    const uint32_t s1 = D, s2 = s1 + P * nc, s3 = s2 + nc * R, s4 = s3 + nc * 16,
                   s5 = s4 + nc * 4, s6 = s5 + 3 * nc, s7 = s6 + 2 * nc, total = s7 + nr;
    // Item q's source (null: an absent bias, 0) and destination; one load_any per item, so the
    // unrolled batch holds four loads, not four per segment.
    struct Item {
      const void* p;
      uint32_t dtype;
      size_t i;
      float* dst;
    };
    auto item = [&](uint32_t q) -> Item {
      if (q < s1) return {a.norm_w, f.norm.weight_dtype, q, nw + q};
      if (q < s2) {
        const uint32_t j = (q - s1) / nc, i = (q - s1) % nc;
        return {a.x_proj, p.x_proj.w_dtype, size_t(j) * p.x_proj.w_stride + c0 + i, xw + j * cpb + i};
      }
      if (q < s3) {
        const uint32_t i = (q - s2) / R, r = (q - s2) % R;
        return {a.dt_proj, sc.dt.w_dtype, size_t(c0 + i) * sc.dt.w_stride + r, dtw + (q - s2)};
      }
      if (q < s4) return {a.A_log, sc.scan.A_log_dtype, size_t(c0) * 16 + (q - s3), As + (q - s3)};
      if (q < s5) return {a.conv_w, f.conv.weight_dtype, size_t(c0) * 4 + (q - s4), cw + (q - s4)};
      if (q < s6) {
        const uint32_t i = q - s5;
        if (i < nc) return {f.conv.has_bias ? a.conv_b : nullptr, f.conv.bias_dtype, c0 + i, cb + i};
        if (i < 2 * nc) return {a.dt_bias, sc.scan.dt_bias_dtype, c0 + i - nc, dtb + (i - nc)};
        return {a.D, sc.scan.D_dtype, c0 + i - 2 * nc, Dv + (i - 2 * nc)};
      }
      if (q < s7) {
        const uint32_t i = q - s6;
        return {f.gemm.has_bias ? a.in_bias : nullptr, f.gemm.bias_dtype,
                i < nc ? c0 + i : E + c0 + i - nc, inb + i};
      }
      return {p.out.has_bias ? a.out_bias : nullptr, p.out.bias_dtype, r0 + (q - s7),
              outb + (q - s7)};
    };
    constexpr int kN = 4;
    for (uint32_t base = 0; base < total; base += kBlock * kN) {
      Item it[kN];
      float v[kN];
#pragma unroll
      for (int u = 0; u < kN; ++u) {
        const uint32_t q = base + u * kBlock + tid;
        it[u] = q < total ? item(q) : Item{nullptr, 0, 0, nullptr};
        v[u] = it[u].p ? load_any(it[u].p, it[u].dtype, it[u].i) : 0.f;
      }
#pragma unroll
      for (int u = 0; u < kN; ++u)
        if (it[u].dst) *it[u].dst = v[u];
    }
  }
  stamp(1);

  pdl_wait();
  pdl_trigger();
  stamp(2);

  // ---- 1. Everything the earlier kernels wrote, loads first (through L2: __ldcg).
  const unsigned epoch = unsigned(__ldcg(k.ex)) + 1u;
  // residual (+ x) and its sum of squares in double, then the normed row: rms_norm.cu's element
  // split and order (element j of a thread is tid + j · 256), so the same bits.
  const bool has_x = f.norm.has_residual != 0;
  float v[kNormPer];
#pragma unroll
  for (int j = 0; j < kNormPer; ++j) {
    const uint32_t i = tid + j * kBlock;
    v[j] = i < D ? __ldcg((has_x ? a.x : a.residual) + i) : 0.f;
    if (has_x && i < D) v[j] = __ldcg(a.residual + i) + v[j];
  }
  // The block's ssm states (16 nc) and conv windows (4 nc).
  batched<2>(20 * nc,
             [&](uint32_t q) {
               return q < 16 * nc ? __ldcg(a.ssm_state + size_t(c0) * 16 + q)
                                  : __ldcg(a.conv_state + size_t(c0) * 4 + (q - 16 * nc));
             },
             [&](uint32_t q, float x) {
               if (q < 16 * nc) hs[q] = x; else win4[q - 16 * nc] = x;
             });
  double ss = 0;
#pragma unroll
  for (int j = 0; j < kNormPer; ++j)
    if (tid + j * kBlock < D) ss += double(v[j]) * double(v[j]);
  const float scale = rms_scale(ss, red, D, f.norm.eps);
#pragma unroll
  for (int j = 0; j < kNormPer; ++j) {
    const uint32_t i = tid + j * kBlock;
    if (i < D) {
      const float nv = (v[j] * scale) * nw[i];
      xs[i] = nv, res[i] = v[j];
      if (b == 0) a.normed[i] = nv;
    }
  }
  if (bulk)
    bulk_wait(&mbar);
  else
    cp_async_commit_wait();
  __syncthreads();
  stamp(3);

  // in_proj: the block's 2 nc rows, three per warp at a time.
  rows_dot<WT, 3>(w_in, 2 * nc, xs, D, [&](uint32_t i, float s) { xzv[i] = s + inb[i]; });
  __syncthreads();
  // conv step + SiLU (causal_conv1d_step.cuh's sum order), xz and xc out.
  for (uint32_t i = tid; i < nc; i += kBlock) {
    const uint32_t c = c0 + i;
    const float xn = xzv[i];
    float* w4 = win4 + i * 4;
    float acc = cb[i];
    acc += cw[i * 4 + 0] * w4[1];
    acc += cw[i * 4 + 1] * w4[2];
    acc += cw[i * 4 + 2] * w4[3];
    acc += cw[i * 4 + 3] * xn;
    *reinterpret_cast<float4*>(a.conv_state + size_t(c) * 4) = make_float4(w4[1], w4[2], w4[3], xn);
    const float u = silu(acc);
    xcv[i] = u;
    a.xc[c] = u;
    a.xz[c] = xn;
    a.xz[E + c] = xzv[nc + i];
  }
  __syncthreads();
  stamp(4);
  // The block's partial x_proj sums over its channels → part[j][b].
  unsigned long long* part = k.ex + kPartWord;
  unsigned long long* xdbl = part + size_t(P) * G;
  unsigned long long* yll = xdbl + P;
  for (uint32_t j = tid; j < P; j += kBlock) {
    float s = 0.f;
#pragma unroll 1
    for (uint32_t i = 0; i < nc; ++i) s = fmaf(xw[j * cpb + i], xcv[i], s);
    ll_store(part + size_t(j) * G + b, s, epoch);
  }
  stamp(5);

  // ---- 2. Block j reduces x_proj output j over the G partials: thread t sums blocks t, t + 256,
  // … in order, then the warps' butterflies, then warp 0…7 in order (fixed, timing-free).
  for (uint32_t j = b; j < P; j += G) {
    float s = 0.f;
    for (uint32_t t = tid; t < G; t += kBlock) {
      unsigned long long w = ll_load(part + size_t(j) * G + t);
      uint32_t spins = 0;
      while (!ll_ready(w, epoch)) ll_spin_check(spins), w = ll_load(part + size_t(j) * G + t);
      s += __uint_as_float(unsigned(w));
    }
    s = warp_sum(s);
    if (lane == 0) wsum[wid] = s;
    __syncthreads();
    if (tid == 0) {
      float t = 0.f;
#pragma unroll
      for (int q = 0; q < kWarps; ++q) t += wsum[q];
      ll_store(xdbl + j, t, epoch);
    }
    __syncthreads();
  }

  stamp(6);

  // ---- 3. dt_low | B | C, then dt_proj + scan step for the block's channels.
  ll_read_row(xdbl, xd, P, epoch);
  __syncthreads();
  stamp(7);
  if (b == 0) {
#pragma unroll 1
    for (uint32_t j = tid; j < P; j += kBlock) a.x_dbl[j] = xd[j];
    // Every block has read the old residual: each wrote its x_proj partials after that.
    if (has_x)
#pragma unroll 1
      for (uint32_t i = tid; i < D; i += kBlock) a.residual[i] = res[i];
  }
  const float* Bv = xd + R;
  const float* Cv = Bv + 16;
  for (uint32_t q = 0; q < pl.scan_rounds; ++q) {
    const uint32_t t = q * kBlock + tid, i = t >> 4, n = t & 15;
    const bool valid = i < nc;  // whole 16-lane groups
    float dot = 0.f;
    if (valid)
#pragma unroll 1
      for (uint32_t r = n; r < R; r += 16) dot = fmaf(dtw[i * R + r], xd[r], dot);
#pragma unroll
    for (int o = 8; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
    float acc = 0.f, uv = 0.f;
    if (valid) {
      const uint32_t c = c0 + i;
      if (n == 0) a.dt[c] = dot;
      const float dt = softplus(dot + dtb[i]);
      uv = xcv[i];
      const float du = dt * uv;
      const float hn = expf(dt * -expf(As[i * 16 + n])) * hs[i * 16 + n] + Bv[n] * du;
      a.ssm_state[size_t(c) * 16 + n] = hn;
      acc = hn * Cv[n];
    }
#pragma unroll
    for (int o = 8; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (valid && n == 0) {
      const uint32_t c = c0 + i;
      acc += Dv[i] * uv;
      acc *= silu(xzv[nc + i]);
      a.y[c] = acc;
      ll_store(yll + c, acc, epoch);
    }
  }

  stamp(8);

  // ---- 4. y from every block, then the block's out_proj rows.
  ll_read_row(yll, ys, E, epoch);
  __syncthreads();
  stamp(9);
  rows_dot_ksplit<WT, 8>(w_out, nr, ys, E, rsum,
                         [&](uint32_t i, float s) { a.hidden[r0 + i] = s + outb[i]; });
  // Every block has read the epoch (block 0 has a y of each, written after that read).
  if (b == 0 && tid == 0)
    asm volatile("st.relaxed.gpu.global.u32 [%0], %1;" ::"l"(k.ex), "r"(epoch) : "memory");
  if constexpr (kTrace) {
    __syncthreads();
    stamp(10);
    if (tid == 0 && (b == 0 || b == G - 1)) {
      unsigned long long* rec =
          k.ex + (kDecodeExchangeBytes / 8 - kDecodeTraceWords) +
          ((epoch % kDecodeTraceSlots) * 2 + (b == 0 ? 0 : 1)) * 16;
      for (int i = 0; i < kTraceStamps; ++i) rec[i] = ts[i];
      rec[11] = clk[1] - clk[0];  // SM cycles from stamp 2 to 10
      rec[15] = epoch;
    }
  }
}

uint32_t align16(uint32_t x) { return (x + 15u) & ~15u; }

// Sizes and the shared-memory layout for these shapes on `sms` SMs.
template <typename WT>
Plan make_plan(const MambaBlockStepParams& p, uint32_t sms) {
  Plan pl{};
  pl.D = p.front.norm.D, pl.E = p.scan.scan.channels, pl.R = p.scan.dt.K, pl.P = p.x_proj.N;
  pl.cpb = ceil_div(pl.E, sms);
  pl.G = ceil_div(pl.E, pl.cpb);
  pl.rpb = ceil_div(pl.D, pl.G);
  pl.scan_rounds = ceil_div(uint64_t(pl.cpb) * 16, kBlock);
  uint32_t o = 0;
  auto take = [&](uint32_t bytes) { const uint32_t at = o; o = align16(o + bytes); return at; };
  const uint32_t f = sizeof(float), cpb = pl.cpb;
  pl.o_win = take(2 * cpb * pl.D * uint32_t(sizeof(WT)));
  pl.o_wout = take(pl.rpb * pl.E * uint32_t(sizeof(WT)));
  pl.o_xs = take(pl.D * f), pl.o_res = take(pl.D * f), pl.o_ys = take(pl.E * f);
  pl.o_nw = take(pl.D * f), pl.o_xw = take(pl.P * cpb * f), pl.o_dtw = take(cpb * pl.R * f);
  pl.o_A = take(cpb * 16 * f), pl.o_cw = take(cpb * 4 * f), pl.o_cb = take(cpb * f);
  pl.o_dtb = take(cpb * f), pl.o_Dv = take(cpb * f), pl.o_inb = take(2 * cpb * f);
  pl.o_outb = take(pl.rpb * f), pl.o_xz = take(2 * cpb * f), pl.o_xc = take(cpb * f);
  pl.o_xd = take(pl.P * f), pl.o_h = take(cpb * 16 * f), pl.o_win4 = take(cpb * 4 * f);
  pl.bytes = o;
  return pl;
}

size_t exchange_bytes(const Plan& pl) {
  return 8 * (kPartWord + size_t(pl.P) * pl.G + pl.P + pl.E + kDecodeTraceWords);
}

// Whether every block of the grid fits at once: G ≤ SMs and one block's shared memory fits an SM
// (the opt-in maximum asked once per instantiation).
template <typename WT>
bool plan_fits(const Plan& pl, uint32_t sms) {
  static const int max_optin = [] {
    int dev = 0, v = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    // kernel's static shared memory (red, wsum, mbar) rides on top
    return v - int(kStaticSmem);
  }();
  return pl.G <= sms && pl.D <= kMaxD && int(pl.bytes) <= max_optin &&
         exchange_bytes(pl) <= kDecodeExchangeBytes;
}

template <typename WT>
bool rows16(const GemmParams& g, const void* w) {  // cp.async's 16-byte pieces
  return (size_t(g.K) * sizeof(WT)) % 16 == 0 && aligned16(w) &&
         (size_t(g.w_stride) * sizeof(WT)) % 16 == 0;
}

template <typename WT>
bool supported_typed(const MambaBlockStepParams& p, const MambaBlockStepPtrs& a) {
  const uint32_t sms = uint32_t(sm_count());
  return rows16<WT>(p.front.gemm, a.in_proj) && rows16<WT>(p.out, a.out_proj) &&
         plan_fits<WT>(make_plan<WT>(p, sms), sms);
}

template <typename WT, bool kTrace>
cudaError_t launch_typed(const MambaBlockStepParams& p, const MambaBlockStepPtrs& a,
                         void* exchange, cudaStream_t s) {
  auto kernel = mamba_block_step_kernel<WT, kTrace>;
  const uint32_t sms = uint32_t(sm_count());
  KernelArgs k{};
  k.p = p;
  k.a = a;
  k.pl = make_plan<WT>(p, sms);
  k.ex = static_cast<unsigned long long*>(exchange);
  if (!plan_fits<WT>(k.pl, sms)) return cudaErrorInvalidConfiguration;
  const char* copy = std::getenv("DM_CUDA_DECODE_BLOCK_COPY");
  k.bulk = device_sm90_or_later() && !(copy && std::strcmp(copy, "cpasync") == 0);
  static const cudaError_t attr = [&] {
    int dev = 0, v = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                v - int(kStaticSmem));
  }();
  if (attr != cudaSuccess) return attr;
  return launch_pdl(kernel, dim3(k.pl.G), dim3(kBlock), k.pl.bytes, s, k);
}

}  // namespace

bool mamba_block_step_supported(const MambaBlockStepParams& p, const MambaBlockStepPtrs& a) {
  const RmsNormGemmParams& f = p.front;
  const bool shapes =
      f.norm.L == 1 && f.gemm.M == 1 && f.has_conv && f.conv.batch == 1 && f.conv.d_conv == 4 &&
      f.norm.D >= 1 && f.norm.D <= kMaxD && p.scan.scan.batch == 1 &&
      p.scan.scan.d_state == 16 && p.scan.dt.M == 1 && p.scan.scan.channels >= 1 &&
      p.scan.scan.has_z && p.x_proj.M == 1 && !p.x_proj.has_bias && p.out.M == 1 &&
      p.x_proj.w_dtype == f.gemm.w_dtype && p.out.w_dtype == f.gemm.w_dtype;
  if (!shapes || !aligned16(a.conv_state)) return false;  // conv windows as float4
  switch (f.gemm.w_dtype) {
    case 0: return supported_typed<float>(p, a);
    case 1: return supported_typed<__half>(p, a);
    case 2: return supported_typed<__nv_bfloat16>(p, a);
    default: return false;
  }
}

cudaError_t launch_mamba_block_step(const MambaBlockStepParams& p, const MambaBlockStepPtrs& a,
                                    void* exchange, cudaStream_t s) {
  if (!mamba_block_step_supported(p, a)) return cudaErrorInvalidValue;
  const char* t = std::getenv("DM_CUDA_DECODE_BLOCK_TRACE");
  const bool trace = t && t[0] == '1';
  switch (p.front.gemm.w_dtype) {
    case 0: return trace ? launch_typed<float, true>(p, a, exchange, s) : launch_typed<float, false>(p, a, exchange, s);
    case 1: return trace ? launch_typed<__half, true>(p, a, exchange, s) : launch_typed<__half, false>(p, a, exchange, s);
    case 2: return trace ? launch_typed<__nv_bfloat16, true>(p, a, exchange, s) : launch_typed<__nv_bfloat16, false>(p, a, exchange, s);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace dm::cuda
