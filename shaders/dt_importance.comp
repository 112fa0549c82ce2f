#version 450
// score[t] = ‖softplus(delta[t,:] + dt_bias)‖₂: one work group of WG invocations per token, a
// shared-memory sum. p.vec (delta's rows, stride and offset multiples of 4 floats): the row is
// read as vec4, so each invocation has its loads of the row in flight at once.
#include "common.glsl"

layout(constant_id = 0) const uint WG = 256;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer Delta { float delta[]; };
layout(std430, binding = 0) readonly buffer Delta4 { vec4 delta4[]; };
layout(std430, binding = 1) readonly buffer DtBias { uint dt_bias[]; };
layout(std430, binding = 2) writeonly buffer Scores { float scores[]; };

layout(push_constant) uniform Push {
  uint L, channels, delta_stride, dt_bias_dtype;
  uint off[3];  // delta, dt_bias, scores
  uint vec;
} p;

DEFINE_LOAD_ANY(load_dt_bias, dt_bias)

shared float partial[WG];

void main() {
  const uint t = linear_group_id();
  if (t >= p.L) return;
  const uint tid = gl_LocalInvocationID.x;
  const uint db = p.off[0] + t * p.delta_stride;
  float ss = 0.0;
  if (p.vec != 0u) {
    for (uint c4 = tid; c4 < p.channels / 4u; c4 += WG) {
      const vec4 v = delta4[db / 4u + c4];
      [[unroll]] for (uint j = 0; j < 4u; ++j) {
        const float d = softplus(v[j] + load_dt_bias(p.dt_bias_dtype, p.off[1] + 4u * c4 + j));
        ss = fma(d, d, ss);
      }
    }
  } else {
    for (uint c = tid; c < p.channels; c += WG) {
      const float d = softplus(delta[db + c] + load_dt_bias(p.dt_bias_dtype, p.off[1] + c));
      ss = fma(d, d, ss);
    }
  }
  partial[tid] = ss;
  barrier();
  for (uint s = WG / 2; s > 0; s >>= 1) {
    if (tid < s) partial[tid] += partial[tid + s];
    barrier();
  }
  if (tid == 0) scores[p.off[2] + t] = sqrt(partial[0]);
}
