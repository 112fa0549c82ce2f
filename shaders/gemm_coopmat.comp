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
// Tiling: BM (m) × BN (n) outputs per work group of WARPS_M × WARPS_N subgroups of 32, each
// (BM / WARPS_M) × (BN / WARPS_N):
//   gemm.coopmat       128 × 256, 4 × 4 subgroups (512 invocations) of 32 × 64 = 2 × 4 tiles
//   gemm.coopmat_t32   128 × 128, 4 × 4 subgroups (512 invocations) of 32 × 32 = 2 × 2 tiles
//   gemm.coopmat_n128  128 × 128, 2 × 4 subgroups (256 invocations) of 64 × 32 = 4 × 2 tiles
//   gemm.coopmat_n192  128 × 192, 4 × 4 subgroups (512 invocations) of 32 × 48 = 2 × 3 tiles
// What the H100 measured (bench/results/h100_session7_vkgemm_2026-11-27.md): 16 subgroups per
// work group beat 8 (more warps to hide latency), and at 512 invocations the compiler is capped
// at 128 registers (gemm.coopmat: 128 with 32 bytes spilled; _t32: 105), so one work group runs
// per SM. Work groups of 256 or 128 invocations of 32 × 64 subgroups got 160-172 registers, so
// no more of them shared an SM and they were 20-100% slower; 64 × 128 groups of 8 subgroups of
// 32 × 32 (116 registers, two per SM) were 25% faster to 12% slower than _t32 (faster only on
// the thinnest grids); the k slice's MMAs ordered per B fragment, 16 × 64 subgroups and two
// shared-memory stages of k 16 (one barrier per step) were no faster or slower (the git history
// has them all). gemm.coopmat_t32 does half the work per
// barrier at ~0.55 of the time per work group: it wins where 128 × 256 tiles leave the last
// wave of work groups part-empty (vulkan_gemm.cpp chooses by that). Where the time goes: the
// same loop without the staging and its barriers (fragment loads and MMAs on stale shared
// memory) took 43% of the kernel's time on the 2.8b out_proj at L = 16K, MMAs alone 38%.
// K in steps of 32 through shared memory, single-buffered with the next step's global loads
// issued before this step's MMAs (register prefetch). The tiles hold fp16 in uvec4 (8 halves),
// rows padded to 40 halves = 80 bytes: 16-byte aligned fragment rows, and the 8 rows of one
// 8×8 fragment piece fall on distinct banks. x is split into hi and lo once, as it is staged
// (two tiles); per 16-wide k slice a subgroup loads its B and lo fragments, issues all lo MMAs,
// then the hi ones (no two consecutive MMAs share an accumulator). Shared memory: 2 × BM × 80 B
// (x hi, lo) + BN × 80 B (w) = 40 KiB at 128 × 256 (NVIDIA's Vulkan limit is 48 KiB), 30 KiB at
// 128 × 128; the epilogue reuses it as staging.
// Global loads and stores (uniform choices by the push-constant `flags`):
//   bit 0  x rows start 16-byte aligned: x in vec4 pieces (scalar at a ragged K edge)
//   bit 1  w rows start 16-byte aligned: w in 16-byte pieces of 8 halves (BF16 converted to
//          fp16 while staging); otherwise element by element
//   bit 2  no bias and y rows 16-byte aligned: whole 16×16 output tiles stored straight to y;
//          otherwise (and at ragged edges) through a per-subgroup staging tile
// Split K (grids too small to fill the GPU, vulkan_gemm.cpp): work group z multiplies the k
// range [z k_split, (z + 1) k_split) and writes its partial product to y + z M y_stride (the
// host passes a scratch buffer as y, no bias); gemm_splitk.comp sums the partials in order.
// variant gemm.coopmat -DBM=128 -DBN=256 -DWARPS_M=4 -DWARPS_N=4
// variant gemm.coopmat_t32 -DBM=128 -DBN=128 -DWARPS_M=4 -DWARPS_N=4
// variant gemm.coopmat_n128 -DBM=128 -DBN=128 -DWARPS_M=2 -DWARPS_N=4
// variant gemm.coopmat_n192 -DBM=128 -DBN=192 -DWARPS_M=4 -DWARPS_N=4
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#include "common.glsl"

const uint NSG = WARPS_M * WARPS_N;  // subgroups: WARPS_M (m) × WARPS_N (n)
const uint NT = 32 * NSG;      // invocations
layout(local_size_x = NT, local_size_y = 1, local_size_z = 1) in;

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 0) readonly buffer X4 { vec4 x4[]; };
layout(std430, binding = 1) readonly buffer W { uint w[]; };
layout(std430, binding = 1) readonly buffer W4 { uvec4 w4[]; };
layout(std430, binding = 2) readonly buffer Bias { uint bias[]; };
layout(std430, binding = 3) writeonly buffer Y { float y[]; };

layout(push_constant) uniform Push {
  uint M, N, K;
  uint x_stride, w_stride, y_stride;
  uint w_dtype, bias_dtype, has_bias;
  uint off[4];  // element offsets of x, w, bias, y
  uint flags;
  uint k_split;  // k of one split (a multiple of BK): work group z sums k in [z k_split, +k_split)
} p;

DEFINE_LOAD_ANY(load_w, w)
DEFINE_LOAD_ANY(load_bias, bias)

const uint BK = 32;
// Tiles hold fp16 as uvec4 (8 halves; cooperative-matrix loads take offsets and strides in
// these units): rows of 5 = 40 halves, 32 used.
const uint LD = 5;
const uint WM = BM / WARPS_M, WN = BN / WARPS_N;  // one subgroup's tile
const uint TM = WM / 16, TN = WN / 16;             // its accumulator tiles
const uint PPR = BK / 8;                  // pieces of 8 (k) per staged row
const uint XP = BM * PPR, WP = BN * PPR;  // x, w pieces per stage
const uint XR = (XP + NT - 1) / NT;       // x pieces (8 floats) per invocation and stage
const uint WR = (WP + NT - 1) / NT;       // w pieces (8 halves) per invocation and stage
shared uvec4 a_hi[BM * LD];
shared uvec4 a_lo[BM * LD];
shared uvec4 b_s[BN * LD];
// The epilogue stages fp32 16×16 tiles (64 uvec4 per subgroup) in a_hi / a_lo / b_s, free
// once every subgroup's last MMA has read them.
const uint C_PER_SG = 64;
#if WARPS_M * WARPS_N > 2 * (BM * 5 / 64) + BN * 5 / 64
#error "the epilogue's staging tiles must fit in the shared tiles"
#endif
// Subgroup sg's staging tile: uvec4 [C_PER_SG sg, +C_PER_SG) of a_hi, then a_lo, then b_s.
const uint A_SG = BM * LD / C_PER_SG;  // staging tiles a_hi holds
#define STAGE_STORE(M)                                                              \
  if (sg < A_SG) coopMatStoreNV(M, a_hi, sg * C_PER_SG, 4, false);                  \
  else if (sg < 2u * A_SG) coopMatStoreNV(M, a_lo, (sg - A_SG) * C_PER_SG, 4, false); \
  else coopMatStoreNV(M, b_s, (sg - 2u * A_SG) * C_PER_SG, 4, false);
#define STAGE_LOAD(E)                                                                             \
  uintBitsToFloat(sg < A_SG ? a_hi[sg * C_PER_SG + (E) / 4u][(E) % 4u]                             \
                            : (sg < 2u * A_SG ? a_lo[(sg - A_SG) * C_PER_SG + (E) / 4u][(E) % 4u]   \
                                              : b_s[(sg - 2u * A_SG) * C_PER_SG + (E) / 4u][(E) % 4u]))

#define FRAG16 fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>
#define FRAG32 fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>

// x[m, k .. k+3], zero outside the matrix.
vec4 load_x4(uint m, uint k) {
  vec4 v = vec4(0.0);
  if (m < p.M) {
    const uint e = p.off[0] + m * p.x_stride + k;
    if ((p.flags & 1u) != 0u && k + 4u <= p.K) {
      v = x4[e >> 2];
    } else {
      [[unroll]] for (uint c = 0; c < 4; ++c)
        if (k + c < p.K) v[c] = x[e + c];
    }
  }
  return v;
}

// w[n, k .. k+7] as 8 packed fp16 halves, zero outside the matrix.
uvec4 load_w8(uint n, uint k) {
  uvec4 r = uvec4(0u);
  if (n < p.N) {
    const uint e = p.off[1] + n * p.w_stride + k;
    if ((p.flags & 2u) != 0u && k + 8u <= p.K) {
      r = w4[e >> 3];
      if (p.w_dtype != DT_F16) {  // BF16 → fp16 (exact in fp16's normal range)
        [[unroll]] for (uint c = 0; c < 4; ++c)
          r[c] = packFloat2x16(f16vec2(vec2(uintBitsToFloat(r[c] << 16), uintBitsToFloat(r[c] & 0xffff0000u))));
      }
    } else {
      [[unroll]] for (uint c = 0; c < 4; ++c) {
        vec2 v = vec2(0.0);
        if (k + 2u * c < p.K) v.x = load_w(p.w_dtype, e + 2u * c);
        if (k + 2u * c + 1u < p.K) v.y = load_w(p.w_dtype, e + 2u * c + 1u);
        r[c] = packFloat2x16(f16vec2(v));
      }
    }
  }
  return r;
}

// Eight fp32 activations as fp16 hi and lo (see Accuracy): hi is v with its mantissa cut to
// fp16's 10 bits by an integer mask (exact in fp16 for normal-range v; a float(float16_t(v))
// round trip was folded away by the NVIDIA compiler, leaving lo = 0 and NMSE ~3e-8), lo =
// v - hi exactly in fp32, then rounded to fp16.
void split_hi_lo(vec4 v0, vec4 v1, out uvec4 hi, out uvec4 lo) {
  [[unroll]] for (uint h = 0; h < 2; ++h) {
    const vec4 v = h == 0u ? v0 : v1;
    const vec4 h32 = uintBitsToFloat(floatBitsToUint(v) & 0xffffe000u);
    precise vec4 l32 = v - h32;
    hi[2u * h] = packFloat2x16(f16vec2(h32.xy));
    hi[2u * h + 1u] = packFloat2x16(f16vec2(h32.zw));
    lo[2u * h] = packFloat2x16(f16vec2(l32.xy));
    lo[2u * h + 1u] = packFloat2x16(f16vec2(l32.zw));
  }
}

void main() {
  const uint tid = gl_LocalInvocationIndex;
  const uint m0 = gl_WorkGroupID.y * BM, n0 = gl_WorkGroupID.x * BN;
  const uint sg = gl_SubgroupID;
  const uint wm = sg / WARPS_N, wn = sg % WARPS_N;

  FRAG32 acc[TM][TN];
  [[unroll]] for (uint i = 0; i < TM; ++i)
    [[unroll]] for (uint j = 0; j < TN; ++j) acc[i][j] = FRAG32(0.0);

  // Global → register staging: piece q = tid + NT r (8 k-consecutive elements: two vec4 of x,
  // one uvec4 of w) is row q / PPR, k offset 8 (q % PPR) of the stage. A subgroup reads 32 / PPR
  // rows × 32 PPR bytes of x per vec4 pair and as many rows of w, 16 PPR bytes each.
#define LOAD_STEP(XS, WS, K0)                                                             \
  {                                                                                       \
    [[unroll]] for (uint r = 0; r < XR; ++r) {                                            \
      const uint q = tid + NT * r;                                                        \
      if (XP % NT == 0u || q < XP) {                                                      \
        XS[2u * r] = load_x4(m0 + q / PPR, (K0) + 8u * (q % PPR));                        \
        XS[2u * r + 1u] = load_x4(m0 + q / PPR, (K0) + 8u * (q % PPR) + 4u);              \
      }                                                                                   \
    }                                                                                     \
    [[unroll]] for (uint r = 0; r < WR; ++r) {                                            \
      const uint q = tid + NT * r;                                                        \
      if (WP % NT == 0u || q < WP) WS[r] = load_w8(n0 + q / PPR, (K0) + 8u * (q % PPR));   \
    }                                                                                     \
  }
  // Registers → the tiles, x split into hi and lo.
#define STORE_STEP(XS, WS)                                                                \
  {                                                                                       \
    [[unroll]] for (uint r = 0; r < XR; ++r) {                                            \
      const uint q = tid + NT * r;                                                        \
      if (XP % NT == 0u || q < XP) {                                                      \
        uvec4 hi, lo;                                                                     \
        split_hi_lo(XS[2u * r], XS[2u * r + 1u], hi, lo);                                 \
        const uint s = (q / PPR) * LD + q % PPR;                                          \
        a_hi[s] = hi;                                                                     \
        a_lo[s] = lo;                                                                     \
      }                                                                                   \
    }                                                                                     \
    [[unroll]] for (uint r = 0; r < WR; ++r) {                                            \
      const uint q = tid + NT * r;                                                        \
      if (WP % NT == 0u || q < WP) b_s[(q / PPR) * LD + q % PPR] = WS[r];                \
    }                                                                                     \
  }
  // The MMAs of one K step. Per 16-wide k slice a subgroup loads its B and lo fragments,
  // issues all lo MMAs, then the hi ones: 4 × TN independent MMAs between two that share an
  // accumulator.
#define MMA_STEP                                                                          \
  [[unroll]] for (uint kk = 0; kk < BK / 8u; kk += 2u) { /* 16 halves = 2 uvec4 */       \
    FRAG16 b[TN], a[TM];                                                                  \
    [[unroll]] for (uint j = 0; j < TN; ++j)                                              \
      coopMatLoadNV(b[j], b_s, (wn * WN + j * 16u) * LD + kk, LD, true);                  \
    [[unroll]] for (uint i = 0; i < TM; ++i)                                              \
      coopMatLoadNV(a[i], a_lo, (wm * WM + i * 16u) * LD + kk, LD, false);                \
    [[unroll]] for (uint i = 0; i < TM; ++i)                                              \
      [[unroll]] for (uint j = 0; j < TN; ++j) acc[i][j] = coopMatMulAddNV(a[i], b[j], acc[i][j]); \
    [[unroll]] for (uint i = 0; i < TM; ++i)                                              \
      coopMatLoadNV(a[i], a_hi, (wm * WM + i * 16u) * LD + kk, LD, false);                \
    [[unroll]] for (uint i = 0; i < TM; ++i)                                              \
      [[unroll]] for (uint j = 0; j < TN; ++j) acc[i][j] = coopMatMulAddNV(a[i], b[j], acc[i][j]); \
  }

  // One stage, two barriers per K step; the next step's global loads are in flight during
  // this step's MMAs.
  // k_split is a multiple of BK, so a split's loads stop at its end (or at K, zero-filled).
  const uint kb = gl_WorkGroupID.z * p.k_split, ke = min(p.K, kb + p.k_split);
  vec4 xr[2 * XR];
  uvec4 wr[WR];
  LOAD_STEP(xr, wr, kb)
  for (uint k0 = kb; k0 < ke; k0 += BK) {
    barrier();  // the previous step's fragment loads are done
    STORE_STEP(xr, wr)
    barrier();
    if (k0 + BK < ke) LOAD_STEP(xr, wr, k0 + BK)
    MMA_STEP
  }

  // Epilogue: whole in-bounds tiles straight to y where allowed (bit 2), else each 16×16 tile
  // through this subgroup's staging area, bias added, bounds checked.
  barrier();  // every subgroup's MMAs are done with the tiles the staging reuses
  const uint lane = gl_SubgroupInvocationID;
  const bool direct = (p.flags & 4u) != 0u;
  const uint yb = p.off[3] + gl_WorkGroupID.z * p.M * p.y_stride;  // this split's output
  [[unroll]] for (uint i = 0; i < TM; ++i)
    [[unroll]] for (uint j = 0; j < TN; ++j) {
      const uint tm = m0 + wm * WM + i * 16u, tn = n0 + wn * WN + j * 16u;
      if (tm >= p.M || tn >= p.N) continue;
      if (direct && tm + 16u <= p.M && tn + 16u <= p.N) {
        coopMatStoreNV(acc[i][j], y, yb + tm * p.y_stride + tn, p.y_stride, false);
        continue;
      }
      subgroupBarrier();
      STAGE_STORE(acc[i][j])
      subgroupMemoryBarrierShared();
      subgroupBarrier();
      [[unroll]] for (uint q = 0; q < 8; ++q) {
        const uint e = lane + 32u * q;
        const uint m = tm + e / 16u, n = tn + e % 16u;
        if (m < p.M && n < p.N) {
          const float b = p.has_bias != 0u ? load_bias(p.bias_dtype, p.off[2] + n) : 0.0;
          y[yb + m * p.y_stride + n] = STAGE_LOAD(e) + b;
        }
      }
    }
}
