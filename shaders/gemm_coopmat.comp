#version 450
// y[M,N] = x[M,K] · w[N,K]ᵀ (+ bias[N]) on tensor cores (VK_NV_cooperative_matrix, 16×16×16
// fp16 × fp16 → fp32), for F16 and BF16 weights. Only built into pipelines on devices that have
// the extension, shaderFloat16, vulkanMemoryModel and subgroups of 32 (see vulkan_backend.cpp).
//
// Accuracy: the weights are exact in fp16 (F16; BF16's 8-bit mantissa fits fp16's 11 bits for
// |w| in [2^-14, 65504], below that it becomes an fp16 subnormal with an absolute error under
// 2^-25). The fp32 activations are NOT: one fp16 rounding is a relative error up to 2^-11,
// an NMSE of ~1e-7 on a random GEMM, over the harness's 1e-8 (the CUDA backend measured the
// same). So x is split into hi = fp16(x) and lo = fp16(x - hi) and both are multiplied by the
// same weight tile into one fp32 accumulator: x is then carried to ~2^-22 relative (absolute
// 2^-25 for |x| < 2^-3, where lo is an fp16 subnormal), NMSE ~1e-13 for activations of
// ordinary size. The price is two MMAs per k step. |x| ≥ 65504 overflows fp16: activations
// reaching GEMMs (normed hidden states, gated scan outputs, dt) are many orders below that.
//
// Tiling: 128×128 outputs per work group of 256 invocations = 8 subgroups of 32 in a 2 (m) ×
// 4 (n) grid, each 64×32 = 4×2 accumulator tiles. K in steps of 32 through shared memory (fp16,
// rows padded to 40 halves = 80 bytes: 16-byte aligned fragment rows, staggered banks); the
// next step's global loads are issued before this step's MMAs (register prefetch).
// Weight loads (a uniform choice by push constant `w_mode`):
//   0  K even, rows start at an even element: one 32-bit word = two halves per load
//   1  K even, rows start at an odd element: each pair funnelled from two neighbouring words
//   2  K odd: element by element
// variant gemm.coopmat
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#include "common.glsl"

layout(local_size_x = 256, local_size_y = 1, local_size_z = 1) in;

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer W { uint w[]; };
layout(std430, binding = 2) readonly buffer Bias { uint bias[]; };
layout(std430, binding = 3) writeonly buffer Y { float y[]; };

layout(push_constant) uniform Push {
  uint M, N, K;
  uint x_stride, w_stride, y_stride;
  uint w_dtype, bias_dtype, has_bias;
  uint off[4];  // element offsets of x, w, bias, y
  uint w_mode;
} p;

DEFINE_LOAD_ANY(load_w, w)
DEFINE_LOAD_ANY(load_bias, bias)

const uint BM = 128, BN = 128, BK = 32, LDS = BK + 8;
shared float16_t a_hi[BM * LDS];
shared float16_t a_lo[BM * LDS];
shared float16_t b_s[BN * LDS];
shared float c_s[8 * 256];  // one 16×16 fp32 staging tile per subgroup for the epilogue

#define FRAG16 fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>
#define FRAG32 fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>

f16vec2 widen_pair(uint word) {
  if (p.w_dtype == DT_F16) return unpackFloat2x16(word);
  return f16vec2(uintBitsToFloat(word << 16), uintBitsToFloat(word & 0xffff0000u));
}

void main() {
  const uint tid = gl_LocalInvocationIndex;
  const uint m0 = gl_WorkGroupID.y * BM, n0 = gl_WorkGroupID.x * BN;
  const uint sg = gl_SubgroupID;  // 0..7
  const uint wm = sg / 4u, wn = sg % 4u;

  FRAG32 acc[4][2];
  [[unroll]] for (uint i = 0; i < 4; ++i)
    [[unroll]] for (uint j = 0; j < 2; ++j) acc[i][j] = FRAG32(0.0);

  // Global → register staging: x 16 floats (row tid/32 + 8r, k tid%32: a subgroup reads 32
  // consecutive floats of one row), w 16 halves (modes 0/1: 8 pairs, row tid/16 + 16r,
  // pair tid%16; mode 2: like x).
  float xr[16];
  f16vec2 wr[8];
  const uint xk = tid % 32u, xrow = tid / 32u;
  const uint wp = tid % 16u, wrow = tid / 16u;

  uint k0 = 0;
  // load step k0 into registers
#define LOAD_STEP(K0)                                                                         \
  {                                                                                           \
    [[unroll]] for (uint r = 0; r < 16; ++r) {                                                \
      const uint m = m0 + xrow + 8u * r, k = (K0) + xk;                                       \
      xr[r] = (m < p.M && k < p.K) ? x[p.off[0] + m * p.x_stride + k] : 0.0;                  \
    }                                                                                         \
    if (p.w_mode < 2u) {                                                                      \
      [[unroll]] for (uint r = 0; r < 8; ++r) {                                               \
        const uint n = n0 + wrow + 16u * r, k = (K0) + 2u * wp;                               \
        f16vec2 v = f16vec2(0.0);                                                             \
        if (n < p.N && k < p.K) {                                                             \
          const uint e = p.off[1] + n * p.w_stride + k;                                       \
          uint word = w[e >> 1];                                                              \
          if (p.w_mode == 1u) word = (word >> 16) | (w[(e >> 1) + 1u] << 16);                 \
          v = widen_pair(word);                                                               \
        }                                                                                     \
        wr[r] = v;                                                                            \
      }                                                                                       \
    } else {                                                                                  \
      [[unroll]] for (uint r = 0; r < 8; ++r) {                                               \
        f16vec2 v;                                                                            \
        [[unroll]] for (uint h = 0; h < 2; ++h) {                                             \
          const uint e = tid + 256u * (2u * r + h);                                           \
          const uint n = n0 + e / BK, k = (K0) + e % BK;                                      \
          v[h] = float16_t((n < p.N && k < p.K) ? load_w(p.w_dtype, p.off[1] + n * p.w_stride + k) : 0.0); \
        }                                                                                     \
        wr[r] = v;                                                                            \
      }                                                                                       \
    }                                                                                         \
  }

  LOAD_STEP(0u)
  for (k0 = 0; k0 < p.K; k0 += BK) {
    barrier();  // the previous step's fragment loads are done
    [[unroll]] for (uint r = 0; r < 16; ++r) {
      // hi: v with its mantissa cut to fp16's 10 bits by an integer mask (exact in fp16 for
      // normal-range v; a float(float16_t(v)) round trip was folded away by the NVIDIA compiler,
      // leaving lo = 0 and NMSE ~3e-8), lo = v - hi exactly in fp32, then rounded to fp16.
      const float v = xr[r];
      const float h32 = uintBitsToFloat(floatBitsToUint(v) & 0xffffe000u);
      precise float l32 = v - h32;
      const uint s = (xrow + 8u * r) * LDS + xk;
      a_hi[s] = float16_t(h32);
      a_lo[s] = float16_t(l32);
    }
    if (p.w_mode < 2u) {
      [[unroll]] for (uint r = 0; r < 8; ++r) {
        const uint s = (wrow + 16u * r) * LDS + 2u * wp;
        b_s[s] = wr[r].x;
        b_s[s + 1u] = wr[r].y;
      }
    } else {
      [[unroll]] for (uint r = 0; r < 8; ++r)
        [[unroll]] for (uint h = 0; h < 2; ++h) {
          const uint e = tid + 256u * (2u * r + h);
          b_s[(e / BK) * LDS + e % BK] = wr[r][h];
        }
    }
    barrier();
    if (k0 + BK < p.K) LOAD_STEP(k0 + BK)
    [[unroll]] for (uint kk = 0; kk < BK; kk += 16) {
      FRAG16 b[2];
      [[unroll]] for (uint j = 0; j < 2; ++j)
        coopMatLoadNV(b[j], b_s, (wn * 32u + j * 16u) * LDS + kk, LDS, true);
      [[unroll]] for (uint i = 0; i < 4; ++i) {
        FRAG16 ah, al;
        coopMatLoadNV(ah, a_hi, (wm * 64u + i * 16u) * LDS + kk, LDS, false);
        coopMatLoadNV(al, a_lo, (wm * 64u + i * 16u) * LDS + kk, LDS, false);
        [[unroll]] for (uint j = 0; j < 2; ++j) {
          acc[i][j] = coopMatMulAddNV(al, b[j], acc[i][j]);
          acc[i][j] = coopMatMulAddNV(ah, b[j], acc[i][j]);
        }
      }
    }
  }

  // Epilogue: each 16×16 tile through this subgroup's staging area, bias added, bounds checked.
  const uint lane = gl_SubgroupInvocationID;
  [[unroll]] for (uint i = 0; i < 4; ++i)
    [[unroll]] for (uint j = 0; j < 2; ++j) {
      subgroupBarrier();
      coopMatStoreNV(acc[i][j], c_s, sg * 256u, 16, false);
      subgroupMemoryBarrierShared();
      subgroupBarrier();
      [[unroll]] for (uint q = 0; q < 8; ++q) {
        const uint e = lane + 32u * q;
        const uint m = m0 + wm * 64u + i * 16u + e / 16u;
        const uint n = n0 + wn * 32u + j * 16u + e % 16u;
        if (m < p.M && n < p.N) {
          const float b = p.has_bias != 0u ? load_bias(p.bias_dtype, p.off[2] + n) : 0.0;
          y[p.off[3] + m * p.y_stride + n] = c_s[sg * 256u + e] + b;
        }
      }
    }
}
