#version 450
// idx[0] = the position of the largest of x[0 .. n) (params.h ArgmaxParams): greedy decoding's
// pick at the end of a decode step, so 4 bytes go to the host instead of the logits. One work
// group: each invocation keeps the best (order_key, position) of a strided slice (larger key,
// then lower position: NaN below every number, -0 == +0, as the CPU backend), then a
// shared-memory tree halves the candidates to one. No 64-bit integers (an optional feature).
//  argmax       one float a load, WG (256) invocations: each walks ~n / WG positions, a load
//               and its compare per step.
//  argmax.vec4  x's whole 16-byte pieces as vec4 (x 16-byte aligned), B of them a batch, all in
//               flight before the first compare, the last n % 4 values through a float view of
//               the same buffer; WG 1024 where the device allows (50,280 logits: ~12 pieces an
//               invocation, two batches). Same candidates, same tree: the same pick.
// variant argmax -DVEC=0
// variant argmax.vec4 -DVEC=1
#include "common.glsl"

layout(constant_id = 0) const uint WG = 256;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer Idx { int idx[]; };
#if VEC
layout(std430, binding = 2) readonly buffer X4 { vec4 x4[]; };  // the same buffer as X
#endif

layout(push_constant) uniform Push {
  uint n;
  uint off[2];  // x (a multiple of 4 for argmax.vec4), idx
} p;

shared uint s_key[WG];
shared uint s_pos[WG];

// Whether (ka, ia) ranks above (kb, ib).
bool better(uint ka, uint ia, uint kb, uint ib) { return ka > kb || (ka == kb && ia < ib); }

void main() {
  const uint tid = gl_LocalInvocationID.x;
  uint key = 0u, pos = 0xffffffffu;  // below every element (its key ≥ 0, its position < n)
#if VEC
  const uint B = 8;  // 16-byte loads in flight per invocation
  const uint n4 = p.n / 4u, b4 = p.off[0] / 4u;
  for (uint q0 = tid; q0 < n4; q0 += B * WG) {
    vec4 v[B];
    [[unroll]] for (uint b = 0; b < B; ++b) {
      const uint q = q0 + b * WG;
      v[b] = q < n4 ? x4[b4 + q] : vec4(0.0);
    }
    [[unroll]] for (uint b = 0; b < B; ++b) {
      const uint q = q0 + b * WG;
      if (q < n4)
        [[unroll]] for (uint j = 0; j < 4; ++j) {
          const uint k = order_key(v[b][j]);
          if (better(k, 4u * q + j, key, pos)) {
            key = k;
            pos = 4u * q + j;
          }
        }
    }
  }
  for (uint i = 4u * n4 + tid; i < p.n; i += WG) {  // the last n % 4
#else
  for (uint i = tid; i < p.n; i += WG) {
#endif
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
