#version 450
// One work group per row. With a residual: residual += x, then y = residual · rsqrt(mean(residual²)
// + eps) · weight; without: the same of x. Each invocation revisits only the columns it wrote,
// so y may alias x.
// With REGS, rows of up to WG · MAXE columns are held in registers: every load of the row (x,
// residual, weight) is issued before the first store. In a loop that stores the residual as it
// goes, no later load may be moved above a store to a buffer that might alias it, so each of the
// D / WG iterations pays a memory round trip (H100: 12.5 µs a decode row at d_model 2560;
// bench/results/h100_decode_session4_2026-11-27.md). Same values, same order: the same bits.
// Two variants so the plain one does not even reference the residual buffer (which the
// validation layer would count as a write):
// variant rms_norm -DRESIDUAL=0
// variant rms_norm.residual -DRESIDUAL=1
#include "common.glsl"

layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint REGS = 1;  // the host's choice (vulkan_kernels.cpp)
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer X { float x[]; };
#if RESIDUAL
layout(std430, binding = 1) buffer R { float res[]; };
#endif
layout(std430, binding = 2) readonly buffer Wt { uint wt[]; };
layout(std430, binding = 3) writeonly buffer Y { float y[]; };

layout(push_constant) uniform Push {
  uint L, D;
  uint x_stride, residual_stride, y_stride;
  uint weight_dtype, has_residual;
  float eps;
  uint off[4];  // x, residual, weight, y
} p;

DEFINE_LOAD_ANY(load_weight, wt)
DEFINE_LOAD_WORD(load_weight_word, wt)

shared float partial[WG];

const uint MAXE = 16;  // columns per invocation held in registers (rows up to 16 · WG)

#include "row_sum.glsl"

void main() {
  const uint row = linear_group_id();
  if (row >= p.L) return;  // uniform over the work group
  const uint tid = gl_LocalInvocationID.x;
  const uint xb = p.off[0] + row * p.x_stride;
  const uint rb = p.off[1] + row * p.residual_stride;
  const uint yb = p.off[3] + row * p.y_stride;

  if (REGS != 0u && p.D <= WG * MAXE) {  // uniform
    float v[MAXE];
    uint w[MAXE];  // the weights' words (DEFINE_LOAD_WORD): every load in flight at once
    [[unroll]] for (uint j = 0; j < MAXE; ++j) {
      const uint i = tid + j * WG;
      v[j] = 0.0;
      w[j] = 0u;
      if (i < p.D) {
        v[j] = x[xb + i];
#if RESIDUAL
        v[j] += res[rb + i];
#endif
        w[j] = load_weight_word(p.weight_dtype, p.off[2] + i);
      }
    }
    float ss = 0.0;
    [[unroll]] for (uint j = 0; j < MAXE; ++j) {
      const uint i = tid + j * WG;
      if (i < p.D) {
#if RESIDUAL
        res[rb + i] = v[j];
#endif
        ss = fma(v[j], v[j], ss);
      }
    }
    const float inv = inversesqrt(row_sum(tid, ss) / float(p.D) + p.eps);
    [[unroll]] for (uint j = 0; j < MAXE; ++j) {
      const uint i = tid + j * WG;
      if (i < p.D) y[yb + i] = v[j] * inv * word_elem(p.weight_dtype, p.off[2] + i, w[j]);
    }
    return;
  }

  float ss = 0.0;
  for (uint i = tid; i < p.D; i += WG) {
    float v = x[xb + i];
#if RESIDUAL
    v += res[rb + i];
    res[rb + i] = v;
#endif
    ss = fma(v, v, ss);
  }
  const float inv = inversesqrt(row_sum(tid, ss) / float(p.D) + p.eps);
  for (uint i = tid; i < p.D; i += WG) {
#if RESIDUAL
    const float v = res[rb + i];
#else
    const float v = x[xb + i];
#endif
    y[yb + i] = v * inv * load_weight(p.weight_dtype, p.off[2] + i);
  }
}
