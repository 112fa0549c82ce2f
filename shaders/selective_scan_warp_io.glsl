// The bindings, push constants and row loads of the warp scan (selective_scan_warp2.comp; kept
// apart from its algorithm, as the port it replaced shared them): u, delta, B, C, z, y as rows of 4
// floats where VEC (16-byte loads; channels, row strides and element offsets multiples of 4),
// else as floats (4 loads per piece, any offset, stride or channel count).
#if VEC
#define ROW4 vec4
#define LD4(BUF, e, n) BUF[(e) / 4u]
#else
#define ROW4 float
#define LD4(BUF, e, n) \
  vec4(BUF[e], (n) > 1u ? BUF[(e) + 1u] : 0.0, (n) > 2u ? BUF[(e) + 2u] : 0.0, (n) > 3u ? BUF[(e) + 3u] : 0.0)
#endif
layout(std430, binding = 0) restrict readonly buffer Ub { ROW4 u4[]; };
layout(std430, binding = 1) restrict readonly buffer DeltaB { ROW4 delta4[]; };
layout(std430, binding = 2) restrict readonly buffer ALogB { uint a_log[]; };
layout(std430, binding = 3) restrict readonly buffer Bb { ROW4 B4[]; };
layout(std430, binding = 4) restrict readonly buffer Cb { ROW4 C4[]; };
layout(std430, binding = 5) restrict readonly buffer Db { uint Dv[]; };
layout(std430, binding = 6) restrict readonly buffer Zb { ROW4 z4[]; };
layout(std430, binding = 7) restrict readonly buffer DtBiasB { uint dt_bias[]; };
layout(std430, binding = 8) restrict buffer StateB { float state[]; };
layout(std430, binding = 9) restrict writeonly buffer Yb { ROW4 y4[]; };

layout(push_constant) uniform Push {
  uint L, channels, d_state;
  uint u_stride, delta_stride, B_stride, C_stride, z_stride, y_stride;
  uint A_log_dtype, D_dtype, dt_bias_dtype;
  uint has_z;
  uint chunk_len, n_chunks;
  uint off[10];  // u, delta, A_log, B, C, D, z, dt_bias, ssm_state, y
} p;

DEFINE_LOAD_ANY(load_a_log, a_log)
DEFINE_LOAD_ANY(load_d, Dv)
DEFINE_LOAD_ANY(load_dt_bias, dt_bias)

vec4 silu4(vec4 x) { return x / (1.0 + exp(-x)); }

// Writes the first n (1..4) floats of o to y at element e (e a multiple of 4 where VEC).
void store_y4(uint e, vec4 o, uint n) {
#if VEC
  y4[e / 4] = o;
#else
  [[unroll]] for (uint j = 0; j < 4; ++j)
    if (j < n) y4[e + j] = o[j];
#endif
}
