#version 450
// The decode GEMVs' fallbacks, y[M,N] = x[M,K] · w[N,K]ᵀ (+ bias[N]) for M ≤ 4 rows of x (reading
// W is the whole cost); x, y fp32, w and bias F32/F16/BF16, fp32 accumulate. Where the device has
// subgroup shuffles the decode GEMVs are gemv_sg.comp's gemm.gemv family; the tiled GEMM for
// prompts is gemm.comp; the pipelines keep their gemm.* names (a variant line names its
// pipeline). Variants:
//  gemm.small_m  M ≤ 4 (decode): reading W is the whole cost. 8 rows of W per work group, 32
//                invocations per row striding K (neighbours read neighbouring weights), each
//                keeping the M dot products, then a shared-memory reduction over the 32. Any
//                alignment; what gemm.small_m_vec cannot take.
//  gemm.small_m_vec  M ≤ 4 with 16-byte aligned rows of W and x: the same one pass over W, but
//                every load is 16 bytes (8 F16/BF16 or 4 F32 weights) and four are in flight per
//                invocation before the first is used; the host picks how many invocations share
//                a row (T = 256 / rows, a power of two) so that each gets a few 16-byte pieces and
//                the grid has enough work groups for thin layers (x_proj, dt_proj).
//  gemm.small_m_vec_conv  gemm.small_m_vec whose rows n < conv_channels also run the decode conv
//                step of channel n on the value just computed (Backend::rms_norm_gemm_conv_step's
//                in_proj + causal_conv1d_step in one dispatch: conv state shifted, SiLU output).
// variant gemm.small_m -DSMALL_M=1
// variant gemm.small_m_vec -DSMALL_M=2
// variant gemm.small_m_vec_conv -DSMALL_M=2 -DCONV=1
#include "common.glsl"
#include "gemv_io.glsl"

#if SMALL_M == 2
const uint MAX_M = 4, PIPE = 4;  // PIPE 16-byte weight loads in flight per invocation
shared float red[MAX_M][256];

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
        widen(p.w_dtype, q[u], lo, hi);
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
      if (n < p.conv_channels) conv_store(m, n, red[m][tid] + b, conv_load(m, n));
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
#endif
