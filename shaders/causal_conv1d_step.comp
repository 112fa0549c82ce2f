#version 450
// One decode token per sequence: invocation (b, c) shifts state row b·channels + c left by one,
// appends x[b,c], and writes y[b,c] = SiLU(bias[c] + Σ_k w[c,k] · state[k]). The weights are
// loaded with the state, before the first store into the state (a load after a store to a buffer
// that might alias it cannot be hoisted: one memory round trip per tap otherwise).
#include "common.glsl"

layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint D_CONV = 4;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer Xb { float x[]; };
layout(std430, binding = 1) readonly buffer Wb { uint wt[]; };
layout(std430, binding = 2) readonly buffer Bb { uint bias[]; };
layout(std430, binding = 3) buffer Sb { float state[]; };
layout(std430, binding = 4) writeonly buffer Yb { float y[]; };

layout(push_constant) uniform Push {
  uint batch, channels, d_conv, x_stride, y_stride, weight_dtype, bias_dtype, has_bias;
  uint off[5];  // x, weight, bias, conv_state, y
} p;

DEFINE_LOAD_ANY(load_weight, wt)
DEFINE_LOAD_ANY(load_bias, bias)

void main() {
  const uint c = gl_WorkGroupID.x * WG + gl_LocalInvocationID.x;
  const uint b = gl_WorkGroupID.y + gl_NumWorkGroups.y * gl_WorkGroupID.z;
  if (c >= p.channels || b >= p.batch) return;
  const uint sb = p.off[3] + (b * p.channels + c) * D_CONV;
  float s[D_CONV];
  [[unroll]] for (uint k = 0; k + 1 < D_CONV; ++k) s[k] = state[sb + k + 1];
  s[D_CONV - 1] = x[p.off[0] + b * p.x_stride + c];
  float wv[D_CONV];
  [[unroll]] for (uint k = 0; k < D_CONV; ++k) wv[k] = load_weight(p.weight_dtype, p.off[1] + c * D_CONV + k);
  float acc = p.has_bias != 0u ? load_bias(p.bias_dtype, p.off[2] + c) : 0.0;
  [[unroll]] for (uint k = 0; k < D_CONV; ++k) {
    acc = fma(wv[k], s[k], acc);
    state[sb + k] = s[k];
  }
  y[p.off[4] + b * p.y_stride + c] = silu(acc);
}
