// Depthwise causal conv1d + bias + SiLU over a prompt. Thread per (channel, run of `tile`
// tokens): consecutive threads take consecutive channels, so every load and store of a token row
// is coalesced. The tile is 32 tokens, halved (down to 8) while the grid would have fewer than
// kMinBlocks blocks: a 2,000-row prompt (DeciMamba's decimated layers) then still fills the GPU,
// at the price of d_conv - 1 more loads per tile. Inputs before the first token come from the
// conv state (its last d_conv-1 entries). The new state (the last d_conv inputs) is written by
// the threads of a first tile, after their own reads of the old state: only they read it, so
// no other kernel is needed to order the two. A launch covers rows [row0, row0 + rows) (the
// prompt fusion causal_conv1d_gemm runs the conv in the GEMM's row slices, each writing the
// slice's GEMM operand besides y: kernels.h GemmSplitOut); the last one whose rows reach into the
// state writes it.
// d_conv 4 (every published Mamba) slides a window of registers down time: one load per token,
// independent of the FMAs, so the unrolled loop keeps several rows in flight (the generic kernel
// reloads d_conv inputs per output, a chain of dependent L1 round trips: measured at half the
// speed of the Vulkan shader, which slides, on an H100). Same FMAs in the same order.
#include <algorithm>

#include "common.cuh"

namespace dm::cuda {
namespace {

constexpr int kBlock = 128;
constexpr int kTile = 32;  // tokens per thread, at most
constexpr int kMinTile = 8;
constexpr unsigned kMinBlocks = 2048;  // ~2 waves of 128-thread blocks on 132 SMs at 8 per SM
constexpr int kMaxConv = 8;  // taps kept in registers; wider convs read the weights from L1

// xin(j): the conv input at token j of this call; j < 0 reaches into the state (oldest first).
__device__ __forceinline__ float xin(int64_t j, const float* x, uint32_t x_stride,
                                     const float* st, uint32_t d) {
  return j >= 0 ? x[size_t(j) * x_stride] : st[int64_t(d) + j];
}

// state'[k] = xin(L - d + k), k < d, in place: ascending k reads old[L + k] (k < d - L, where
// L < d) before anything at or after it is written. Called by the thread of the launch's first
// tile after its outputs, i.e. after its last read of the old state; no other thread of the
// launch reads channel c's state (tiles are at least d_conv long) and earlier launches have
// finished.
__device__ __forceinline__ void store_state(const CausalConv1dParams& p, const float* xc, float* st,
                                            uint32_t d) {
#pragma unroll
  for (uint32_t k = 0; k < d; ++k) st[k] = xin(int64_t(p.L) - d + k, xc, p.x_stride, st, d);
}

__global__ void __launch_bounds__(kBlock) causal_conv1d_kernel(CausalConv1dParams p,
                                                               const float* x, const void* weight,
                                                               const void* bias,
                                                               float* conv_state, float* y,
                                                               uint32_t row0, uint32_t rows,
                                                               uint32_t tile, bool write_state,
                                                               GemmSplitOut split) {
  const uint32_t c = blockIdx.x * kBlock + threadIdx.x;
  if (c >= p.channels) return;
  const uint32_t d = p.d_conv;
  const int64_t t0 = row0 + int64_t(blockIdx.y) * tile;
  const int64_t t1 = min(int64_t(row0) + rows, t0 + tile);
  const float b = p.has_bias ? load_f(bias, p.bias_dtype, c) : 0.f;
  float* st = conv_state + size_t(c) * d;
  const float* xc = x + c;
  float w[kMaxConv];
#pragma unroll
  for (int k = 0; k < kMaxConv; ++k)
    w[k] = k < int(d) ? load_f(weight, p.weight_dtype, size_t(c) * d + k) : 0.f;
  for (int64_t t = t0; t < t1; ++t) {
    float acc = b;
    if (d <= kMaxConv) {
#pragma unroll
      for (int k = 0; k < kMaxConv; ++k)
        if (k < int(d)) acc += w[k] * xin(t - int64_t(d) + 1 + k, xc, p.x_stride, st, d);
    } else {
      for (uint32_t k = 0; k < d; ++k)
        acc += load_f(weight, p.weight_dtype, size_t(c) * d + k) *
               xin(t - int64_t(d) + 1 + k, xc, p.x_stride, st, d);
    }
    const float o = silu(acc);
    y[size_t(t) * p.y_stride + c] = o;
    if (split.hi) split_store(split, size_t(t - row0), c, o);
  }
  if (write_state && blockIdx.y == 0) store_state(p, xc, st, d);
}

template <int D>
__global__ void __launch_bounds__(kBlock) causal_conv1d_window_kernel(
    CausalConv1dParams p, const float* __restrict__ x, const void* __restrict__ weight,
    const void* __restrict__ bias, float* __restrict__ conv_state, float* __restrict__ y,
    uint32_t row0, uint32_t rows, uint32_t tile, bool write_state,
    GemmSplitOut split) {
  const uint32_t c = blockIdx.x * kBlock + threadIdx.x;
  if (c >= p.channels) return;
  const int64_t t0 = row0 + int64_t(blockIdx.y) * tile;
  const int64_t t1 = min(int64_t(row0) + rows, t0 + tile);
  const float b = p.has_bias ? load_f(bias, p.bias_dtype, c) : 0.f;
  float* st = conv_state + size_t(c) * D;
  const float* xc = x + c;
  float w[D], win[D];  // win[k]: the input at token t - (D-1) + k
#pragma unroll
  for (int k = 0; k < D; ++k) w[k] = load_f(weight, p.weight_dtype, size_t(c) * D + k);
#pragma unroll
  for (int k = 0; k + 1 < D; ++k) win[k] = xin(t0 - (D - 1) + k, xc, p.x_stride, st, D);
  // Unrolled: the next rows' loads are issued while this row's FMAs wait.
#pragma unroll 8
  for (int64_t t = t0; t < t1; ++t) {
    win[D - 1] = xc[size_t(t) * p.x_stride];
    float acc = b;
#pragma unroll
    for (int k = 0; k < D; ++k) acc += w[k] * win[k];
    const float o = silu(acc);
    y[size_t(t) * p.y_stride + c] = o;
    if (split.hi) split_store(split, size_t(t - row0), c, o);
#pragma unroll
    for (int k = 0; k + 1 < D; ++k) win[k] = win[k + 1];
  }
  if (write_state && blockIdx.y == 0) store_state(p, xc, st, D);
}

}  // namespace

cudaError_t launch_causal_conv1d_rows(const CausalConv1dParams& p, const float* x,
                                      const void* weight, const void* bias, float* conv_state,
                                      float* y, uint32_t row0, uint32_t rows,
                                      const GemmSplitOut& split, cudaStream_t s) {
  if (rows == 0 || p.channels == 0) return cudaSuccess;
  if (uint64_t(row0) + rows > p.L) return cudaErrorInvalidValue;
  const unsigned cblocks = ceil_div(p.channels, kBlock);
  uint32_t tile = kTile;
  while (tile > kMinTile && uint64_t(cblocks) * ceil_div(rows, tile) < kMinBlocks) tile /= 2;
  // Only the first tile may reach into the old state (write_state's premise): tile >= d_conv - 1.
  tile = std::max(tile, p.d_conv);
  // The state is written by the last launch that reads it (a slice starting before d_conv - 1;
  // slices run in order), or by the first where none does (d_conv 1).
  const uint32_t reach = std::max(p.d_conv - 1, 1u);
  const bool write_state = row0 < reach && (row0 + rows >= reach || row0 + rows == p.L);
  const dim3 grid(cblocks, ceil_div(rows, tile));
  if (grid.y > 65535) return cudaErrorInvalidConfiguration;  // > 2M tokens in one call
  if (p.d_conv == 4)
    causal_conv1d_window_kernel<4><<<grid, kBlock, 0, s>>>(p, x, weight, bias, conv_state, y,
                                                           row0, rows, tile, write_state,
                                                           split);
  else
    causal_conv1d_kernel<<<grid, kBlock, 0, s>>>(p, x, weight, bias, conv_state, y, row0, rows,
                                                 tile, write_state, split);
  return cudaGetLastError();
}

cudaError_t launch_causal_conv1d(const CausalConv1dParams& p, const float* x, const void* weight,
                                 const void* bias, float* conv_state, float* y, cudaStream_t s) {
  return launch_causal_conv1d_rows(p, x, weight, bias, conv_state, y, 0, p.L, {}, s);
}

}  // namespace dm::cuda
