#version 450
// The prompt scan (d_state 16) in the "segment" layout: a work group owns CB channels over all of
// L and walks chunks of T = S·R tokens in order, the state carried between chunks; its
// invocations are (time segment s, channel slot c, state group g of NS states):
// tid = (s·CB + c)·G + g, G = 16 / NS lanes per channel (NS 4, or 2: twice the invocations,
// half the registers and exps per invocation).
//
// Why: warp2 (one subgroup per channel, lanes = time slices × state groups) has every subgroup
// read all of a chunk's B and C and scan the slices with ~34 shuffles per chunk. Here the lanes
// at one token are different channels: a B / C row read serves CB channels (a broadcast), the
// segments meet once per chunk through shared memory instead of a shuffle scan, and the only
// shuffles left are y's sum over the G state groups.
//   staging (work group, from registers loaded one chunk earlier): chunk k+1's Δ =
//            softplus(delta + dt_bias) and Δ·u as (Δ, Δ·u) pairs, D·u and SiLU(z) as (D·u, gate)
//            pairs, rows [token][channel] padded per segment (delta and u by one half of the
//            invocations, z by the other where the work group has enough of them: the exps of
//            softplus and SiLU spread); B, C as rows [token][state / NS],
//            one pad row after each segment's R rows (different banks for two segments that
//            share a subgroup).
//   phase 1: the invocation walks its segment's R tokens from a zero start: a = exp2(Δ·A·log2e)
//            and x = Δu·B kept in registers, H = a·H + x; the segment's decay P as one exp2 of
//            ΣΔ. (P, H) to shared memory; barrier.
//   phase 2: the invocation folds the chunk's carry-in (the previous chunk's final state) and
//            the segments before its own into its true start, reruns its R tokens (2 FMAs per
//            element), y summed over the G group lanes (a reduce-scatter by shuffle-xor G/2 .. 1),
//            gated ((y + D·u)·SiLU(z)) and stored by the lane that ends with it. The last
//            segment's end state is the next chunk's carry-in (shared, 2 slots).
// Two barriers per chunk; ring slots: 2 of the staged rows. Inputs read once, y written once, no
// scratch. Tokens past L have Δ = 0 and zero B: decay 1, input 0; their y is not stored.
// Needs: d_state 16, subgroup shuffles in compute, subgroups of consecutive invocations (a
// multiple of G lanes); R a multiple of G (R / G tokens per lane after the sum), R <= 16,
// R <= G·CB (at most 4 B / C staging pieces per invocation), CB a multiple of 4. Variants seg
// (VEC, NS 4), seg2 (VEC, NS 2): channels, row strides and element offsets of u, delta, B, C, z, y multiples of 4;
// seg_scalar, seg2_scalar: any.
//   Δ = softplus(delta + dt_bias); h = exp(Δ·A)·h + Δ·B·u; y = C·h + D·u; y *= SiLU(z).
// variant selective_scan.seg -DVEC=1 -DNS=4
// variant selective_scan.seg_scalar -DVEC=0 -DNS=4
// variant selective_scan.seg2 -DVEC=1 -DNS=2
// variant selective_scan.seg2_scalar -DVEC=0 -DNS=2
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#include "common.glsl"

layout(constant_id = 0) const uint WG = 256;  // G · CB · S
layout(constant_id = 1) const uint CB = 8;    // channels per work group
layout(constant_id = 2) const uint S = 8;     // time segments per chunk
layout(constant_id = 3) const uint R = 8;     // tokens per segment
// FOLDU 1: the fold over the earlier segments unrolled over all S − 1 (predicated: its shared
// loads can be issued at once); 0: a loop of s steps.
layout(constant_id = 4) const uint FOLDU = 1;
// PIPE 1: one barrier per chunk: the interval after chunk k's barrier runs phase 2 of chunk k − 1,
// then phase 1 of chunk k (the rerun's registers free before phase 1 refills them; 3 slots of
// staged rows, 2 of (P, H)); 0: phase 1 and phase 2 of chunk k between two barriers.
layout(constant_id = 5) const uint PIPE = 1;
layout(local_size_x_id = 0) in;

#include "selective_scan_warp_io.glsl"

#if NS == 4
#define SV vec4
#else
#define SV vec2
#endif
const uint N = 16;
const uint G = N / NS;             // lanes (state groups) per channel
const uint T = S * R;              // tokens per chunk
const uint Q = R / G;              // tokens per lane after the reduce-scatter
const uint V = CB / 4;             // vec4 pieces in a row of CB channels
const uint PADC = 4;               // pad (pairs) after each segment's rows of channel pairs
const uint DDS = T * CB + S * PADC;  // one slot of pair rows
const uint BCS = (T + S) * G;      // one slot of B or C rows (SV)
const uint NBP = (4 * T + WG - 1) / WG;  // B, C staging pieces (vec4) per invocation
const uint TV = T * V;             // staging pieces of one channel array
const bool SPLIT = WG >= 2 * TV;   // z staged by invocations TV .. 2·TV − 1

const uint NSL = PIPE != 0u ? 3 : 2;  // slots of staged rows
const uint NPH = PIPE != 0u ? 2 : 1;  // slots of (P, H)

shared vec2 s_dd[NSL * DDS];  // [slot][token][channel]: (Δ, Δ·u)
shared vec2 s_g[NSL * DDS];   // (D·u, SiLU(z))
shared SV s_B[NSL * BCS];     // [slot][token + token / R][state / NS]
shared SV s_C[NSL * BCS];
shared SV s_P[NPH * WG];      // [slot][invocation]: its segment's decay and end state from zero
shared SV s_H[NPH * WG];
shared SV s_carry[2 * CB * G];  // [slot][channel][state / NS]: the chunk's carry-in

// One float of y at element e.
void store_y1(uint e, float v) {
#if VEC
  y4[e / 4][e % 4] = v;
#else
  y4[e] = v;
#endif
}

uint c0, nch;
// This invocation's place (segment s, channel slot c, state group g; cv: a real channel), its
// A·log2 e, and the end state of the last chunk's last segment.
uint tid, s, c, g;
bool cv;
SV A2, h;
SV a[R], x[R];  // phase 1's decays and inputs, for the rerun
// This invocation's staging piece of the channel rows (row lt, channels c0 + 4·lq ..; ln of
// them valid), with the dt_bias and D of those channels; ldu: it stages delta and u, lz: z.
uint lt, lq, ln;
bool lrow, ldu, lz;
vec4 bias4, d4;

uint dd_at(uint slot, uint t, uint c) { return slot * DDS + t * CB + c + (t / R) * PADC; }
uint bc_at(uint slot, uint t) { return slot * BCS + (t + t / R) * G; }
bool row_ok(uint k, uint t) { return k < nch && k * T + t < p.L; }

vec4 ld_rows(uint k, uint which) {
  if (ln == 0u || !row_ok(k, lt) || (which == 2u ? !lz : !ldu)) return vec4(0.0);
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

// Chunk k into slot k % NSL, Δ and the gate prepared on the way.
void stage(uint k, vec4 d, vec4 uu, vec4 zz, bool has_z) {
  const uint slot = k % NSL;
  if (lrow && ln > 0u) {
    const bool tok = row_ok(k, lt);
    [[unroll]] for (uint j = 0; j < 4; ++j) {
      const uint o = dd_at(slot, lt, 4 * lq + j);
      if (ldu) {
        const float dt = tok && j < ln ? softplus(d[j] + bias4[j]) : 0.0;
        s_dd[o] = vec2(dt, dt * uu[j]);
        s_g[o].x = d4[j] * uu[j];
      }
      if (lz) s_g[o].y = has_z ? silu(zz[j]) : 1.0;
    }
  }
  [[unroll]] for (uint i = 0; i < NBP; ++i) {
    const uint e = gl_LocalInvocationIndex + i * WG, bt = e / 4;
    if (e < T * 4) {
#if NS == 4
      const uint o = bc_at(slot, bt) + e % 4;
      s_B[o] = rb[i];
      s_C[o] = rc[i];
#else
      const uint o = bc_at(slot, bt) + 2 * (e % 4);
      s_B[o] = rb[i].xy;
      s_B[o + 1] = rb[i].zw;
      s_C[o] = rc[i].xy;
      s_C[o + 1] = rc[i].zw;
#endif
    }
  }
}

// Phase 1 of chunk k: the segment from a zero start; (P, H) into its slot.
void phase1(uint k) {
  const uint slot = k % NSL;
  SV H = SV(0.0);
  float dsum = 0.0;
  [[unroll]] for (uint r = 0; r < R; ++r) {
    const uint t = s * R + r;
    const vec2 dd = s_dd[dd_at(slot, t, c)];
    dsum += dd.x;
    a[r] = exp2(dd.x * A2);
    x[r] = s_B[bc_at(slot, t) + g] * dd.y;
    H = fma(a[r], H, x[r]);
  }
  s_P[(k % NPH) * WG + tid] = exp2(dsum * A2);
  s_H[(k % NPH) * WG + tid] = H;
}

// Phase 2 of chunk k: the true start, the rerun, y; the last segment's end state is chunk
// k + 1's carry-in.
void phase2(uint k) {
  const uint slot = k % NSL, ph = (k % NPH) * WG;
  SV hs = s_carry[((k & 1u) * CB + c) * G + g];
  if (FOLDU != 0u) {
    [[unroll]] for (uint j = 0; j + 1 < S; ++j) {
      const uint o = ph + (j * CB + c) * G + g;
      const SV pj = s_P[o], hj = s_H[o];
      if (j < s) hs = fma(pj, hs, hj);
    }
  } else {
    for (uint j = 0; j < s; ++j) {
      const uint o = ph + (j * CB + c) * G + g;
      hs = fma(s_P[o], hs, s_H[o]);
    }
  }
  float yv[R];
  [[unroll]] for (uint r = 0; r < R; ++r) {
    hs = fma(a[r], hs, x[r]);
    yv[r] = dot(hs, s_C[bc_at(slot, s * R + r) + g]);
  }
  if (s == S - 1) {
    s_carry[(((k + 1) & 1u) * CB + c) * G + g] = hs;
    h = hs;
  }
  // Reduce-scatter over the G group lanes: lane g ends with tokens g·Q + i of its segment.
  [[unroll]] for (uint off = G / 2; off >= 1; off >>= 1) {
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

void main() {
  tid = gl_LocalInvocationIndex;
  g = tid % G;
  c = (tid / G) % CB;
  s = tid / (G * CB);
  c0 = linear_group_id() * CB;
  cv = c0 + c < p.channels;
  const uint cc = cv ? c0 + c : 0u;
  nch = (p.L + T - 1) / T;
  const uint pc = SPLIT && tid >= TV ? tid - TV : tid;  // the piece
  lt = pc / V;
  lq = pc % V;
  lrow = pc < TV;
  ldu = tid < TV;
  lz = SPLIT ? tid >= TV : true;
  ln = lrow && c0 + 4 * lq < p.channels ? min(4u, p.channels - c0 - 4 * lq) : 0u;
  [[unroll]] for (uint j = 0; j < 4; ++j) {
    const uint ch = min(c0 + 4 * lq + j, p.channels - 1);
    bias4[j] = load_dt_bias(p.dt_bias_dtype, p.off[7] + ch);
    d4[j] = load_d(p.D_dtype, p.off[5] + ch);
  }

  const float kLog2e = 1.4426950408889634;
  [[unroll]] for (uint j = 0; j < NS; ++j) {
    A2[j] = -exp(load_a_log(p.A_log_dtype, p.off[2] + cc * N + NS * g + j)) * kLog2e;
    h[j] = cv ? state[p.off[8] + cc * N + NS * g + j] : 0.0;
  }
  const bool has_z = p.has_z != 0u;
  if (s == 0) s_carry[c * G + g] = h;

  // Prologue: chunk 0 in shared memory, chunk 1 in registers.
  ld_bc(0);
  stage(0, ld_rows(0, 0), ld_rows(0, 1), has_z ? ld_rows(0, 2) : vec4(0.0), has_z);
  vec4 rd = ld_rows(1, 0), ru = ld_rows(1, 1), rz = has_z ? ld_rows(1, 2) : vec4(0.0);
  ld_bc(1);

  // Iteration k stages chunk k + 1 (its loads issued one iteration earlier) and issues chunk
  // k + 2's loads. After each barrier: chunk k's rows and carry-in are visible, and nobody reads
  // the slots this iteration writes any more.
  for (uint k = 0; k < nch + PIPE; ++k) {
    barrier();
    if (k + 1 < nch) stage(k + 1, rd, ru, rz, has_z);
    rd = ld_rows(k + 2, 0);
    ru = ld_rows(k + 2, 1);
    if (has_z) rz = ld_rows(k + 2, 2);
    ld_bc(k + 2);
    if (PIPE != 0u) {
      if (k >= 1) phase2(k - 1);
      if (k < nch) phase1(k);
    } else {
      phase1(k);
      barrier();
      phase2(k);
    }
  }
  if (cv && s == S - 1)
    [[unroll]] for (uint j = 0; j < NS; ++j) state[p.off[8] + cc * N + NS * g + j] = h[j];
}
