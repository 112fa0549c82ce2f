#version 450
// Depthwise causal conv over time + bias + SiLU, and the conv-state update, in one dispatch.
// Invocation (channel c, block of `tb` tokens) slides a d_conv window down time; tokens before
// the first read the state's last d_conv-1 inputs. The host makes tb >= d_conv, so only the
// first token block reads the state: its invocation then overwrites state row c with the last
// d_conv inputs (x, or older state entries when L < d_conv, read before any store), after its
// own reads of the old row — work groups cannot order themselves, one invocation can (the CUDA
// conv does the same; before session 8 this was a second dispatch).
// Channels are the fast index of every work group: x and y rows are read and written coalesced.
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
  uint L, channels, d_conv, x_stride, y_stride, weight_dtype, bias_dtype, has_bias;
  uint tb;      // tokens per invocation (>= d_conv)
  uint off[5];  // x, weight, bias, conv_state, y
} p;

DEFINE_LOAD_ANY(load_weight, wt)
DEFINE_LOAD_ANY(load_bias, bias)

void main() {
  const uint c = gl_WorkGroupID.x * WG + gl_LocalInvocationID.x;
  if (c >= p.channels) return;
  const uint sb = p.off[3] + c * D_CONV;

  const uint t0 = (gl_WorkGroupID.y + gl_NumWorkGroups.y * gl_WorkGroupID.z) * p.tb;
  if (t0 >= p.L) return;
  const uint t1 = min(t0 + p.tb, p.L);

  float w[D_CONV];
  [[unroll]] for (uint k = 0; k < D_CONV; ++k) w[k] = load_weight(p.weight_dtype, p.off[1] + c * D_CONV + k);
  const float b = p.has_bias != 0u ? load_bias(p.bias_dtype, p.off[2] + c) : 0.0;

  // win[k] holds the input at token t - (D_CONV-1) + k; win[D_CONV-1] is filled per token.
  float win[D_CONV];
  [[unroll]] for (uint k = 0; k + 1 < D_CONV; ++k) {
    const int s = int(t0) - int(D_CONV - 1) + int(k);
    win[k] = s >= 0 ? x[p.off[0] + uint(s) * p.x_stride + c] : state[sb + uint(int(D_CONV) + s)];
  }
  for (uint t = t0; t < t1; ++t) {
    win[D_CONV - 1] = x[p.off[0] + t * p.x_stride + c];
    float acc = b;
    [[unroll]] for (uint k = 0; k < D_CONV; ++k) acc = fma(w[k], win[k], acc);
    y[p.off[4] + t * p.y_stride + c] = silu(acc);
    [[unroll]] for (uint k = 0; k + 1 < D_CONV; ++k) win[k] = win[k + 1];
  }

  if (t0 == 0) {  // the state update (see the top)
    float nxt[D_CONV];
    [[unroll]] for (uint i = 0; i < D_CONV; ++i) {
      const int s = int(p.L) - int(D_CONV) + int(i);  // token position of new entry i
      nxt[i] = s >= 0 ? x[p.off[0] + uint(s) * p.x_stride + c] : state[sb + uint(int(D_CONV) + s)];
    }
    [[unroll]] for (uint i = 0; i < D_CONV; ++i) state[sb + i] = nxt[i];
  }
}
