#version 450
// dst[i,:] = src[idx[i],:] widened to fp32. Work group (x: column block, y/z: row i folded).
// A row index outside [0, src_rows) cannot throw on a device: that row becomes NaN, loudly.
// A source larger than one binding may address is gathered in windows of rows
// [row_begin, row_end), one dispatch each (src bound at row_begin); each writes only the rows
// whose index falls in its window, and the first window the NaN rows.
// p.vec (fp32 source; columns, strides and offsets multiples of 4): each invocation copies 16
// bytes, bit for bit (a gather is exact); otherwise one element each, widened to fp32.
#include "common.glsl"

layout(constant_id = 0) const uint WG = 256;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer Src { uint src[]; };
layout(std430, binding = 0) readonly buffer Src4 { uvec4 src4[]; };
layout(std430, binding = 1) readonly buffer Idx { int idx[]; };
layout(std430, binding = 2) writeonly buffer Dst { float dst[]; };
layout(std430, binding = 2) writeonly buffer Dst4 { uvec4 dst4[]; };

layout(push_constant) uniform Push {
  uint n, cols, src_rows, src_stride, dst_stride, src_dtype;
  uint row_begin, row_end;
  uint off[3];  // src (at row_begin), idx, dst
  uint vec;
} p;

DEFINE_LOAD_ANY(load_src, src)

void main() {
  const uint i = gl_WorkGroupID.y + gl_NumWorkGroups.y * gl_WorkGroupID.z;
  const uint c = gl_WorkGroupID.x * WG + gl_LocalInvocationID.x;  // column (vec: 4 columns)
  if (i >= p.n || c >= (p.vec != 0u ? p.cols / 4u : p.cols)) return;
  if (p.vec != 0u) {
    const int r = idx[p.off[1] + i];
    uvec4 v = uvec4(0x7fc00000u);
    if (r >= 0 && uint(r) < p.src_rows) {
      if (uint(r) < p.row_begin || uint(r) >= p.row_end) return;
      v = src4[(p.off[0] + (uint(r) - p.row_begin) * p.src_stride) / 4u + c];
    } else if (p.row_begin != 0u) {
      return;
    }
    dst4[(p.off[2] + i * p.dst_stride) / 4u + c] = v;
    return;
  }
  const int r = idx[p.off[1] + i];
  float v = uintBitsToFloat(0x7fc00000u);
  if (r >= 0 && uint(r) < p.src_rows) {
    if (uint(r) < p.row_begin || uint(r) >= p.row_end) return;  // another window's row
    v = load_src(p.src_dtype, p.off[0] + (uint(r) - p.row_begin) * p.src_stride + c);
  } else if (p.row_begin != 0u) {
    return;
  }
  dst[p.off[2] + i * p.dst_stride + c] = v;
}
