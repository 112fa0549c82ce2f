#version 450
// y[M,N] = x[M,K] · w[N,K]ᵀ (+ bias[N]); x, y fp32, w and bias F32/F16/BF16, fp32 accumulate.
// Two variants:
//  gemm          a 64×64 output tile per work group of 16×16 invocations, 4×4 outputs each, K in
//                steps of 16 through shared memory. Thread (tx, ty) owns rows ty + 16i and
//                columns tx + 16j so that neighbouring invocations touch neighbouring
//                shared-memory words and output columns.
//  gemm.tile128  the same with 8×8 outputs per invocation (128×128 tiles): twice the FMAs per
//                shared-memory load, for prefill-sized M and N.
//  gemm.small_m  M ≤ 4 (decode): reading W is the whole cost. 8 rows of W per work group, 32
//                invocations per row striding K (neighbours read neighbouring weights), each
//                keeping the M dot products, then a shared-memory reduction over the 32. Any
//                alignment; what gemm.small_m_vec cannot take.
//  gemm.small_m_vec  M ≤ 4 with 16-byte aligned rows of W and x: the same one pass over W, but
//                every load is 16 bytes (8 F16/BF16 or 4 F32 weights) and four are in flight per
//                invocation before the first is used; the host picks how many invocations share
//                a row (T = 256 / rows, a power of two) so that each gets a few 16-byte pieces and
//                the grid has enough work groups for thin layers (x_proj, dt_proj).
// variant gemm -DSMALL_M=0 -DTM=4
// variant gemm.tile128 -DSMALL_M=0 -DTM=8
// variant gemm.small_m -DSMALL_M=1
// variant gemm.small_m_vec -DSMALL_M=2
// variant gemm.small_m_vec_conv -DSMALL_M=2 -DCONV=1
//  gemm.small_m_vec_conv  gemm.small_m_vec whose rows n < conv_channels also run the decode conv
//                step of channel n on the value just computed (Backend::rms_norm_gemm_conv_step's
//                in_proj + causal_conv1d_step in one dispatch: conv state shifted, SiLU output).
#include "common.glsl"

#if SMALL_M != 0
layout(local_size_x = 256, local_size_y = 1, local_size_z = 1) in;
#else
layout(local_size_x = 16, local_size_y = 16, local_size_z = 1) in;
#endif

#if SMALL_M == 2
layout(std430, binding = 0) readonly buffer X { vec4 x4[]; };
layout(std430, binding = 1) readonly buffer W { uvec4 w4[]; };
#else
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer W { uint w[]; };
#endif
layout(std430, binding = 2) readonly buffer Bias { uint bias[]; };
layout(std430, binding = 3) writeonly buffer Y { float y[]; };
#ifndef CONV
#define CONV 0
#endif
#if CONV
layout(std430, binding = 4) readonly buffer ConvW { uint conv_w[]; };
layout(std430, binding = 5) readonly buffer ConvB { uint conv_b[]; };
layout(std430, binding = 6) buffer ConvState { float conv_state[]; };
layout(std430, binding = 7) writeonly buffer ConvY { float conv_y[]; };
const uint MAX_D_CONV = 8;  // the host sends larger d_conv to the unfused path
#endif

layout(push_constant) uniform Push {
  uint M, N, K;
  uint x_stride, w_stride, y_stride;
  uint w_dtype, bias_dtype, has_bias;
  uint off[4];  // element offsets of x, w, bias, y
#if SMALL_M == 2
  uint rows;    // rows of W per work group (1 … 32, a power of two)
#endif
#if CONV
  uint conv_channels, d_conv, conv_y_stride, conv_w_dtype, conv_b_dtype, conv_has_bias;
  uint conv_off[4];  // element offsets of conv_w, conv_b, conv_state, conv_y
#endif
} p;

#if SMALL_M != 2
DEFINE_LOAD_ANY(load_w, w)
#endif
DEFINE_LOAD_ANY(load_bias, bias)
#if CONV
DEFINE_LOAD_ANY(load_conv_w, conv_w)
DEFINE_LOAD_ANY(load_conv_b, conv_b)

// Decode conv step of channel c for sequence m, whose new input xv was just computed.
void conv_step(uint m, uint c, float xv) {
  const uint sb = p.conv_off[2] + (m * p.conv_channels + c) * p.d_conv;
  float s[MAX_D_CONV];
  for (uint k = 0; k + 1 < p.d_conv; ++k) s[k] = conv_state[sb + k + 1];
  s[p.d_conv - 1] = xv;
  float acc = p.conv_has_bias != 0u ? load_conv_b(p.conv_b_dtype, p.conv_off[1] + c) : 0.0;
  for (uint k = 0; k < p.d_conv; ++k) {
    acc = fma(load_conv_w(p.conv_w_dtype, p.conv_off[0] + c * p.d_conv + k), s[k], acc);
    conv_state[sb + k] = s[k];
  }
  conv_y[p.conv_off[3] + m * p.conv_y_stride + c] = silu(acc);
}
#endif

#if SMALL_M == 2
const uint MAX_M = 4, PIPE = 4;  // PIPE 16-byte weight loads in flight per invocation
shared float red[MAX_M][256];

// The weights of one 16-byte piece: 8 (F16, BF16: lo holds the first 4) or 4 (F32: lo only).
void widen(uvec4 q, out vec4 lo, out vec4 hi) {
  if (p.w_dtype == DT_F32) {
    lo = uintBitsToFloat(q);
    hi = vec4(0.0);
  } else if (p.w_dtype == DT_F16) {
    lo = vec4(unpackHalf2x16(q.x), unpackHalf2x16(q.y));
    hi = vec4(unpackHalf2x16(q.z), unpackHalf2x16(q.w));
  } else {  // BF16: element 2i in the low half of word i
    const uvec4 e = q << 16, o = q & 0xffff0000u;
    lo = uintBitsToFloat(uvec4(e.x, o.x, e.y, o.y));
    hi = uintBitsToFloat(uvec4(e.z, o.z, e.w, o.w));
  }
}

void main() {
  const uint tid = gl_LocalInvocationIndex;
  const uint T = 256u / p.rows;  // invocations sharing one row of W
  const uint t = tid % T;
  const uint n = linear_group_id() * p.rows + tid / T;
  const bool wide = p.w_dtype != DT_F32;  // 8 weights per piece, else 4
  const uint per = wide ? 8u : 4u;
  const uint pieces = p.K / per;          // the host guarantees K % per == 0
  float acc[MAX_M];
  [[unroll]] for (uint m = 0; m < MAX_M; ++m) acc[m] = 0.0;
  if (n < p.N) {
    const uint wb = (p.off[1] + n * p.w_stride) / per;  // first piece of the row
    for (uint j0 = t; j0 < pieces; j0 += PIPE * T) {
      uvec4 q[PIPE];
      [[unroll]] for (uint u = 0; u < PIPE; ++u) {
        const uint j = j0 + u * T;
        q[u] = j < pieces ? w4[wb + j] : uvec4(0);
      }
      [[unroll]] for (uint u = 0; u < PIPE; ++u) {
        const uint j = j0 + u * T;
        if (j >= pieces) break;
        vec4 lo, hi;
        widen(q[u], lo, hi);
        [[unroll]] for (uint m = 0; m < MAX_M; ++m) {
          if (m >= p.M) break;
          const uint xb = (p.off[0] + m * p.x_stride) / 4u + j * (per / 4u);
          acc[m] += dot(lo, x4[xb]);
          if (wide) acc[m] += dot(hi, x4[xb + 1u]);
        }
      }
    }
  }
  [[unroll]] for (uint m = 0; m < MAX_M; ++m) red[m][tid] = acc[m];
  barrier();
  for (uint s = T / 2u; s > 0u; s >>= 1) {
    if (t < s)
      [[unroll]] for (uint m = 0; m < MAX_M; ++m) red[m][tid] += red[m][tid + s];
    barrier();
  }
  if (t == 0u && n < p.N) {
    const float b = p.has_bias != 0u ? load_bias(p.bias_dtype, p.off[2] + n) : 0.0;
    for (uint m = 0; m < p.M; ++m) {
      y[p.off[3] + m * p.y_stride + n] = red[m][tid] + b;
#if CONV
      if (n < p.conv_channels) conv_step(m, n, red[m][tid] + b);
#endif
    }
  }
}
#elif SMALL_M == 1
const uint MAX_M = 4, ROWS = 8, LANES = 32;
shared float red[MAX_M][256];

void main() {
  const uint tid = gl_LocalInvocationIndex;
  const uint lane = tid % LANES;
  const uint n = (gl_WorkGroupID.x + gl_NumWorkGroups.x * gl_WorkGroupID.y) * ROWS + tid / LANES;
  float acc[MAX_M];
  [[unroll]] for (uint m = 0; m < MAX_M; ++m) acc[m] = 0.0;
  if (n < p.N) {
    const uint wb = p.off[1] + n * p.w_stride;
    for (uint k = lane; k < p.K; k += LANES) {
      const float wv = load_w(p.w_dtype, wb + k);
      [[unroll]] for (uint m = 0; m < MAX_M; ++m)
        if (m < p.M) acc[m] = fma(x[p.off[0] + m * p.x_stride + k], wv, acc[m]);
    }
  }
  [[unroll]] for (uint m = 0; m < MAX_M; ++m) red[m][tid] = acc[m];
  barrier();
  for (uint s = LANES / 2; s > 0; s >>= 1) {
    if (lane < s)
      [[unroll]] for (uint m = 0; m < MAX_M; ++m) red[m][tid] += red[m][tid + s];
    barrier();
  }
  if (lane == 0 && n < p.N) {
    const float b = p.has_bias != 0u ? load_bias(p.bias_dtype, p.off[2] + n) : 0.0;
    for (uint m = 0; m < p.M; ++m) y[p.off[3] + m * p.y_stride + n] = red[m][tid] + b;
  }
}
#else
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
    // BM rows × 16 k of x and of w: TM values of each per invocation, k fastest.
    [[unroll]] for (uint r = 0; r < TM; ++r) {
      const uint e = tid + r * 256u;
      const uint row = e / BK, kk = e % BK;
      const uint k = k0 + kk;
      const uint m = m0 + row, n = n0 + row;
      xs[kk][row] = (m < p.M && k < p.K) ? x[p.off[0] + m * p.x_stride + k] : 0.0;
      ws[kk][row] = (n < p.N && k < p.K) ? load_w(p.w_dtype, p.off[1] + n * p.w_stride + k) : 0.0;
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
#endif
