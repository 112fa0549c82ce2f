#version 450
// y[M,N] = x[M,K] · w[N,K]ᵀ (+ bias[N]) for prompts (any M); x, y fp32, w and bias
// F32/F16/BF16, fp32 accumulate. Where the device has cooperative matrices the GEMM runs on the
// tensor cores instead (gemm_coopmat.comp); decode (M ≤ 4) runs gemv_sg.comp / gemv.comp.
// Variants:
//  gemm          a 64×64 output tile per work group of 16×16 invocations, 4×4 outputs each, K in
//                steps of 16 through shared memory. Thread (tx, ty) owns rows ty + 16i and
//                columns tx + 16j so that neighbouring invocations touch neighbouring
//                shared-memory words and output columns.
//  gemm.tile128  the same with 8×8 outputs per invocation (128×128 tiles): twice the FMAs per
//                shared-memory load, for prefill-sized M and N whose rows are not 16-byte
//                aligned (aligned ones run gemm.vec128, gemm_vec.comp: the same sums, 16-byte
//                loads and stores).
// The weights are loaded as 32-bit words and decoded after every load of the step is out
// (common.glsl DEFINE_LOAD_WORD; DEFINE_LOAD_ANY's per-dtype branch made each wait for the one
// before): with cooperative matrices off on an H200 (what devices without them run), 130m's
// prefill GEMMs at M 4096 went from 841 / 162 / 43 / 516 µs to 649 / 108 / 39 / 433 (in_proj,
// x_proj, dt_proj, out_proj; session 13, bench/results/h200_session13_lead_2026-11-28.md).
// variant gemm -DTM=4
// variant gemm.tile128 -DTM=8
#include "common.glsl"

layout(local_size_x = 16, local_size_y = 16, local_size_z = 1) in;

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer W { uint w[]; };
layout(std430, binding = 2) readonly buffer Bias { uint bias[]; };
layout(std430, binding = 3) writeonly buffer Y { float y[]; };

layout(push_constant) uniform Push {
  uint M, N, K;
  uint x_stride, w_stride, y_stride;
  uint w_dtype, bias_dtype, has_bias;
  uint off[4];  // element offsets of x, w, bias, y
} p;

DEFINE_LOAD_WORD(load_w_word, w)
DEFINE_LOAD_ANY(load_bias, bias)

const uint BM = 16 * TM, BN = 16 * TM, BK = 16;  // TM×TM outputs per invocation
shared float xs[BK][BM + 1];
shared float ws[BK][BN + 1];

void main() {
  const uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
  const uint tid = gl_LocalInvocationIndex;
  const uint m0 = gl_WorkGroupID.y * BM, n0 = gl_WorkGroupID.x * BN;

  float acc[TM][TM];
  [[unroll]] for (uint i = 0; i < TM; ++i)
    [[unroll]] for (uint j = 0; j < TM; ++j) acc[i][j] = 0.0;

  for (uint k0 = 0; k0 < p.K; k0 += BK) {
    // BM rows × 16 k of x and of w: TM values of each per invocation, k fastest. All 2·TM loads
    // go out before the first store (w as 32-bit words, decoded after: DEFINE_LOAD_WORD).
    float xv[TM];
    uint wv[TM];
    [[unroll]] for (uint r = 0; r < TM; ++r) {
      const uint e = tid + r * 256u;
      const uint row = e / BK, kk = e % BK;
      const uint k = k0 + kk;
      const uint m = m0 + row, n = n0 + row;
      xv[r] = (m < p.M && k < p.K) ? x[p.off[0] + m * p.x_stride + k] : 0.0;
      wv[r] = (n < p.N && k < p.K) ? load_w_word(p.w_dtype, p.off[1] + n * p.w_stride + k) : 0u;
    }
    [[unroll]] for (uint r = 0; r < TM; ++r) {
      const uint e = tid + r * 256u;
      const uint row = e / BK, kk = e % BK;
      const uint k = k0 + kk;
      const uint n = n0 + row;
      xs[kk][row] = xv[r];
      ws[kk][row] = (n < p.N && k < p.K) ? word_elem(p.w_dtype, p.off[1] + n * p.w_stride + k, wv[r]) : 0.0;
    }
    barrier();
    [[unroll]] for (uint kk = 0; kk < BK; ++kk) {
      float a[TM], b[TM];
      [[unroll]] for (uint i = 0; i < TM; ++i) a[i] = xs[kk][ty + 16u * i];
      [[unroll]] for (uint j = 0; j < TM; ++j) b[j] = ws[kk][tx + 16u * j];
      [[unroll]] for (uint i = 0; i < TM; ++i)
        [[unroll]] for (uint j = 0; j < TM; ++j) acc[i][j] = fma(a[i], b[j], acc[i][j]);
    }
    barrier();
  }

  [[unroll]] for (uint j = 0; j < TM; ++j) {
    const uint n = n0 + tx + 16u * j;
    if (n >= p.N) continue;
    const float b = p.has_bias != 0u ? load_bias(p.bias_dtype, p.off[2] + n) : 0.0;
    [[unroll]] for (uint i = 0; i < TM; ++i) {
      const uint m = m0 + ty + 16u * i;
      if (m < p.M) y[p.off[3] + m * p.y_stride + n] = acc[i][j] + b;
    }
  }
}
