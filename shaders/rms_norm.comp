#version 450
// One work group per row. With a residual: residual += x, then y = residual · rsqrt(mean(residual²)
// + eps) · weight; without: the same of x. Each invocation revisits only the columns it wrote,
// so y may alias x.
// Two variants so the plain one does not even reference the residual buffer (which the
// validation layer would count as a write):
// variant rms_norm -DRESIDUAL=0
// variant rms_norm.residual -DRESIDUAL=1
#include "common.glsl"

layout(constant_id = 0) const uint WG = 256;
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

shared float partial[WG];

void main() {
  const uint row = linear_group_id();
  if (row >= p.L) return;  // uniform over the work group
  const uint tid = gl_LocalInvocationID.x;
  const uint xb = p.off[0] + row * p.x_stride;
  const uint rb = p.off[1] + row * p.residual_stride;

  float ss = 0.0;
  for (uint i = tid; i < p.D; i += WG) {
    float v = x[xb + i];
#if RESIDUAL
    v += res[rb + i];
    res[rb + i] = v;
#endif
    ss = fma(v, v, ss);
  }
  partial[tid] = ss;
  barrier();
  for (uint s = WG / 2; s > 0; s >>= 1) {
    if (tid < s) partial[tid] += partial[tid + s];
    barrier();
  }
  const float inv = inversesqrt(partial[0] / float(p.D) + p.eps);

  const uint yb = p.off[3] + row * p.y_stride;
  for (uint i = tid; i < p.D; i += WG) {
#if RESIDUAL
    const float v = res[rb + i];
#else
    const float v = x[xb + i];
#endif
    y[yb + i] = v * inv * load_weight(p.weight_dtype, p.off[2] + i);
  }
}
