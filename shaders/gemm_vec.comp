#version 450
// gemm.vec128: gemm.tile128 (gemm.comp: y[M,N] = x[M,K] · w[N,K]ᵀ (+ bias[N]), 128×128 output
// tiles, 8×8 outputs per invocation, K in steps of 16 through shared memory, fp32 accumulate)
// with 16-byte loads everywhere: x as vec4 and w as uvec4 from device memory (2 + 1 loads per
// invocation a step for 16-bit weights, against 8 + 8 scalar ones), and the operands read from
// shared memory as vec4 (4 loads per k, against 16). Invocation (tx, ty) owns rows 4ty … 4ty + 3
// and 64 + 4ty …, columns 4tx … and 64 + 4tx …: a subgroup's b reads are consecutive vec4s and
// its a reads two broadcasts. Each output's sum runs over k in the same order as gemm.tile128's
// (the same fma chain): the same bits. What devices without cooperative matrices (or F32
// weights) run for prefill-sized GEMMs whose rows of x, w and y start 16-byte aligned and whose
// K is whole 16-byte pieces (vulkan_gemm.cpp); gemm.comp otherwise. y is stored as vec4s.
// H200 with cooperative matrices off: the 130m and 2.8b prefill GEMMs 11-27% faster than
// gemm.tile128 (session 14). The stash and the epilogue are written out without loops: a loop
// spirv-opt did not unroll indexed the accumulators by a variable, the compiler kept them in
// memory and the GEMM ran 13× slower (check the SPIR-V for Function-storage arrays).
// Split K (grids too small to fill the GPU: thin x_proj, vulkan_gemm.cpp simt_splits): work
// group z multiplies k in [z k_split, (z + 1) k_split) and writes its partial product to
// y + z M y_stride (the host passes a scratch buffer as y, no bias); gemm.splitk_sum adds the
// partials in order. One split (k_split ≥ K) is the plain GEMM, the same bits as before.
// variant gemm.vec128
#include "common.glsl"

layout(local_size_x = 16, local_size_y = 16, local_size_z = 1) in;

layout(std430, binding = 0) readonly buffer X { vec4 x4[]; };
layout(std430, binding = 1) readonly buffer W { uvec4 w4[]; };
layout(std430, binding = 2) readonly buffer Bias { uint bias[]; };
layout(std430, binding = 3) writeonly buffer Y { vec4 y4[]; };

layout(push_constant) uniform Push {
  uint M, N, K;
  uint x_stride, w_stride, y_stride;
  uint w_dtype, bias_dtype, has_bias;
  uint off[4];  // element offsets of x, w, bias, y
  uint flags;   // unused: gemm_coopmat.comp's, whose push block the host shares (GemmSplitPush)
  uint k_split; // k of one split (a multiple of BK): work group z sums k in [z k_split, +k_split)
} p;

DEFINE_LOAD_ANY(load_bias, bias)

const uint BM = 128, BN = 128, BK = 16, RV = BM / 4 + 1;  // RV: vec4s per shared row (+1 pad)
shared vec4 xs[BK][RV];
shared vec4 ws[BK][RV];

// Stores load e's x piece (row e / 4, k 4 (e % 4) …) into xs and, when `has_w`, its w piece
// into ws (16-bit: row tid / 2, k 8 (tid % 2) …, 8 weights; F32: as x), transposed (k major).
void stash(uint e, vec4 xv, uvec4 wv, bool wide, bool has_w) {
  const uint row = e >> 2, kq = e & 3u;
  xs[kq * 4u][row >> 2][row & 3u] = xv.x;
  xs[kq * 4u + 1u][row >> 2][row & 3u] = xv.y;
  xs[kq * 4u + 2u][row >> 2][row & 3u] = xv.z;
  xs[kq * 4u + 3u][row >> 2][row & 3u] = xv.w;
  if (!has_w) return;
  vec4 lo, hi;
  widen(p.w_dtype, wv, lo, hi);
  const uint t = gl_LocalInvocationIndex;
  const uint wrow = wide ? t >> 1 : row, wk = wide ? (t & 1u) * 8u : kq * 4u;
  ws[wk][wrow >> 2][wrow & 3u] = lo.x;
  ws[wk + 1u][wrow >> 2][wrow & 3u] = lo.y;
  ws[wk + 2u][wrow >> 2][wrow & 3u] = lo.z;
  ws[wk + 3u][wrow >> 2][wrow & 3u] = lo.w;
  if (wide) {
    ws[wk + 4u][wrow >> 2][wrow & 3u] = hi.x;
    ws[wk + 5u][wrow >> 2][wrow & 3u] = hi.y;
    ws[wk + 6u][wrow >> 2][wrow & 3u] = hi.z;
    ws[wk + 7u][wrow >> 2][wrow & 3u] = hi.w;
  }
}

// The bias of columns n … n + 3 (0 past N or without a bias).
vec4 bias4(uint n) {
  if (p.has_bias == 0u) return vec4(0.0);
  return vec4(n < p.N ? load_bias(p.bias_dtype, p.off[2] + n) : 0.0,
              n + 1u < p.N ? load_bias(p.bias_dtype, p.off[2] + n + 1u) : 0.0,
              n + 2u < p.N ? load_bias(p.bias_dtype, p.off[2] + n + 2u) : 0.0,
              n + 3u < p.N ? load_bias(p.bias_dtype, p.off[2] + n + 3u) : 0.0);
}

// y[m, n … n + 3] = v, the columns past N left alone.
void store4(uint m, uint n, vec4 v) {
  const uint at = (p.off[3] + (gl_WorkGroupID.z * p.M + m) * p.y_stride + n) / 4u;
  if (n + 3u < p.N) {
    y4[at] = v;
  } else {
    if (n < p.N) y4[at].x = v.x;
    if (n + 1u < p.N) y4[at].y = v.y;
    if (n + 2u < p.N) y4[at].z = v.z;
  }
}

void main() {
  const uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
  const uint tid = gl_LocalInvocationIndex;
  const uint m0 = gl_WorkGroupID.y * BM, n0 = gl_WorkGroupID.x * BN;
  const bool wide = p.w_dtype != DT_F32;  // 8 weights a piece, else 4

  float acc[8][8];
  [[unroll]] for (uint i = 0; i < 8; ++i)
    [[unroll]] for (uint j = 0; j < 8; ++j) acc[i][j] = 0.0;

  // This split's k range; pieces (4 floats of x, 8 or 4 weights) never straddle its end.
  const uint kb = gl_WorkGroupID.z * p.k_split, ke = min(p.K, kb + p.k_split);
  for (uint k0 = kb; k0 < ke; k0 += BK) {
    // x: 128 rows × 4 vec4s, two per invocation; w: 128 rows × 2 (16-bit) or 4 (F32) pieces.
    // Every load of the step goes out before the first store.
    vec4 xv[2];
    uvec4 wv[2];
    [[unroll]] for (uint r = 0; r < 2; ++r) {
      const uint e = tid + r * 256u;
      const uint row = e >> 2, kq = e & 3u;
      const uint m = m0 + row, k = k0 + kq * 4u;
      xv[r] = m < p.M && k < ke ? x4[(p.off[0] + m * p.x_stride + k) / 4u] : vec4(0.0);
      const uint wrow = wide ? tid >> 1 : row, wk = wide ? k0 + (tid & 1u) * 8u : k;
      const uint n = n0 + wrow;
      const uint per = wide ? 8u : 4u;
      wv[r] = (r == 0u || !wide) && n < p.N && wk < ke
                  ? w4[(p.off[1] + n * p.w_stride + wk) / per]
                  : uvec4(0);
    }
    // Written out for r = 0 and 1 (no loop: xv and wv stay in registers).
    stash(tid, xv[0], wv[0], wide, true);
    stash(tid + 256u, xv[1], wv[1], wide, !wide);
    barrier();
    [[unroll]] for (uint kk = 0; kk < BK; ++kk) {
      const vec4 a0 = xs[kk][ty], a1 = xs[kk][16u + ty];
      const vec4 b0 = ws[kk][tx], b1 = ws[kk][16u + tx];
      const float a[8] = float[8](a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w);
      const float b[8] = float[8](b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w);
      [[unroll]] for (uint i = 0; i < 8; ++i)
        [[unroll]] for (uint j = 0; j < 8; ++j) acc[i][j] = fma(a[i], b[j], acc[i][j]);
    }
    barrier();
  }

  // Each row's 4 + 4 columns as two vec4 stores (a subgroup's 16 invocations of one ty write
  // 256 consecutive bytes), component by component where the row ends inside the vec4. Written
  // without loops over the halves, so that acc's indices stay constants (in registers).
  const uint na = n0 + 4u * tx, nb = n0 + 64u + 4u * tx;
  const vec4 ba = bias4(na), bb = bias4(nb);
  [[unroll]] for (uint i = 0; i < 8; ++i) {
    const uint m = m0 + (i < 4u ? 4u * ty + i : 64u + 4u * ty + i - 4u);
    if (m < p.M) {
      store4(m, na, vec4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]) + ba);
      store4(m, nb, vec4(acc[i][4], acc[i][5], acc[i][6], acc[i][7]) + bb);
    }
  }
}
