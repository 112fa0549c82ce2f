// dt_proj_importance (backend.h): a decimating layer's token scores straight from the
// projection, score[t] = ‖softplus(dt_low[t,:] · dt_projᵀ + dt_bias)‖₂ over the C channels,
// without writing the L × C delta (201 MB for a 32K-token 130m layer) and reading it back.
// The composition it replaces, the dt_proj GEMM (77.8 µs) then dt_importance (110.6 µs), took
// ~188 µs of a 32K-token decimated 130m prefill on an H100 (ncu, session 8).
//
// One block: kBM = 64 tokens in 4 groups of 16 (an MMA's rows), each group's channels split over
// two warps (8 warps: twice the warps a token needs, for latency hiding), the channels in chunks
// of kBN = 64.
// The projection runs on tensor cores (mma.sync m16n8k16, fp32 accumulate) as the GEMM's does:
// dt_low is split into hi = T(x) and lo = T(x − hi) (T = the weight's fp16 / bf16, the GEMM
// operand's split, common.cuh split_store), both multiplied by the same weight tile. A warp keeps
// its 16 tokens' hi / lo fragments in registers for the whole kernel; each chunk's weights (and
// bias) are staged in shared memory by the block. Per output: + bias, softplus (a short form
// with a ~2e-7 absolute error: softplus_score below), squared and summed in double, each thread
// over its columns in chunk order, then over the four threads of a row and the two halves in a
// fixed order: the same bits on every launch.
//
// Not the same bits as the composition: the MMAs accumulate over k in another order than
// cuBLAS, so delta differs in its last bits and a score by ~1e-7 relative; the kept set differs
// only where two scores are that close (the tests compare with the CPU's kept set exactly).
// Shapes: dt_rank ≤ 160 (every Mamba-1 size up to 2.8b), F16 / BF16 weights; anything else is
// cudaErrorNotSupported and the backend composes.
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "common.cuh"
#include "selective_scan_common.cuh"  // the cp.async and MUFU wrappers

namespace dm::cuda {
namespace {

constexpr int kGroups = 4;              // token groups of 16 (an MMA's rows) per block
constexpr int kHalves = 2;              // each group's channels split over two warps
constexpr int kWarps = kGroups * kHalves;
constexpr int kBM = 16 * kGroups;       // tokens per block
constexpr int kBN = 64;                 // channels per staged chunk: 4 pairs of 8-column tiles,
constexpr int kPairsPerWarp = kBN / 16 / kHalves;  // 2 of them per warp
constexpr uint32_t kMaxRank = 160;

// d += a · b on tensor cores, one m16n8k16 tile, fp32 accumulate; TYPE the operands' PTX type.
#define DM_MMA_16816(TYPE, d, a, b0, b1)                                                      \
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." TYPE "." TYPE                         \
               ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"                 \
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])                                 \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1))

// The weight type's conversions and MMA (T = __half or __nv_bfloat16).
template <typename T>
struct Tc {
  static constexpr bool kHalf = std::is_same_v<T, __half>;
  static __device__ __forceinline__ T from(float v) {
    if constexpr (kHalf) return __float2half_rn(v);
    else return __float2bfloat16_rn(v);
  }
  static __device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                             uint32_t b1) {
    if constexpr (kHalf) DM_MMA_16816("f16", d, a, b0, b1);
    else DM_MMA_16816("bf16", d, a, b0, b1);
  }
};

// softplus(v) = max(v, 0) + log1p(exp(−|v|)), from the approximate exp2 and log2 (two MUFU
// operations, ~6 instructions against ~40 of common.cuh's log1pf(expf(v))). Its error is absolute,
// ~2e-7 (lg2.approx near 1), about what the tensor-core projection's rounding of v already puts
// into a term (the test compares the scores with the CPU's and the kept set exactly). Past 20
// the CPU returns v; this returns v + exp(−v) rounded, the same float there. (The scan's
// scan::softplus_fast is the other form, lg2(1 + 2^v), whose rounding differs for v > 0.)
__device__ __forceinline__ float softplus_score(float v) {
  constexpr float kLn2 = 0.6931471805599453f;
  const float t = scan::ex2_approx(-fabsf(v) * scan::kLog2e);
  return fmaf(scan::lg2_approx(1.f + t), kLn2, fmaxf(v, 0.f));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem_row) {
  const uint32_t a = uint32_t(__cvta_generic_to_shared(smem_row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}

// Shared memory, in 16-bit elements, rows of S = 16·KS + 8 (an odd number of 16-byte pieces, so
// the 8 rows an ldmatrix reads fall on distinct bank groups): x hi [kBM][S], x lo [kBM][S],
// two weight chunks [2][kBN][S] (the next one lands while this one is used); then [2][kBN]
// fp32 biases.
__host__ __device__ constexpr uint32_t row_elems(int ks) { return 16u * uint32_t(ks) + 8u; }
__host__ __device__ constexpr size_t smem_bytes(int ks) {
  return size_t(2 * kBM + 2 * kBN) * row_elems(ks) * 2 + 2 * kBN * sizeof(float);
}

// KSMAX: the most 16-wide k steps the instantiation holds in registers (R ≤ 16·KSMAX).
// kVec: dt_low rows in float4 pieces and weight rows in 16-byte cp.async pieces (R, both strides
// multiples of 8 elements, both pointers 16-byte aligned); otherwise element by element.
template <typename T, int KSMAX, bool kVec>
__global__ void __launch_bounds__(kWarps * 32, KSMAX <= 4 ? 4 : 2) dt_proj_importance_kernel(
    DtProjImportanceParams p, const float* __restrict__ dt_low, const T* __restrict__ w,
    const void* __restrict__ dt_bias, float* __restrict__ scores) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  extern __shared__ __align__(16) unsigned char smem[];
  const uint32_t L = p.importance.L, C = p.importance.channels, R = p.dt.K;
  const int KS = int((R + 15) / 16);
  const uint32_t S = row_elems(KS);
  T* sxh = reinterpret_cast<T*>(smem);
  T* sxl = sxh + kBM * S;
  T* sw0 = sxl + kBM * S;
  float* sb0 = reinterpret_cast<float*>(sw0 + 2 * kBN * S);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int grp = warp % kGroups, half = warp / kGroups;  // token group, channel half
  constexpr int kThreads = kWarps * 32;
  const uint32_t t0 = blockIdx.x * kBM;
  const uint32_t nchunks = (C + kBN - 1) / kBN;
  // The block's dt_low rows as the GEMM operand's hi / lo pair (common.cuh split_store).
  GemmSplitOut xs;
  xs.hi = sxh, xs.lo = sxl, xs.dtype = Tc<T>::kHalf ? 1 : 2, xs.cols = S, xs.stride = S;

  // Chunk j's weights into buffer j % 2 and its biases; rows past C are left as they are (their
  // outputs are dropped), columns past R stay zero (set below, never copied over).
  const auto stage = [&](uint32_t j) {
    const uint32_t n0 = j * kBN;
    T* sw = sw0 + (j & 1) * kBN * S;
    if constexpr (kVec) {
      const uint32_t pieces = R / 8;  // 16-byte pieces a row
      for (uint32_t i = tid; i < kBN * pieces; i += kThreads) {
        const uint32_t n = i / pieces, q = i % pieces;
        if (n0 + n < C)
          scan::cp_async16(sw + n * S + 8 * q, w + size_t(n0 + n) * p.dt.w_stride + 8 * q, true);
      }
    } else {
      for (uint32_t i = tid; i < kBN * R; i += kThreads) {
        const uint32_t n = i / R, k = i % R;
        if (n0 + n < C) sw[n * S + k] = w[size_t(n0 + n) * p.dt.w_stride + k];
      }
    }
    if (tid < kBN)
      sb0[(j & 1) * kBN + tid] =
          n0 + tid < C ? load_f(dt_bias, p.importance.dt_bias_dtype, n0 + tid) : 0.f;
  };

  // Zero both weight buffers' k padding (and, for the element path, everything), then start the
  // first chunk's copy; the block's tokens are split meanwhile (zeros past L and past R).
  for (uint32_t i = tid; i < 2 * kBN * S; i += kThreads)
    if (!kVec || i % S >= R) sw0[i] = Tc<T>::from(0.f);
  __syncthreads();
  stage(0);
  scan::cp_async_commit();
  if constexpr (kVec) {
    const uint32_t pieces = S / 4;  // float4 pieces of a padded row
    for (uint32_t i = tid; i < kBM * pieces; i += kThreads) {
      const uint32_t r = i / pieces, k = 4 * (i % pieces);
      float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
      if (t0 + r < L && k < R)
        v = *reinterpret_cast<const float4*>(dt_low + size_t(t0 + r) * p.dt.x_stride + k);
      split_store4(xs, r, k, v);
    }
  } else {
    for (uint32_t i = tid; i < kBM * S; i += kThreads) {
      const uint32_t r = i / S, k = i % S;
      split_store(xs, r, k, (t0 + r < L && k < R) ? dt_low[size_t(t0 + r) * p.dt.x_stride + k] : 0.f);
    }
  }
  __syncthreads();
  // This warp's 16 rows as A fragments (ldmatrix x4: rows lane % 16, k half lane / 16).
  uint32_t ah[KSMAX][4], al[KSMAX][4];
  {
    const uint32_t off = (16 * grp + (lane & 15)) * S + (lane >> 4) * 8;
#pragma unroll
    for (int ks = 0; ks < KSMAX; ++ks)
      if (ks < KS) {
        ldmatrix_x4(ah[ks], sxh + off + 16 * ks);
        ldmatrix_x4(al[ks], sxl + off + 16 * ks);
      }
  }

  double ss[2] = {0.0, 0.0};  // rows lane / 4 and lane / 4 + 8 of the group's 16, this half
  // B fragments of two 8-column tiles (ldmatrix x4 on w[n][k]: matrices (n 0-7, k 0-7),
  // (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15)).
  const uint32_t boff = ((lane >> 4) * 8 + (lane & 7)) * S + ((lane >> 3) & 1) * 8;
  for (uint32_t j = 0; j < nchunks; ++j) {
    // Chunk j + 1 goes into the other buffer, last read in iteration j − 1 (barrier below).
    if (j + 1 < nchunks) stage(j + 1);
    scan::cp_async_commit();
    scan::cp_async_wait<1>();  // chunk j's copies (this thread's) have landed
    __syncthreads();     // ... and everyone's, and their biases
    const uint32_t n0 = j * kBN;
    const T* sw = sw0 + (j & 1) * kBN * S;
    const float* sb = sb0 + (j & 1) * kBN;
#pragma unroll
    for (int q = 0; q < kPairsPerWarp; ++q) {
      const int np = half * kPairsPerWarp + q;  // this warp's pairs of 8-column tiles
      float acc[2][4] = {};
#pragma unroll
      for (int ks = 0; ks < KSMAX; ++ks)
        if (ks < KS) {
          uint32_t b[4];
          ldmatrix_x4(b, sw + boff + np * 16 * S + 16 * ks);
          Tc<T>::mma(acc[0], al[ks], b[0], b[1]);
          Tc<T>::mma(acc[1], al[ks], b[2], b[3]);
          Tc<T>::mma(acc[0], ah[ks], b[0], b[1]);
          Tc<T>::mma(acc[1], ah[ks], b[2], b[3]);
        }
#pragma unroll
      for (int nt = 0; nt < 2; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const uint32_t col = np * 16 + nt * 8 + 2 * (lane & 3) + (e & 1);
          if (n0 + col < C) {
            const float sp = softplus_score(acc[nt][e] + sb[col]);
            ss[e >> 1] += double(sp) * double(sp);
          }
        }
    }
    __syncthreads();  // buffer j % 2 is free for chunk j + 2
  }
  // A row's sum: its four threads in a fixed order, then half 0's sum + half 1's.
  __shared__ double red[kHalves][kBM];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    ss[h] += __shfl_xor_sync(0xffffffffu, ss[h], 1);
    ss[h] += __shfl_xor_sync(0xffffffffu, ss[h], 2);
    if ((lane & 3) == 0) red[half][16 * grp + (lane >> 2) + 8 * h] = ss[h];
  }
  __syncthreads();
  if (tid < kBM && t0 + tid < L) scores[t0 + tid] = float(sqrt(red[0][tid] + red[1][tid]));
#endif  // below sm_80 (no bf16 MMA) the launcher refuses and the backend composes
}

bool device_sm80_or_later() {
  int dev = 0, major = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return major >= 8;
}

template <typename T, int KSMAX>
cudaError_t launch(const DtProjImportanceParams& p, const float* dt_low, const void* w,
                   const void* dt_bias, float* scores, cudaStream_t s) {
  const int ks = int((p.dt.K + 15) / 16);
  const size_t bytes = smem_bytes(ks);
  const bool vec = p.dt.K % 8 == 0 && p.dt.x_stride % 8 == 0 && p.dt.w_stride % 8 == 0 &&
                   reinterpret_cast<uintptr_t>(dt_low) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(w) % 16 == 0;
  auto* kernel = vec ? dt_proj_importance_kernel<T, KSMAX, true>
                     : dt_proj_importance_kernel<T, KSMAX, false>;
  if (bytes > 48 * 1024) {
    const cudaError_t e =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
    if (e != cudaSuccess) return e;
  }
  kernel<<<ceil_div(p.importance.L, kBM), kWarps * 32, bytes, s>>>(
      p, dt_low, static_cast<const T*>(w), dt_bias, scores);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_dt_proj_importance(const DtProjImportanceParams& p, const float* dt_low,
                                      const void* dt_proj, const void* dt_bias, float* scores,
                                      cudaStream_t s) {
  const char* e = std::getenv("DM_CUDA_DT_PROJ_IMPORTANCE");
  if (e && std::strcmp(e, "0") == 0) return cudaErrorNotSupported;
  const uint32_t wt = p.dt.w_dtype;
  if (p.dt.K == 0 || p.dt.K > kMaxRank || (wt != 1 && wt != 2) || !device_sm80_or_later())
    return cudaErrorNotSupported;
  if (p.importance.L == 0) return cudaSuccess;
  const bool small = p.dt.K <= 64;
  if (wt == 1)
    return small ? launch<__half, 4>(p, dt_low, dt_proj, dt_bias, scores, s)
                 : launch<__half, 10>(p, dt_low, dt_proj, dt_bias, scores, s);
  return small ? launch<__nv_bfloat16, 4>(p, dt_low, dt_proj, dt_bias, scores, s)
               : launch<__nv_bfloat16, 10>(p, dt_low, dt_proj, dt_bias, scores, s);
}

}  // namespace dm::cuda
