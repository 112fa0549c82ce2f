#version 450
// idx[0] = the position of the largest of x[0 .. n) (params.h ArgmaxParams): greedy decoding's
// pick at the end of a decode step, so 4 bytes go to the host instead of the logits. One work
// group: each invocation keeps the best (order_key, position) of a strided slice (larger key,
// then lower position: NaN below every number, -0 == +0, as the CPU backend), then a
// shared-memory tree halves the candidates to one. No 64-bit integers (an optional feature).
#include "common.glsl"

layout(constant_id = 0) const uint WG = 256;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer Idx { int idx[]; };

layout(push_constant) uniform Push {
  uint n;
  uint off[2];  // x, idx
} p;

shared uint s_key[WG];
shared uint s_pos[WG];

// Whether (ka, ia) ranks above (kb, ib).
bool better(uint ka, uint ia, uint kb, uint ib) { return ka > kb || (ka == kb && ia < ib); }

void main() {
  const uint tid = gl_LocalInvocationID.x;
  uint key = 0u, pos = 0xffffffffu;  // below every element (its key ≥ 0, its position < n)
  for (uint i = tid; i < p.n; i += WG) {
    const uint k = order_key(x[p.off[0] + i]);
    if (better(k, i, key, pos)) {
      key = k;
      pos = i;
    }
  }
  s_key[tid] = key;
  s_pos[tid] = pos;
  barrier();
  for (uint h = WG / 2u; h > 0u; h >>= 1) {
    if (tid < h && better(s_key[tid + h], s_pos[tid + h], s_key[tid], s_pos[tid])) {
      s_key[tid] = s_key[tid + h];
      s_pos[tid] = s_pos[tid + h];
    }
    barrier();
  }
  if (tid == 0u) idx[p.off[1]] = int(s_pos[0]);
}
