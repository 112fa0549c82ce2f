#version 450
// One decode token of the scan per sequence: invocation (b, c) updates state row b·channels + c.
//  selective_scan_step          delta is an input (before bias and softplus).
//  selective_scan_step.dt_proj  Backend::dt_proj_scan_step in one dispatch: the invocation first
//                               forms its channel's delta = dt_low[b,:] · dt_proj[c,:] (the
//                               dt_rank-long dot product the separate gemm would do), writes it
//                               out, and scans with it: one dispatch and one barrier fewer per
//                               decode layer.
// variant selective_scan_step -DFUSED_DT=0
// variant selective_scan_step.dt_proj -DFUSED_DT=1
#include "common.glsl"

layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint D_STATE = 16;
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

DEFINE_LOAD_ANY(load_a_log, a_log)
DEFINE_LOAD_ANY(load_d, Dv)
DEFINE_LOAD_ANY(load_dt_bias, dt_bias)
#if FUSED_DT
DEFINE_LOAD_ANY(load_dt_proj, dt_proj)
#endif

void main() {
  const uint c = gl_WorkGroupID.x * WG + gl_LocalInvocationID.x;
  const uint b = gl_WorkGroupID.y + gl_NumWorkGroups.y * gl_WorkGroupID.z;
  if (c >= p.channels || b >= p.batch) return;
  const uint di = p.off[1] + b * p.delta_stride + c;
#if FUSED_DT
  float draw = 0.0;
  const uint xb = p.off_dt_low + b * p.dt_low_stride, wb = p.off_dt_proj + c * p.dt_proj_stride;
  for (uint r = 0; r < p.dt_rank; ++r) draw = fma(dt_low[xb + r], load_dt_proj(p.dt_proj_dtype, wb + r), draw);
  delta[di] = draw;
#else
  const float draw = delta[di];
#endif
  const float uu = u[p.off[0] + b * p.u_stride + c];
  const float dt = softplus(draw + load_dt_bias(p.dt_bias_dtype, p.off[7] + c));
  const float du = dt * uu;
  const uint sb = p.off[8] + (b * p.channels + c) * D_STATE;
  float acc = 0.0;
  [[unroll]] for (uint n = 0; n < D_STATE; ++n) {
    const float A = -exp(load_a_log(p.A_log_dtype, p.off[2] + c * D_STATE + n));
    const float h = fma(exp(dt * A), state[sb + n], du * Bm[p.off[3] + b * p.B_stride + n]);
    state[sb + n] = h;
    acc = fma(h, Cm[p.off[4] + b * p.C_stride + n], acc);
  }
  float res = fma(load_d(p.D_dtype, p.off[5] + c), uu, acc);
  if (p.has_z != 0u) res *= silu(z[p.off[6] + b * p.z_stride + c]);
  y[p.off[9] + b * p.y_stride + c] = res;
}
