// dst[i,:] = src[idx[i],:] as fp32 (also the embedding lookup): one warp per output row, eight
// rows a block. Where every row of src and dst starts on 16 bytes, a lane moves 16 source bytes
// at a time (4 fp32, or 8 fp16 / bf16 widened to two float4 stores), four such loads in flight;
// the columns past the last whole vector, and rows that are not aligned, go element by element.
// H100 (ncu, decimating 130m prefill at 32K, session 8): the 32K-row fp16 embedding lookup
// 58.7-60.6 us (floor: 151 MB at 3 TB/s, 50 us), the 2,000-row fp32 gathers of 1536 columns
// 9.4-9.8 us (floor 8.2 us); all six 98.5-100.4 us. (One 256-thread block per row with scalar
// loads, the first form, left most threads idle on 768-column fp16 rows: 82.7-83.4, 10.8-11.1,
// 128.4-129.1 us.) The 2,000 x 768 residual gather stays at 6.9-7.1 us (1.8 TB/s; not examined).
// An index outside [0, src_rows) leaves that row unwritten and is recorded (the first one) in
// the backend's error slot, which the host turns into a dm::Error at the next synchronize.
#include "common.cuh"
#include "fused_step.cuh"

namespace dm::cuda {
namespace {

constexpr int kWarps = 8;   // rows per block
constexpr int kUnroll = 4;  // 16-byte loads in flight per lane

// 16 source bytes widened to fp32: 4 or 8 values.
template <int kDtype>
struct Vec;
template <>
struct Vec<0> {
  static constexpr int kElems = 4;
  static __device__ __forceinline__ void store(float* d, uint4 v) {
    *reinterpret_cast<uint4*>(d) = v;
  }
};
template <int kDtype>
struct Vec16 {  // F16 (1) / BF16 (2)
  static constexpr int kElems = 8;
  static __device__ __forceinline__ float2 pair(uint32_t u) {
    if constexpr (kDtype == 1) {
      return __half22float2(*reinterpret_cast<const __half2*>(&u));
    } else {
      return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u));
    }
  }
  static __device__ __forceinline__ void store(float* d, uint4 v) {
    const float2 a = pair(v.x), b = pair(v.y), c = pair(v.z), e = pair(v.w);
    reinterpret_cast<float4*>(d)[0] = make_float4(a.x, a.y, b.x, b.y);
    reinterpret_cast<float4*>(d)[1] = make_float4(c.x, c.y, e.x, e.y);
  }
};
template <>
struct Vec<1> : Vec16<1> {};
template <>
struct Vec<2> : Vec16<2> {};

// kVecDtype: -1 element by element (any dtype), else the source dtype of the 16-byte path.
template <int kVecDtype>
__global__ void __launch_bounds__(kWarps * 32) gather_rows_kernel(GatherRowsParams p,
                                                                  const char* src,
                                                                  const int32_t* idx, float* dst,
                                                                  DeviceErrorInfo* err) {
  pdl_trigger();  // the decode step's first fused kernel may start loading its weights
  const uint32_t lane = threadIdx.x & 31;
  const uint32_t i = blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (i >= p.n) return;
  const int32_t r = idx[i];
  if (r < 0 || uint32_t(r) >= p.src_rows) {
    if (lane == 0 && atomicCAS(&err->code, 0, kErrGatherIndex) == 0) {
      err->a = i;
      err->b = r;
      err->c = p.src_rows;
      __threadfence_system();
    }
    return;
  }
  const size_t esize = p.src_dtype == 0 ? 4 : 2;
  const char* row = src + size_t(r) * p.src_stride * esize;
  float* d = dst + size_t(i) * p.dst_stride;
  uint32_t c0 = 0;  // first column left to the element loop
  if constexpr (kVecDtype >= 0) {
    using V = Vec<kVecDtype>;
    const uint4* s4 = reinterpret_cast<const uint4*>(row);
    const uint32_t nv = p.cols / V::kElems;
    uint32_t v = lane;
    for (; v + 32 * (kUnroll - 1) < nv; v += 32 * kUnroll) {
      uint4 x[kUnroll];
#pragma unroll
      for (int j = 0; j < kUnroll; ++j) x[j] = __ldg(s4 + v + 32 * j);
#pragma unroll
      for (int j = 0; j < kUnroll; ++j) V::store(d + size_t(v + 32 * j) * V::kElems, x[j]);
    }
    for (; v < nv; v += 32) V::store(d + size_t(v) * V::kElems, __ldg(s4 + v));
    c0 = nv * V::kElems;
  }
  for (uint32_t c = c0 + lane; c < p.cols; c += 32) d[c] = load_f(row, p.src_dtype, c);
}

template <int kVecDtype>
void launch(const GatherRowsParams& p, const void* src, const int32_t* idx, float* dst,
            DeviceErrorInfo* err, cudaStream_t s) {
  gather_rows_kernel<kVecDtype><<<ceil_div(p.n, kWarps), kWarps * 32, 0, s>>>(
      p, static_cast<const char*>(src), idx, dst, err);
}

}  // namespace

cudaError_t launch_gather_rows(const GatherRowsParams& p, const void* src, const int32_t* idx,
                               float* dst, DeviceErrorInfo* err, cudaStream_t s) {
  if (p.n == 0) return cudaSuccess;  // cols == 0 still checks the indices
  const size_t esize = p.src_dtype == 0 ? 4 : 2;
  const bool vec = p.src_dtype <= 2 && reinterpret_cast<uintptr_t>(src) % 16 == 0 &&
                   size_t(p.src_stride) * esize % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(dst) % 16 == 0 && p.dst_stride % 4 == 0;
  if (!vec)
    launch<-1>(p, src, idx, dst, err, s);
  else if (p.src_dtype == 0)
    launch<0>(p, src, idx, dst, err, s);
  else if (p.src_dtype == 1)
    launch<1>(p, src, idx, dst, err, s);
  else
    launch<2>(p, src, idx, dst, err, s);
  return cudaGetLastError();
}

}  // namespace dm::cuda
