#version 450
// The tensor-core GEMM's split-K sum (vulkan_gemm.cpp): y[m, n] = Σ_s part[s, m, n] (+ bias[n]),
// s in order (the same sum every run). part is S slabs of M rows × part_stride floats, one per
// split of K (gemm_coopmat.comp's work-group z). One invocation per output element.
#include "common.glsl"

layout(local_size_x = 256, local_size_y = 1, local_size_z = 1) in;

layout(std430, binding = 0) readonly buffer Part { float part[]; };
layout(std430, binding = 1) readonly buffer Bias { uint bias[]; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };

layout(push_constant) uniform Push {
  uint M, N, S, part_stride, y_stride, bias_dtype, has_bias;
  uint off[2];  // element offsets of bias, y
} p;

DEFINE_LOAD_ANY(load_bias, bias)

void main() {
  const uint e = linear_group_id() * 256u + gl_LocalInvocationID.x;
  if (e >= p.M * p.N) return;
  const uint m = e / p.N, n = e % p.N;
  const uint slab = p.M * p.part_stride;
  float v = part[m * p.part_stride + n];
  for (uint s = 1; s < p.S; ++s) v += part[s * slab + m * p.part_stride + n];
  if (p.has_bias != 0u) v += load_bias(p.bias_dtype, p.off[0] + n);
  y[p.off[1] + m * p.y_stride + n] = v;
}
