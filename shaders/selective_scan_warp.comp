#version 450
// The prompt scan (d_state 16), time-parallel inside a subgroup: the Vulkan port of
// cuda/selective_scan_v6.cu (DM_VULKAN_SCAN=warp6; selective_scan_warp2.comp is its successor).
//
// A work group is CB subgroups of SG lanes (SG = the device's subgroup size); subgroup w owns
// channel c0 + w and walks the sequence in chunks of T = NSL·R tokens, NSL = SG / 4 time slices
// of R tokens each: lane = 4·slice + group, a lane holds 4 states (group g: states 4g .. 4g+3)
// of its slice's R tokens, so a channel's 16 states × T tokens cover all SG lanes (NVIDIA: 8
// slices, 64-token chunks at R = 8; lavapipe, SG 8: 2 slices; AMD wave64: 16).
//
// Per chunk and lane:
//   local:  a = exp2(Δ·A·log2e) (one exp per element, kept in registers), b = Δ·B·u (kept),
//           the slice run from a zero state: end state H; the slice's decay product P as one
//           exp2 of the summed Δ;
//   scan:   slice 0 folds the carried state into its H, then an inclusive scan of the affine
//           maps (P, H) over the NSL slices (shuffles 4, 8, 16 .. lanes back): H becomes each
//           slice's true end state; a slice's start is the previous slice's end, the carry into
//           the next chunk the last slice's end;
//   rerun:  h = a·h + b from the true start (no second exp), y = C·h (+ D·u on group 0)
//           reduce-scattered over the 4 group lanes (each lane ends with R/4 tokens).
// Vulkan has no asynchronous copy: the work group loads delta, u (chunk k+3), B, C (k+2) and z
// (k+1) into registers in iteration k, one vec4 per array and invocation at most, and stores
// them into shared memory in iteration k+1, so a whole iteration hides the loads' latency. One
// barrier per chunk; in iteration k the work group gates (·SiLU(z)) and stores chunk k−1 as
// whole rows, computes Δ = softplus(delta + bias) of chunk k+1 once per (token, channel) and
// transposes Δ and u for the lanes' vec4 reads, and scans chunk k. Ring slots: 2 of each
// (a slot's readers are done before the barrier that precedes its next write).
// Inputs are read once, y written once (the floor of performance.md). Tokens past L have
// Δ = 0 and zero B: decay 1, input 0, the state is left alone.
// Needs: d_state 16, subgroup shuffles in compute, work groups of CB full subgroups of the
// reported size; R a multiple of 4, R <= 16, R <= CB (at most one piece per invocation).
// Variant warp6 (VEC): channels, row strides and element offsets of u, delta, B, C, z, y
// multiples of 4; warp6_scalar: any.
//   Δ = softplus(delta + dt_bias); h = exp(Δ·A)·h + Δ·B·u; y = C·h + D·u; y *= SiLU(z).
// variant selective_scan.warp6 -DVEC=1
// variant selective_scan.warp6_scalar -DVEC=0
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#include "common.glsl"

layout(constant_id = 0) const uint WG = 256;  // CB · SG
layout(constant_id = 1) const uint SG = 32;   // subgroup size
layout(constant_id = 2) const uint CB = 8;    // channels (subgroups) per work group
layout(constant_id = 3) const uint R = 8;     // tokens per slice
layout(local_size_x_id = 0) in;

#include "selective_scan_warp_io.glsl"

const uint N = 16;
const uint NSL = SG / 4;     // time slices per subgroup
const uint T = NSL * R;      // tokens per chunk
const uint V = CB / 4;       // vec4 pieces in a row of CB channels
const uint TP4 = T / 4 + 1;  // transposed rows, in vec4s: T + 4 floats (banks shifted by 4)
const uint BR = T + NSL;     // B, C rows: a pad row after each slice's R rows

shared vec4 s_dl[2 * T * V];       // delta rows [slot][t][channel / 4]
shared vec4 s_u[2 * T * V];        // u rows
shared vec4 s_z[2 * T * V];        // z rows
shared vec4 s_B[2 * BR * 4];       // [slot][row][state / 4], rows padded per slice
shared vec4 s_C[2 * BR * 4];
shared vec4 s_dt[2 * CB * TP4];    // Δ transposed [slot][channel][t]
shared vec4 s_ut[2 * CB * TP4];    // u transposed
shared vec4 s_y[2 * CB * TP4];     // C·h + D·u transposed, gated one chunk later
shared float s_bias[CB];

// Per invocation: its staging piece of the channel arrays (row lt, channels c0 + 4·lq ..) and
// of B / C (row bt, states 4·bq ..).
uint tid, c0, nch, lt, lq, ln, bt, bq;  // ln: channels in the piece (4 but at the end)
bool lrow, lch, brow;

bool row_ok(uint k, uint t) { return k < nch && k * T + t < p.L; }

vec4 ld_delta(uint k) {
  return lch && row_ok(k, lt) ? LD4(delta4, p.off[1] + (k * T + lt) * p.delta_stride + c0 + 4 * lq, ln) : vec4(0.0);
}
vec4 ld_u(uint k) {
  return lch && row_ok(k, lt) ? LD4(u4, p.off[0] + (k * T + lt) * p.u_stride + c0 + 4 * lq, ln) : vec4(0.0);
}
vec4 ld_z(uint k) {
  return lch && row_ok(k, lt) ? LD4(z4, p.off[6] + (k * T + lt) * p.z_stride + c0 + 4 * lq, ln) : vec4(0.0);
}
vec4 ld_B(uint k) {
  return brow && row_ok(k, bt) ? LD4(B4, p.off[3] + (k * T + bt) * p.B_stride + 4 * bq, 4u) : vec4(0.0);
}
vec4 ld_C(uint k) {
  return brow && row_ok(k, bt) ? LD4(C4, p.off[4] + (k * T + bt) * p.C_stride + 4 * bq, 4u) : vec4(0.0);
}

void st_du(uint k, vec4 d, vec4 uu) {
  if (!lrow) return;
  const uint i = ((k & 1u) * T + lt) * V + lq;
  s_dl[i] = d;
  s_u[i] = uu;
}
void st_bc(uint k, vec4 b, vec4 c) {
  if (!brow) return;
  const uint i = (k & 1u) * BR * 4 + (bt + bt / R) * 4 + bq;
  s_B[i] = b;
  s_C[i] = c;
}
void st_z(uint k, vec4 zz) {
  if (lrow) s_z[((k & 1u) * T + lt) * V + lq] = zz;
}

// Δ and u of chunk k, once per (token, channel), transposed. Invocation tid takes channel
// tid % CB and tokens tid / CB + SG·it (WG / CB = SG, T / SG = R / 4).
void prep(uint k) {
  const uint slot = k & 1u, pq = tid % CB, pt = tid / CB;
  const float bias = s_bias[pq];
  [[unroll]] for (uint it = 0; it < R / 4; ++it) {
    const uint t = pt + SG * it;
    const uint i = (slot * T + t) * V + pq / 4;
    const float d = k * T + t < p.L ? softplus(s_dl[i][pq % 4] + bias) : 0.0;
    const uint o = (slot * CB + pq) * TP4 + t / 4;
    s_dt[o][t % 4] = d;
    s_ut[o][t % 4] = s_u[i][pq % 4];
  }
}

// Gate chunk k (y ·= SiLU(z)) and store this invocation's piece of a row.
void gate(uint k) {
  if (!lch || !row_ok(k, lt)) return;
  const uint slot = k & 1u;
  vec4 o;
  [[unroll]] for (uint j = 0; j < 4; ++j) o[j] = s_y[(slot * CB + 4 * lq + j) * TP4 + lt / 4][lt % 4];
  if (p.has_z != 0u) o *= silu4(s_z[(slot * T + lt) * V + lq]);
  store_y4(p.off[9] + (k * T + lt) * p.y_stride + c0 + 4 * lq, o, ln);
}

// The scan of chunk k by subgroup w (see the file comment); h: the carried state of this
// lane's 4 states, the same in every slice.
void scan_chunk(uint k, uint w, uint lane, vec4 A2, float dskip, inout vec4 h) {
  const uint s = lane >> 2, g = lane & 3u;
  const uint slot = k & 1u;
  const uint trow = (slot * CB + w) * TP4 + s * (R / 4);
  float dtv[R], uv[R];
  [[unroll]] for (uint r = 0; r < R / 4; ++r) {
    const vec4 d4 = s_dt[trow + r], v4 = s_ut[trow + r];
    [[unroll]] for (uint j = 0; j < 4; ++j) {
      dtv[4 * r + j] = d4[j];
      uv[4 * r + j] = v4[j];
    }
  }
  const uint brow = slot * BR * 4 + s * (R + 1) * 4 + g;
  vec4 a[R], x[R];
  vec4 H = vec4(0.0);
  float dsum = 0.0;
  [[unroll]] for (uint r = 0; r < R; ++r) {
    dsum += dtv[r];
    a[r] = exp2(dtv[r] * A2);
    x[r] = s_B[brow + 4 * r] * (dtv[r] * uv[r]);
    H = fma(a[r], H, x[r]);
  }
  // The slice's decay product as one exp2 of the summed Δ.
  vec4 P = exp2(dsum * A2);
  if (s == 0) H = fma(P, h, H);
  [[unroll]] for (uint d = 1; d < NSL; d *= 2) {
    const uint src = lane >= 4 * d ? lane - 4 * d : lane;
    const vec4 Hq = subgroupShuffle(H, src), Pq = subgroupShuffle(P, src);
    if (s >= d) {
      H = fma(P, Hq, H);
      P *= Pq;
    }
  }
  // H: this slice's true end state. Start = the previous slice's end; carry = the last one's.
  const vec4 prev = subgroupShuffle(H, lane >= 4 ? lane - 4 : lane);
  vec4 hs = s == 0 ? h : prev;
  h = subgroupShuffle(H, 4 * (NSL - 1) + g);
  float yv[R];
  const float dk = g == 0 ? dskip : 0.0;  // D·u counted once over the 4 group lanes
  [[unroll]] for (uint r = 0; r < R; ++r) {
    hs = fma(a[r], hs, x[r]);
    yv[r] = fma(dk, uv[r], dot(hs, s_C[brow + 4 * r]));
  }
  // Reduce-scatter over the 4 group lanes: lane g ends with tokens g·R/4 .. of its slice.
  [[unroll]] for (uint off = 2; off >= 1; off >>= 1) {
    const bool hi = (g & off) != 0u;
    const uint n = off * (R / 4);
    [[unroll]] for (uint i = 0; i < n; ++i) {
      const float lo_v = yv[i], hi_v = yv[i + n];
      const float keep = hi ? hi_v : lo_v, send = hi ? lo_v : hi_v;
      yv[i] = keep + subgroupShuffleXor(send, off);
    }
  }
  const uint ybase = (slot * CB + w) * TP4;
  [[unroll]] for (uint i = 0; i < R / 4; ++i) {
    const uint t = s * R + g * (R / 4) + i;
    s_y[ybase + t / 4][t % 4] = yv[i];
  }
}

void main() {
  tid = gl_LocalInvocationIndex;
  const uint w = gl_SubgroupID, lane = gl_SubgroupInvocationID;
  c0 = linear_group_id() * CB;
  const uint c = c0 + w;
  const bool cv = c < p.channels;
  const uint cc = cv ? c : 0u;
  nch = (p.L + T - 1) / T;
  lt = tid / V;
  lq = tid % V;
  lrow = tid < T * V;
  lch = lrow && c0 + 4 * lq < p.channels;
  ln = lch ? min(4u, p.channels - c0 - 4 * lq) : 0u;
  bt = tid / 4;
  bq = tid % 4;
  brow = tid < T * 4;

  const uint g = lane & 3u, s = lane >> 2;
  const float kLog2e = 1.4426950408889634;
  vec4 A2, h;
  [[unroll]] for (uint j = 0; j < 4; ++j) {
    A2[j] = -exp(load_a_log(p.A_log_dtype, p.off[2] + cc * N + 4 * g + j)) * kLog2e;
    h[j] = cv ? state[p.off[8] + c * N + 4 * g + j] : 0.0;
  }
  const float dskip = load_d(p.D_dtype, p.off[5] + cc);
  if (tid < CB) s_bias[tid] = load_dt_bias(p.dt_bias_dtype, p.off[7] + (c0 + tid < p.channels ? c0 + tid : 0u));
  const bool has_z = p.has_z != 0u;

  // Prologue: chunks 0 and 1 of delta, u and chunk 0 of B, C in shared memory; the registers
  // hold delta, u of chunk 2, B, C of chunk 1 and z of chunk 0.
  st_du(0, ld_delta(0), ld_u(0));
  st_bc(0, ld_B(0), ld_C(0));
  vec4 rd = ld_delta(1), ru = ld_u(1);
  st_du(1, rd, ru);
  rd = ld_delta(2);
  ru = ld_u(2);
  vec4 rB = ld_B(1), rC = ld_C(1);
  vec4 rz = has_z ? ld_z(0) : vec4(0.0);
  barrier();
  prep(0);
  for (uint k = 0; k < nch; ++k) {
    // Everyone's stores of iteration k−1 and prep(k) are visible; all reads of the slots
    // written below (delta, u of chunk k; B, C of k−1; z of k−2) are done.
    barrier();
    if (k + 2 < nch) st_du(k + 2, rd, ru);
    if (k + 1 < nch) st_bc(k + 1, rB, rC);
    if (has_z) st_z(k, rz);
    rd = ld_delta(k + 3);
    ru = ld_u(k + 3);
    rB = ld_B(k + 2);
    rC = ld_C(k + 2);
    if (has_z) rz = ld_z(k + 1);
    if (k >= 1) gate(k - 1);
    if (k + 1 < nch) prep(k + 1);
    scan_chunk(k, w, lane, A2, dskip, h);
  }
  barrier();
  gate(nch - 1);
  if (cv && s == 0)
    [[unroll]] for (uint j = 0; j < 4; ++j) state[p.off[8] + c * N + 4 * g + j] = h[j];
}
