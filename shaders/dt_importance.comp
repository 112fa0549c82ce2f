#version 450
// score[t] = ‖softplus(delta[t,:] + dt_bias)‖₂: one work group per token, a shared-memory sum.
#include "common.glsl"

layout(constant_id = 0) const uint WG = 256;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer Delta { float delta[]; };
layout(std430, binding = 1) readonly buffer DtBias { uint dt_bias[]; };
layout(std430, binding = 2) writeonly buffer Scores { float scores[]; };

layout(push_constant) uniform Push {
  uint L, channels, delta_stride, dt_bias_dtype;
  uint off[3];  // delta, dt_bias, scores
} p;

DEFINE_LOAD_ANY(load_dt_bias, dt_bias)

shared float partial[WG];

void main() {
  const uint t = linear_group_id();
  if (t >= p.L) return;
  const uint tid = gl_LocalInvocationID.x;
  const uint db = p.off[0] + t * p.delta_stride;
  float ss = 0.0;
  for (uint c = tid; c < p.channels; c += WG) {
    const float d = softplus(delta[db + c] + load_dt_bias(p.dt_bias_dtype, p.off[1] + c));
    ss = fma(d, d, ss);
  }
  partial[tid] = ss;
  barrier();
  for (uint s = WG / 2; s > 0; s >>= 1) {
    if (tid < s) partial[tid] += partial[tid + s];
    barrier();
  }
  if (tid == 0) scores[p.off[2] + t] = sqrt(partial[0]);
}
