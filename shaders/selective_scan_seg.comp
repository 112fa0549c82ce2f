#version 450
// The prompt scan (d_state 16) in the "segment" layout: a work group owns CB channels over all of
// L and walks chunks of T = S·R tokens in order, the state carried between chunks; its
// invocations are (time segment s, channel slot c, state group g): tid = (s·CB + c)·4 + g.
//
// Why: warp2 (one subgroup per channel, lanes = time slices × state groups) has every subgroup
// read all of a chunk's B and C and scan the slices with ~34 shuffles per chunk. Here the lanes
// at one token are different channels: a B / C row read serves CB channels (a broadcast), the
// segments meet once per chunk through shared memory instead of a shuffle scan, and the only
// shuffles left are y's sum over the 4 state groups.
//   staging (work group, from registers loaded one chunk earlier): chunk k+1's Δ =
//            softplus(delta + dt_bias) and Δ·u as (Δ, Δ·u) pairs, D·u and SiLU(z) as (D·u, gate)
//            pairs, rows [token][channel] padded per segment; B, C as rows [token][state / 4],
//            one pad row after each segment's R rows (different banks for two segments that
//            share a subgroup).
//   phase 1: the invocation walks its segment's R tokens from a zero start: a = exp2(Δ·A·log2e)
//            and x = Δu·B kept in registers, H = a·H + x; the segment's decay P as one exp2 of
//            ΣΔ. (P, H) to shared memory; barrier.
//   phase 2: the invocation folds the chunk's carry-in (the previous chunk's final state) and
//            the segments before its own into its true start, reruns its R tokens (2 FMAs per
//            element), y summed over the 4 group lanes (a reduce-scatter by shuffle-xor 2 and 1),
//            gated ((y + D·u)·SiLU(z)) and stored by the lane that ends with it. The last
//            segment's end state is the next chunk's carry-in (shared, 2 slots).
// Two barriers per chunk; ring slots: 2 of the staged rows. Inputs read once, y written once, no
// scratch. Tokens past L have Δ = 0 and zero B: decay 1, input 0; their y is not stored.
// Measured (H100, session 7, opt-in): slower than warp2 and the chunked scan at every width
// (1536 × 4K: 181 µs at 12,4,8 against warp2's 117.5; 5120 × 4K: 500 at 8,8,8 against the
// chunked scan's 437): few warps per SM (CB·S·4 invocations per work group, C / CB groups) and
// two barriers per chunk leave it latency-bound, with the exp unit mostly idle. Tried and
// dropped (same calls; the git history has them): 2 states a lane (twice the invocations),
// one barrier a chunk (phase 2 of k − 1 and phase 1 of k between two barriers, 3 slots: up to
// 1.6× slower), the fold unrolled and predicated (no faster), z staged by other invocations
// than delta and u (5-8% slower).
// Needs: d_state 16, subgroup shuffles in compute, subgroups of consecutive invocations (a
// multiple of 4 lanes); R a multiple of 4, R <= 16, CB a multiple of 4. Variant seg (VEC):
// channels, row strides and element offsets of u, delta, B, C, z, y multiples of 4;
// seg_scalar: any.
//   Δ = softplus(delta + dt_bias); h = exp(Δ·A)·h + Δ·B·u; y = C·h + D·u; y *= SiLU(z).
// variant selective_scan.seg -DVEC=1
// variant selective_scan.seg_scalar -DVEC=0
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#include "common.glsl"

layout(constant_id = 0) const uint WG = 256;  // 4 · CB · S
layout(constant_id = 1) const uint CB = 8;    // channels per work group
layout(constant_id = 2) const uint S = 8;     // time segments per chunk
layout(constant_id = 3) const uint R = 8;     // tokens per segment
layout(local_size_x_id = 0) in;

#include "selective_scan_warp_io.glsl"

const uint N = 16;
const uint T = S * R;              // tokens per chunk
const uint Q = R / 4;              // tokens per lane after the reduce-scatter
const uint V = CB / 4;             // vec4 pieces in a row of CB channels
const uint PADC = 4;               // pad (pairs) after each segment's rows of channel pairs
const uint DDS = T * CB + S * PADC;  // one slot of pair rows
const uint BCS = (T + S) * 4;      // one slot of B or C rows (vec4)
const uint NBP = (R + CB - 1) / CB;  // B, C staging pieces per invocation (4T = WG·R/CB pieces)

shared vec2 s_dd[2 * DDS];  // [slot][token][channel]: (Δ, Δ·u)
shared vec2 s_g[2 * DDS];   // (D·u, SiLU(z))
shared vec4 s_B[2 * BCS];   // [slot][token + token / R][state / 4]
shared vec4 s_C[2 * BCS];
shared vec4 s_P[WG];        // per invocation: its segment's decay and end state from zero
shared vec4 s_H[WG];
shared vec4 s_carry[2 * CB * 4];  // [slot][channel][state / 4]: the chunk's carry-in

// One float of y at element e.
void store_y1(uint e, float v) {
#if VEC
  y4[e / 4][e % 4] = v;
#else
  y4[e] = v;
#endif
}

uint c0, nch;
// This invocation's staging piece of the channel rows (row lt, channels c0 + 4·lq ..; ln of
// them valid), with the dt_bias and D of those channels.
uint lt, lq, ln;
bool lrow;
vec4 bias4, d4;

uint dd_at(uint slot, uint t, uint c) { return slot * DDS + t * CB + c + (t / R) * PADC; }
uint bc_at(uint slot, uint t) { return slot * BCS + (t + t / R) * 4; }
bool row_ok(uint k, uint t) { return k < nch && k * T + t < p.L; }

vec4 ld_rows(uint k, uint which) {
  if (!lrow || ln == 0u || !row_ok(k, lt)) return vec4(0.0);
  const uint r = k * T + lt, c = c0 + 4 * lq;
  if (which == 0u) return LD4(delta4, p.off[1] + r * p.delta_stride + c, ln);
  if (which == 1u) return LD4(u4, p.off[0] + r * p.u_stride + c, ln);
  return LD4(z4, p.off[6] + r * p.z_stride + c, ln);
}
// B and C pieces of the next chunk to stage (NBP <= 4 used: a fixed size, since GLSL cannot
// copy arrays sized by specialization constants).
vec4 rb[4], rc[4];
void ld_bc(uint k) {
  [[unroll]] for (uint i = 0; i < NBP; ++i) {
    const uint e = gl_LocalInvocationIndex + i * WG, bt = e / 4;
    const bool ok = e < T * 4 && row_ok(k, bt);
    rb[i] = ok ? LD4(B4, p.off[3] + (k * T + bt) * p.B_stride + 4 * (e % 4), 4u) : vec4(0.0);
    rc[i] = ok ? LD4(C4, p.off[4] + (k * T + bt) * p.C_stride + 4 * (e % 4), 4u) : vec4(0.0);
  }
}

// Chunk k into slot k & 1, Δ and the gate prepared on the way.
void stage(uint k, vec4 d, vec4 uu, vec4 zz, bool has_z) {
  const uint slot = k & 1u;
  if (lrow && ln > 0u) {
    const bool tok = row_ok(k, lt);
    [[unroll]] for (uint j = 0; j < 4; ++j) {
      const float dt = tok && j < ln ? softplus(d[j] + bias4[j]) : 0.0;
      const uint o = dd_at(slot, lt, 4 * lq + j);
      s_dd[o] = vec2(dt, dt * uu[j]);
      s_g[o] = vec2(d4[j] * uu[j], has_z ? silu(zz[j]) : 1.0);
    }
  }
  [[unroll]] for (uint i = 0; i < NBP; ++i) {
    const uint e = gl_LocalInvocationIndex + i * WG, bt = e / 4;
    if (e < T * 4) {
      const uint o = bc_at(slot, bt) + e % 4;
      s_B[o] = rb[i];
      s_C[o] = rc[i];
    }
  }
}

void main() {
  const uint tid = gl_LocalInvocationIndex;
  const uint g = tid & 3u, c = (tid >> 2) % CB, s = tid / (4 * CB);
  c0 = linear_group_id() * CB;
  const bool cv = c0 + c < p.channels;
  const uint cc = cv ? c0 + c : 0u;
  nch = (p.L + T - 1) / T;
  lt = tid / V;
  lq = tid % V;
  lrow = tid < T * V;
  ln = lrow && c0 + 4 * lq < p.channels ? min(4u, p.channels - c0 - 4 * lq) : 0u;
  [[unroll]] for (uint j = 0; j < 4; ++j) {
    const uint ch = min(c0 + 4 * lq + j, p.channels - 1);
    bias4[j] = load_dt_bias(p.dt_bias_dtype, p.off[7] + ch);
    d4[j] = load_d(p.D_dtype, p.off[5] + ch);
  }

  const float kLog2e = 1.4426950408889634;
  vec4 A2, h;
  [[unroll]] for (uint j = 0; j < 4; ++j) {
    A2[j] = -exp(load_a_log(p.A_log_dtype, p.off[2] + cc * N + 4 * g + j)) * kLog2e;
    h[j] = cv ? state[p.off[8] + cc * N + 4 * g + j] : 0.0;
  }
  const bool has_z = p.has_z != 0u;
  if (s == 0) s_carry[c * 4 + g] = h;

  // Prologue: chunk 0 in shared memory, chunk 1 in registers.
  ld_bc(0);
  stage(0, ld_rows(0, 0), ld_rows(0, 1), has_z ? ld_rows(0, 2) : vec4(0.0), has_z);
  vec4 rd = ld_rows(1, 0), ru = ld_rows(1, 1), rz = has_z ? ld_rows(1, 2) : vec4(0.0);
  ld_bc(1);

  vec4 a[R], x[R];
  for (uint k = 0; k < nch; ++k) {
    const uint slot = k & 1u;
    // Chunk k's rows and carry-in are visible; every read of slot (k + 1) & 1 is done.
    barrier();
    if (k + 1 < nch) stage(k + 1, rd, ru, rz, has_z);
    rd = ld_rows(k + 2, 0);
    ru = ld_rows(k + 2, 1);
    if (has_z) rz = ld_rows(k + 2, 2);
    ld_bc(k + 2);

    // Phase 1: the segment from a zero start.
    vec4 H = vec4(0.0);
    float dsum = 0.0;
    [[unroll]] for (uint r = 0; r < R; ++r) {
      const uint t = s * R + r;
      const vec2 dd = s_dd[dd_at(slot, t, c)];
      dsum += dd.x;
      a[r] = exp2(dd.x * A2);
      x[r] = s_B[bc_at(slot, t) + g] * dd.y;
      H = fma(a[r], H, x[r]);
    }
    s_P[tid] = exp2(dsum * A2);
    s_H[tid] = H;
    barrier();

    // Phase 2: the true start, the rerun, y.
    vec4 hs = s_carry[slot * CB * 4 + c * 4 + g];
    for (uint j = 0; j < s; ++j) {
      const uint o = (j * CB + c) * 4 + g;
      hs = fma(s_P[o], hs, s_H[o]);
    }
    float yv[R];
    [[unroll]] for (uint r = 0; r < R; ++r) {
      hs = fma(a[r], hs, x[r]);
      yv[r] = dot(hs, s_C[bc_at(slot, s * R + r) + g]);
    }
    if (s == S - 1) {
      s_carry[(slot ^ 1u) * CB * 4 + c * 4 + g] = hs;
      h = hs;
    }
    // Reduce-scatter over the 4 group lanes: lane g ends with tokens g·Q + i of its segment.
    [[unroll]] for (uint off = 2; off >= 1; off >>= 1) {
      const bool hi = (g & off) != 0u;
      const uint n = off * Q;
      [[unroll]] for (uint i = 0; i < n; ++i) {
        const float lo_v = yv[i], hi_v = yv[i + n];
        const float keep = hi ? hi_v : lo_v, send = hi ? lo_v : hi_v;
        yv[i] = keep + subgroupShuffleXor(send, off);
      }
    }
    [[unroll]] for (uint i = 0; i < Q; ++i) {
      const uint t = s * R + g * Q + i;
      if (cv && k * T + t < p.L) {
        const vec2 gt = s_g[dd_at(slot, t, c)];
        store_y1(p.off[9] + (k * T + t) * p.y_stride + c0 + c, (yv[i] + gt.x) * gt.y);
      }
    }
  }
  if (cv && s == S - 1)
    [[unroll]] for (uint j = 0; j < 4; ++j) state[p.off[8] + cc * N + 4 * g + j] = h[j];
}
