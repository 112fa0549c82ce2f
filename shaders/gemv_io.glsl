// The decode GEMVs' bindings, push constants and conv-step helpers, shared by gemv.comp (the
// fallbacks: gemm.small_m, gemm.small_m_vec(_conv)) and gemv_sg.comp (gemm.gemv and its forms).
// Needs common.glsl before it and SMALL_M (1: scalar loads; ≥ 2: 16-byte pieces); CONV (the
// decode conv step of rows n < conv_channels), TAIL (the next layer's norm, gemv_sg.comp) and
// RW (rows of W per slot, gemv_sg.comp) default to 0, 0 and 1.
layout(local_size_x = 256, local_size_y = 1, local_size_z = 1) in;

#if SMALL_M >= 2
layout(std430, binding = 0) readonly buffer X { vec4 x4[]; };
layout(std430, binding = 1) readonly buffer W { uvec4 w4[]; };
#else
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer W { uint w[]; };
#endif
layout(std430, binding = 2) readonly buffer Bias { uint bias[]; };
layout(std430, binding = 3) writeonly buffer Y { float y[]; };
#ifndef CONV
#define CONV 0
#endif
#if CONV
layout(std430, binding = 4) readonly buffer ConvW { uint conv_w[]; };
layout(std430, binding = 5) readonly buffer ConvB { uint conv_b[]; };
layout(std430, binding = 6) buffer ConvState { float conv_state[]; };
layout(std430, binding = 7) writeonly buffer ConvY { float conv_y[]; };
const uint MAX_D_CONV = 8;  // the host sends larger d_conv to the unfused path
#endif
#ifndef TAIL
#define TAIL 0
#endif
#ifndef RW
#define RW 1
#endif
#if TAIL
// coherent: the last work group reads rows of the residual other work groups wrote, and the
// counter is how it knows they did.
layout(std430, binding = 4) coherent buffer Res { float res[]; };
layout(std430, binding = 5) readonly buffer NormW { uint norm_w[]; };
layout(std430, binding = 6) writeonly buffer Normed { float normed[]; };
layout(std430, binding = 7) coherent buffer Counter { uint counter[]; };
#endif

layout(push_constant) uniform Push {
  uint M, N, K;
  uint x_stride, w_stride, y_stride;
  uint w_dtype, bias_dtype, has_bias;
  uint off[4];  // element offsets of x, w, bias, y
#if SMALL_M >= 2
  uint rows;    // rows of W per work group (1 … 32, a power of two; gemm.gemv: its ROWS)
#endif
#if CONV
  uint conv_channels, d_conv, conv_y_stride, conv_w_dtype, conv_b_dtype, conv_has_bias;
  uint conv_off[4];  // element offsets of conv_w, conv_b, conv_state, conv_y
#endif
#if TAIL
  uint norm_w_dtype;
  float eps;
  uint groups;       // work groups of the dispatch (the counter's final value)
  uint tail_off[4];  // element offsets of residual, norm_w, normed, counter
#endif
} p;

#if SMALL_M < 2
DEFINE_LOAD_ANY(load_w, w)
#endif
DEFINE_LOAD_ANY(load_bias, bias)
#if CONV
DEFINE_LOAD_WORD(load_conv_w_word, conv_w)
DEFINE_LOAD_WORD(load_conv_b_word, conv_b)
#define DECODE_CONV_STEP 1
#endif
#if TAIL
DEFINE_LOAD_WORD(load_norm_w_word, norm_w)
#endif
#include "decode_step.glsl"

#if CONV
// decode_step.glsl's conv step of channel c for sequence m.
ConvIn conv_load(uint m, uint c) {
  return conv_step_load(p.conv_off[2] + (m * p.conv_channels + c) * p.d_conv,
                   p.conv_off[0] + c * p.d_conv, p.conv_off[1] + c, p.d_conv, p.conv_w_dtype,
                   p.conv_b_dtype, p.conv_has_bias != 0u);
}
void conv_store(uint m, uint c, float xv, ConvIn r) {
  conv_y[p.conv_off[3] + m * p.conv_y_stride + c] =
      conv_step_store(p.conv_off[2] + (m * p.conv_channels + c) * p.d_conv, p.d_conv, xv, r);
}
#endif
