#version 450
// Selective scan in ONE pass with one exp per (token, channel, state): the scan over time is a
// subgroup scan of the affine maps h -> a·h + b, composed associatively:
//   (a1, b1) then (a2, b2)  =  (a1·a2, a2·b1 + b2).
// A work group is CHN subgroups, one channel each; a subgroup walks the whole sequence in chunks
// of SG·T tokens, lane l owning tokens l·T .. l·T+T-1 of the chunk. Per chunk and state n:
//   1. each lane computes a = exp(Δ·A_n), b = Δ·u·B_n for its T tokens (the only exps: L·C·N),
//      and their composition (P, H);
//   2. an inclusive subgroup scan of (P, H) by shuffles (log2 SG steps), shifted by one lane,
//      gives each lane the map from the chunk's start to its first token;
//   3. each lane applies it to the carried state, reruns its T tokens from the a, b it kept in
//      registers (no exp) and accumulates y += C_n·h; the last lane's end state is the carry.
// Bytes: u, Δ, z, B, C read once, y written once (the floor of performance.md; no chunk
// scratch, no second pass). u, Δ, z and y go through shared memory so that global accesses
// are whole rows of CHN channels; the shared indices are padded by one word per lane so that a
// subgroup's lanes (T tokens apart) hit distinct banks.
//   Δ = softplus(delta + dt_bias); h = exp(Δ·A)·h + Δ·B·u; y = C·h + D·u; y *= SiLU(z).
// Needs subgroup shuffles (basic + shuffle) in compute, work groups of CHN full subgroups.
// variant selective_scan.subgroup
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#include "common.glsl"

layout(constant_id = 0) const uint WG = 128;    // CHN · SG
layout(constant_id = 1) const uint D_STATE = 16;
layout(constant_id = 2) const uint SG = 32;     // subgroup size
layout(constant_id = 3) const uint T = 4;       // tokens per lane per chunk
layout(constant_id = 4) const uint CHN = 4;     // channels (subgroups) per work group
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer Ub { float u[]; };
layout(std430, binding = 1) readonly buffer DeltaB { float delta[]; };
layout(std430, binding = 2) readonly buffer ALogB { uint a_log[]; };
layout(std430, binding = 3) readonly buffer Bb { float Bm[]; };
layout(std430, binding = 4) readonly buffer Cb { float Cm[]; };
layout(std430, binding = 5) readonly buffer Db { uint Dv[]; };
layout(std430, binding = 6) readonly buffer Zb { float z[]; };
layout(std430, binding = 7) readonly buffer DtBiasB { uint dt_bias[]; };
layout(std430, binding = 8) buffer StateB { float state[]; };
layout(std430, binding = 9) writeonly buffer Yb { float y[]; };

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

const uint CH = SG * T;  // tokens per chunk
shared float s_u[CH * CHN + SG];
shared float s_d[CH * CHN + SG];
shared float s_z[CH * CHN + SG];
shared float s_B[CH * D_STATE + SG];
shared float s_C[CH * D_STATE + SG];

uint ich(uint tt, uint ch) { return tt * CHN + ch + tt / T; }
uint ist(uint tt, uint n) { return tt * D_STATE + n + tt / T; }

void main() {
  const uint tid = gl_LocalInvocationIndex;
  const uint c0 = linear_group_id() * CHN;
  const uint ch = gl_SubgroupID, lane = gl_SubgroupInvocationID;
  const uint c = c0 + ch;
  const bool live = c < p.channels;
  const uint cc = live ? c : 0;

  float A[D_STATE], carry[D_STATE];
  [[unroll]] for (uint n = 0; n < D_STATE; ++n) {
    A[n] = -exp(load_a_log(p.A_log_dtype, p.off[2] + cc * D_STATE + n));
    carry[n] = state[p.off[8] + cc * D_STATE + n];
  }
  const float dtb = load_dt_bias(p.dt_bias_dtype, p.off[7] + cc);
  const float dskip = load_d(p.D_dtype, p.off[5] + cc);

  for (uint tb = 0; tb < p.L; tb += CH) {
    barrier();  // the previous chunk's readers of the tiles (and y staging) are done
    for (uint e = tid; e < CH * CHN; e += WG) {
      const uint tt = e / CHN, k = e % CHN;
      const uint t = tb + tt, cg = c0 + k;
      const bool ok = t < p.L && cg < p.channels;
      s_u[ich(tt, k)] = ok ? u[p.off[0] + t * p.u_stride + cg] : 0.0;
      s_d[ich(tt, k)] = ok ? delta[p.off[1] + t * p.delta_stride + cg] : 0.0;
      s_z[ich(tt, k)] = (ok && p.has_z != 0u) ? z[p.off[6] + t * p.z_stride + cg] : 0.0;
    }
    for (uint e = tid; e < CH * D_STATE; e += WG) {
      const uint tt = e / D_STATE, n = e % D_STATE;
      const uint t = tb + tt;
      s_B[ist(tt, n)] = t < p.L ? Bm[p.off[3] + t * p.B_stride + n] : 0.0;
      s_C[ist(tt, n)] = t < p.L ? Cm[p.off[4] + t * p.C_stride + n] : 0.0;
    }
    barrier();

    float dt[T], du[T], yacc[T];
    [[unroll]] for (uint i = 0; i < T; ++i) {
      const uint tt = lane * T + i;
      const float uu = s_u[ich(tt, ch)];
      // Past the end: Δ = 0, so the map is the identity (a = 1, b = 0).
      dt[i] = tb + tt < p.L ? softplus(s_d[ich(tt, ch)] + dtb) : 0.0;
      du[i] = dt[i] * uu;
      yacc[i] = dskip * uu;
    }
    [[unroll]] for (uint n = 0; n < D_STATE; ++n) {
      float a[T], b[T];
      float P = 1.0, H = 0.0;
      [[unroll]] for (uint i = 0; i < T; ++i) {
        a[i] = exp(dt[i] * A[n]);
        b[i] = du[i] * s_B[ist(lane * T + i, n)];
        H = fma(a[i], H, b[i]);
        P *= a[i];
      }
      // Inclusive scan over lanes (Hillis-Steele with shuffles from lane - off).
      [[unroll]] for (uint off = 1; off < SG; off *= 2) {
        const uint src = lane >= off ? lane - off : lane;
        const float Pp = subgroupShuffle(P, src), Hp = subgroupShuffle(H, src);
        if (lane >= off) {
          H = fma(P, Hp, H);
          P *= Pp;
        }
      }
      // Exclusive: the lane before's inclusive map, applied to the carried state.
      const uint prev = lane > 0 ? lane - 1 : 0;
      const float Pe = subgroupShuffle(P, prev), He = subgroupShuffle(H, prev);
      float h = lane > 0 ? fma(Pe, carry[n], He) : carry[n];
      [[unroll]] for (uint i = 0; i < T; ++i) {
        h = fma(a[i], h, b[i]);
        yacc[i] = fma(h, s_C[ist(lane * T + i, n)], yacc[i]);
      }
      carry[n] = subgroupShuffle(h, SG - 1);
    }
    // y through shared memory (s_u's slots: every lane read its own u above, and this lane's
    // slots are only written by this lane).
    [[unroll]] for (uint i = 0; i < T; ++i) {
      const uint tt = lane * T + i;
      float res = yacc[i];
      if (p.has_z != 0u) res *= silu(s_z[ich(tt, ch)]);
      s_u[ich(tt, ch)] = res;
    }
    barrier();
    for (uint e = tid; e < CH * CHN; e += WG) {
      const uint tt = e / CHN, k = e % CHN;
      const uint t = tb + tt, cg = c0 + k;
      if (t < p.L && cg < p.channels) y[p.off[9] + t * p.y_stride + cg] = s_u[ich(tt, k)];
    }
  }
  if (live && lane == 0)
    [[unroll]] for (uint n = 0; n < D_STATE; ++n) state[p.off[8] + c * D_STATE + n] = carry[n];
}
