#version 450
// One decode token of the scan per sequence: invocation (b, c) updates state row b·channels + c.
//  selective_scan_step          delta is an input (before bias and softplus).
//  selective_scan_step.dt_proj  Backend::dt_proj_scan_step in one dispatch: the invocation first
//                               forms its channel's delta = dt_low[b,:] · dt_proj[c,:] (the
//                               dt_rank-long dot product the separate gemm would do), writes it
//                               out, and scans with it: one dispatch and one barrier fewer per
//                               decode layer.
// Every load (the state row, A_log, B, C, u, z, D, dt_bias) is issued before the first store: the
// compiler may not move a load past a store into a buffer that might alias it, so a loop that
// loads state[n + 1] after storing state[n] paid one memory round trip per state entry. Same
// arithmetic in the same order as that loop: identical results.
//  selective_scan_step.dt_proj_sg  the same with LANES invocations per channel (a run of
//                               consecutive lanes of one subgroup; needs subgroup shuffles): each
//                               takes every LANES-th term of the dt_rank-long dot product (so a
//                               channel's dt_proj row is read as neighbouring words, not one
//                               invocation walking 2·dt_rank bytes alone) and every LANES-th
//                               state; butterfly shuffles sum delta and y. LANES× the invocations,
//                               1/LANES of the loads each, all issued before the first store.
// variant selective_scan_step -DFUSED_DT=0
// variant selective_scan_step.dt_proj -DFUSED_DT=1
// variant selective_scan_step.dt_proj_sg -DFUSED_DT=1 -DSPLIT=1
#ifndef SPLIT
#define SPLIT 0
#endif
#if SPLIT
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#endif
#include "common.glsl"

layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint D_STATE = 16;
layout(constant_id = 2) const uint LANES = 8;  // dt_proj_sg: invocations per channel (≤ subgroup size)
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer Ub { float u[]; };
#if FUSED_DT
layout(std430, binding = 1) writeonly buffer DeltaB { float delta[]; };
#else
layout(std430, binding = 1) readonly buffer DeltaB { float delta[]; };
#endif
layout(std430, binding = 2) readonly buffer ALogB { uint a_log[]; };
layout(std430, binding = 3) readonly buffer Bb { float Bm[]; };
layout(std430, binding = 4) readonly buffer Cb { float Cm[]; };
layout(std430, binding = 5) readonly buffer Db { uint Dv[]; };
layout(std430, binding = 6) readonly buffer Zb { float z[]; };
layout(std430, binding = 7) readonly buffer DtBiasB { uint dt_bias[]; };
layout(std430, binding = 8) buffer StateB { float state[]; };
layout(std430, binding = 9) writeonly buffer Yb { float y[]; };
#if FUSED_DT
layout(std430, binding = 10) readonly buffer DtLowB { float dt_low[]; };
layout(std430, binding = 11) readonly buffer DtProjB { uint dt_proj[]; };
#endif

layout(push_constant) uniform Push {
  uint batch, channels, d_state;
  uint u_stride, delta_stride, B_stride, C_stride, z_stride, y_stride;
  uint A_log_dtype, D_dtype, dt_bias_dtype;
  uint has_z;
  uint off[10];  // u, delta, A_log, B, C, D, z, dt_bias, ssm_state, y
#if FUSED_DT
  uint dt_rank, dt_low_stride, dt_proj_stride, dt_proj_dtype;
  uint off_dt_low, off_dt_proj;
#endif
} p;

// 16-bit parameters are loaded as their 32-bit words and decoded where used (common.glsl's
// DEFINE_LOAD_WORD: a run of loads goes out before the first is used).
DEFINE_LOAD_WORD(load_a_log_word, a_log)
DEFINE_LOAD_WORD(load_d_word, Dv)
DEFINE_LOAD_WORD(load_dt_bias_word, dt_bias)
#if FUSED_DT
DEFINE_LOAD_WORD(load_dt_proj_word, dt_proj)
#endif

#if SPLIT
const uint NPL = (D_STATE + LANES - 1) / LANES;  // states per invocation
const uint RB = 8;                               // dt_proj terms loaded per batch

void main() {
  const uint tid = gl_SubgroupID * gl_SubgroupSize + gl_SubgroupInvocationID;
  const uint l = tid % LANES;
  const uint c = gl_WorkGroupID.x * (WG / LANES) + tid / LANES;
  const uint b = gl_WorkGroupID.y + gl_NumWorkGroups.y * gl_WorkGroupID.z;
  // No early return: every lane takes part in the shuffles.
  const bool live = c < p.channels && b < p.batch;
  const uint di = p.off[1] + b * p.delta_stride + c;
  const uint sb = p.off[8] + (b * p.channels + c) * D_STATE;
  uint a_w[NPL];
  float h0[NPL], Bv[NPL], Cv[NPL];
  [[unroll]] for (uint i = 0; i < NPL; ++i) {
    const uint n = l + i * LANES;
    const bool on = live && n < D_STATE;
    a_w[i] = on ? load_a_log_word(p.A_log_dtype, p.off[2] + c * D_STATE + n) : 0u;
    h0[i] = on ? state[sb + n] : 0.0;
    Bv[i] = on ? Bm[p.off[3] + b * p.B_stride + n] : 0.0;
    Cv[i] = on ? Cm[p.off[4] + b * p.C_stride + n] : 0.0;
  }
  const bool lead = live && l == 0u;
  const float uu = live ? u[p.off[0] + b * p.u_stride + c] : 0.0;
  const uint bias_w = live ? load_dt_bias_word(p.dt_bias_dtype, p.off[7] + c) : 0u;
  const uint dskip_w = lead ? load_d_word(p.D_dtype, p.off[5] + c) : 0u;
  const float zz = lead && p.has_z != 0u ? z[p.off[6] + b * p.z_stride + c] : 0.0;
  float draw = 0.0;
  const uint xb = p.off_dt_low + b * p.dt_low_stride, wb = p.off_dt_proj + c * p.dt_proj_stride;
  for (uint r0 = l; r0 < p.dt_rank; r0 += RB * LANES) {
    float xa[RB];
    uint ww[RB];
    [[unroll]] for (uint i = 0; i < RB; ++i) {
      const uint r = r0 + i * LANES;
      const bool on = live && r < p.dt_rank;
      xa[i] = on ? dt_low[xb + r] : 0.0;
      ww[i] = on ? load_dt_proj_word(p.dt_proj_dtype, wb + r) : 0u;
    }
    [[unroll]] for (uint i = 0; i < RB; ++i) {
      const uint r = r0 + i * LANES;
      const float wa = live && r < p.dt_rank ? word_elem(p.dt_proj_dtype, wb + r, ww[i]) : 0.0;
      draw = fma(xa[i], wa, draw);
    }
  }
  // Butterfly sums: every lane of the channel ends with the same (bitwise) total.
  [[unroll]] for (uint o = LANES / 2u; o > 0u; o >>= 1) draw += subgroupShuffleXor(draw, o);
  if (lead) delta[di] = draw;
  const float bias = live ? word_elem(p.dt_bias_dtype, p.off[7] + c, bias_w) : 0.0;
  const float dt = softplus(draw + bias);
  const float du = dt * uu;
  float acc = 0.0;
  [[unroll]] for (uint i = 0; i < NPL; ++i) {
    const uint n = l + i * LANES;
    if (live && n < D_STATE) {
      const float A = -exp(word_elem(p.A_log_dtype, p.off[2] + c * D_STATE + n, a_w[i]));
      const float h = fma(exp(dt * A), h0[i], du * Bv[i]);
      state[sb + n] = h;
      acc = fma(h, Cv[i], acc);
    }
  }
  [[unroll]] for (uint o = LANES / 2u; o > 0u; o >>= 1) acc += subgroupShuffleXor(acc, o);
  if (lead) {
    const float dskip = word_elem(p.D_dtype, p.off[5] + c, dskip_w);
    float res = fma(dskip, uu, acc);
    if (p.has_z != 0u) res *= silu(zz);
    y[p.off[9] + b * p.y_stride + c] = res;
  }
}
#else
void main() {
  const uint c = gl_WorkGroupID.x * WG + gl_LocalInvocationID.x;
  const uint b = gl_WorkGroupID.y + gl_NumWorkGroups.y * gl_WorkGroupID.z;
  if (c >= p.channels || b >= p.batch) return;
  const uint di = p.off[1] + b * p.delta_stride + c;
  const uint sb = p.off[8] + (b * p.channels + c) * D_STATE;
  uint a_w[D_STATE];
  float h0[D_STATE], Bv[D_STATE], Cv[D_STATE];
  [[unroll]] for (uint n = 0; n < D_STATE; ++n) {
    a_w[n] = load_a_log_word(p.A_log_dtype, p.off[2] + c * D_STATE + n);
    h0[n] = state[sb + n];
    Bv[n] = Bm[p.off[3] + b * p.B_stride + n];
    Cv[n] = Cm[p.off[4] + b * p.C_stride + n];
  }
  const float uu = u[p.off[0] + b * p.u_stride + c];
  const uint bias_w = load_dt_bias_word(p.dt_bias_dtype, p.off[7] + c);
  const uint dskip_w = load_d_word(p.D_dtype, p.off[5] + c);
  const float zz = p.has_z != 0u ? z[p.off[6] + b * p.z_stride + c] : 0.0;
#if FUSED_DT
  float draw = 0.0;
  const uint xb = p.off_dt_low + b * p.dt_low_stride, wb = p.off_dt_proj + c * p.dt_proj_stride;
  for (uint r = 0; r < p.dt_rank; ++r)
    draw = fma(dt_low[xb + r], word_elem(p.dt_proj_dtype, wb + r, load_dt_proj_word(p.dt_proj_dtype, wb + r)), draw);
  delta[di] = draw;
#else
  const float draw = delta[di];
#endif
  const float dt = softplus(draw + word_elem(p.dt_bias_dtype, p.off[7] + c, bias_w));
  const float du = dt * uu;
  float acc = 0.0;
  [[unroll]] for (uint n = 0; n < D_STATE; ++n) {
    const float A = -exp(word_elem(p.A_log_dtype, p.off[2] + c * D_STATE + n, a_w[n]));
    const float h = fma(exp(dt * A), h0[n], du * Bv[n]);
    state[sb + n] = h;
    acc = fma(h, Cv[n], acc);
  }
  float res = fma(word_elem(p.D_dtype, p.off[5] + c, dskip_w), uu, acc);
  if (p.has_z != 0u) res *= silu(zz);
  y[p.off[9] + b * p.y_stride + c] = res;
}
#endif
