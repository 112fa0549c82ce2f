#version 450
// One Mamba block of a decode step (batch 1) in three dependent dispatches instead of five
// (VulkanBackend::mamba_block_step, src/backend/vulkan/vulkan_block_step.cpp): a Vulkan command
// buffer pays ~4 µs per dependent dispatch (its barrier), more than most of a 130m layer's work.
// No work group waits for another (no spinning, no tickets): what a dispatch boundary would hand
// over, each work group recomputes (the norm) or sums from slices written a dispatch earlier
// (x_proj).
//  mamba_step.front  A: residual (+ x) and its rms norm, recomputed by EVERY work group into
//                    shared memory (D ≤ 4·DV floats), then the in_proj GEMV rows of the work
//                    group on it (gemm.gemv's loop: its first weight batch is loaded before the
//                    norm, so the norm hides under the weights' latency) and the conv step of
//                    the rows < E (gemm.gemv_conv's). The norm's sum is rms_norm.comp's, in its
//                    order: normed (written by work group 0) is rms_norm's, bit for bit. Nobody
//                    writes the residual here: other work groups still read it.
//  mamba_step.front_xpart  A that also starts x_proj: work group g, owning the xc channels
//                    [g·ROWS, g·ROWS + ROWS), writes its slice of the product, part[g][r] =
//                    Σ_k x_proj[r, g·ROWS + k] · xc[g·ROWS + k] (R + 2N partial sums, k in order).
//  mamba_step.scan_xpart  B: every work group sums the G partial vectors (in a fixed order:
//                    replays stay bit-identical) into x_dbl = dt_low | B | C in shared memory,
//                    then dt_proj, softplus, the scan step, D skip and SiLU(z) gate of its
//                    256 / LANES channels (selective_scan_step.dt_proj_sg's code, in its order).
//                    Work group 0 also writes x_dbl and residual += x (A has read the residual).
//  mamba_step.scan   B with x_dbl read from memory, written by a separate x_proj GEMV.
// C, out_proj, is gemm.gemv. Weights F32 / F16 / BF16 as 32-bit words (common.glsl).
// (Measured and removed: B computing all of x_proj in every work group, 245 KB of weights from
// L2 per work group at 130m, was ~8 µs per layer slower than the separate GEMV on an H200.)
// Every load that does not wait for an earlier phase goes out at the start, 16-bit parameters
// as their 32-bit words (DEFINE_LOAD_WORD), decoded where used: DEFINE_LOAD_ANY's per-dtype
// branch kept each such load waiting for the one before it. A: the norm weights with the
// in_proj weights; B: dt_proj's weights with the channel's own, and the x_proj partial sums 64
// loads at a time. H200, session 13 (bench/results/h200_session13_lead_2026-11-28.md, three
// rounds alternating with the build before): 130m decode 668-679 → 598-607 µs a token, A 9.8 →
// 8.9 µs, B 10.1 → 8.6 (timestamps; the word loads are what paid: the preloads and batched
// partials alone measured no change).
// variant mamba_step.front -DFRONT=1 -DXPART=0
// variant mamba_step.front_xpart -DFRONT=1 -DXPART=1
// variant mamba_step.scan_xpart -DFRONT=0 -DXPART=1
// variant mamba_step.scan -DFRONT=0 -DXPART=0
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#include "common.glsl"

const uint WG = 256;
layout(local_size_x = 256, local_size_y = 1, local_size_z = 1) in;

#if FRONT
layout(constant_id = 0) const uint ROWS = 8;   // in_proj rows per work group (a power of two)
layout(constant_id = 1) const uint PIPE = 8;   // 16-byte pieces per invocation per batch (1 … 16)
layout(constant_id = 2) const uint SG = 32;    // the device's subgroup size
layout(constant_id = 3) const uint DV = 192;   // vec4s of the normed row in shared memory
// 1: the conv step's inputs are loaded after the in_proj reduction instead of with the first
// weight batch (gemv_sg.comp's CONV_LATE; vulkan_block_step.cpp block_conv_late, session 11).
layout(constant_id = 4) const uint CONV_LATE = 0;

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer Res { float res[]; };
layout(std430, binding = 2) readonly buffer NormW { uint norm_w[]; };
layout(std430, binding = 3) writeonly buffer Normed { float normed[]; };
layout(std430, binding = 4) readonly buffer W { uvec4 w4[]; };
layout(std430, binding = 5) readonly buffer Bias { uint bias[]; };
layout(std430, binding = 6) writeonly buffer XZ { float xz[]; };
layout(std430, binding = 7) readonly buffer ConvW { uint conv_w[]; };
layout(std430, binding = 8) readonly buffer ConvB { uint conv_b[]; };
layout(std430, binding = 9) buffer ConvState { float conv_state[]; };
layout(std430, binding = 10) writeonly buffer XC { float xc[]; };
#if XPART
layout(std430, binding = 11) readonly buffer XProj { uint x_proj[]; };
layout(std430, binding = 12) writeonly buffer Part { float part[]; };
#endif
const uint MAX_D_CONV = 8;  // the host sends larger d_conv to the composition

layout(push_constant) uniform Push {
  uint D, N;  // d_model (in_proj's K), in_proj's rows (2E)
  uint w_stride, w_dtype, bias_dtype, has_bias;
  uint has_x, norm_w_dtype;
  float eps;
  uint channels, d_conv, conv_w_dtype, conv_b_dtype, conv_has_bias;
  // element offsets: x, residual, norm_w, normed, w, bias, xz, conv_w, conv_b, conv_state, xc
  uint off[11];
#if XPART
  uint nr, x_proj_stride, x_proj_dtype;  // nr = R + 2N rows of x_proj
  uint off_x_proj, off_part;
#endif
} p;

DEFINE_LOAD_WORD(load_norm_w_word, norm_w)
#if XPART
DEFINE_LOAD_WORD(load_x_proj_word, x_proj)
#endif
DEFINE_LOAD_WORD(load_bias_word, bias)
DEFINE_LOAD_WORD(load_conv_w_word, conv_w)
DEFINE_LOAD_WORD(load_conv_b_word, conv_b)

#define DECODE_CONV_STEP 1
#include "decode_step.glsl"

// decode_step.glsl's conv step of channel c (gemm.gemv_conv's), its output into xc.
ConvIn conv_load(uint c) {
  return conv_step_load(p.off[9] + c * p.d_conv, p.off[7] + c * p.d_conv, p.off[8] + c, p.d_conv,
                   p.conv_w_dtype, p.conv_b_dtype, p.conv_has_bias != 0u);
}
float conv_store(uint c, float xv, ConvIn r) {
  const float v = conv_step_store(p.off[9] + c * p.d_conv, p.d_conv, xv, r);
  xc[p.off[10] + c] = v;
  return v;
}

const uint T = WG / ROWS;         // invocations per row of W
const uint TS = T < SG ? T : SG;  // of them in one subgroup
const uint NSUB = T / TS;         // subgroups per row
shared vec4 vs4[DV];              // the normed row
const uint NW = (4u * DV + WG - 1u) / WG;  // norm weights per invocation
shared float partial[WG];         // rms_norm.comp's reduction
#include "row_sum.glsl"
shared float sub[64];             // per-subgroup row sums
#if XPART
shared float xcs[ROWS];           // the work group's xc values
#endif

// One batch of PIPE pieces (j0 + u·T) against the normed row; pieces past the row are zero
// weights times its first piece.
float batch_dot(uvec4 q[PIPE], uint j0, uint pieces, bool wide, uint per) {
  float acc = 0.0;
  [[unroll]] for (uint u = 0; u < PIPE; ++u) {
    const uint j = j0 + u * T;
    const uint xb = (j < pieces ? j : 0u) * (per / 4u);
    vec4 lo, hi;
    widen(p.w_dtype, q[u], lo, hi);
    acc += dot(lo, vs4[xb]);
    if (wide) acc += dot(hi, vs4[xb + 1u]);
  }
  return acc;
}

void main() {
  const uint tid = gl_SubgroupID * SG + gl_SubgroupInvocationID;  // as gemm.gemv lays out rows
  const uint t = tid % T;
  const uint n = linear_group_id() * ROWS + tid / T;
  const bool wide = p.w_dtype != DT_F32;
  const uint per = wide ? 8u : 4u;
  const uint pieces = p.D / per;  // the host guarantees D % per == 0
  const uint wb = (p.off[4] + n * p.w_stride) / per;
  // The first batch of weights, the bias and the conv inputs (CONV_LATE: they come after the
  // reduction): in flight during the norm.
  uvec4 q[PIPE];
  [[unroll]] for (uint u = 0; u < PIPE; ++u) {
    const uint j = t + u * T;
    q[u] = n < p.N && j < pieces ? w4[wb + j] : uvec4(0);
  }
  const bool has_bv = t == 0u && n < p.N && p.has_bias != 0u;
  const uint bv_word = has_bv ? load_bias_word(p.bias_dtype, p.off[5] + n) : 0u;
  const bool conv = t == 0u && n < p.N && n < p.channels;
  ConvIn ci;
  if (CONV_LATE == 0u && conv) ci = conv_load(n);
#if XPART
  // x_proj[r, n0 .. n0 + ROWS): row r = tid's weights, loaded now too.
  const uint n0 = linear_group_id() * ROWS;
  const bool xrow = tid < p.nr && n0 < p.channels;
  const uint xb = p.off_x_proj + tid * p.x_proj_stride + n0;
  uint xw[ROWS];  // words: decoded where used
  [[unroll]] for (uint k = 0; k < ROWS; ++k)
    xw[k] = xrow && n0 + k < p.channels ? load_x_proj_word(p.x_proj_dtype, xb + k) : 0u;
#endif

  // The norm weights of this invocation's elements (D ≤ 4·DV: at most NW of them), also in
  // flight now rather than a round trip after the sum of squares.
  const uint li = gl_LocalInvocationID.x;
  uint nwv[NW];
  [[unroll]] for (uint k = 0; k < NW; ++k) {
    const uint i = li + k * WG;
    nwv[k] = i < p.D ? load_norm_w_word(p.norm_w_dtype, p.off[2] + i) : 0u;
  }

  // rms_norm.comp (rms_norm.residual with x), same terms in the same order.
  float ss = 0.0;
  for (uint i = li; i < p.D; i += WG) {
    float v = p.has_x != 0u ? x[p.off[0] + i] + res[p.off[1] + i] : res[p.off[1] + i];
    vs4[i >> 2][i & 3u] = v;
    ss = fma(v, v, ss);
  }
  const float inv = inversesqrt(row_sum(li, ss) / float(p.D) + p.eps);
  const bool first = linear_group_id() == 0u;
  [[unroll]] for (uint k = 0; k < NW; ++k) {
    const uint i = li + k * WG;
    if (i < p.D) {
      const float v = vs4[i >> 2][i & 3u] * inv * word_elem(p.norm_w_dtype, p.off[2] + i, nwv[k]);
      vs4[i >> 2][i & 3u] = v;
      if (first) normed[p.off[3] + i] = v;
    }
  }
  barrier();

  // gemm.gemv's row: the first batch, then any further ones (wide rows of few invocations).
  float acc = batch_dot(q, t, pieces, wide, per);
  for (uint j0 = t + PIPE * T; j0 < pieces; j0 += PIPE * T) {
    [[unroll]] for (uint u = 0; u < PIPE; ++u) {
      const uint j = j0 + u * T;
      q[u] = n < p.N && j < pieces ? w4[wb + j] : uvec4(0);
    }
    acc += batch_dot(q, j0, pieces, wide, per);
  }
  [[unroll]] for (uint o = TS / 2u; o > 0u; o >>= 1) acc += subgroupShuffleXor(acc, o);
  if (NSUB > 1u) {
    if (gl_SubgroupInvocationID == 0u) sub[gl_SubgroupID] = acc;
    barrier();
    float s = 0.0;
    const uint lead = gl_SubgroupID - (t / TS);  // the row's first subgroup
    for (uint i = 0; i < NSUB; ++i) s += sub[lead + i];
    acc = s;
  }
  if (t == 0u && n < p.N) {
    if (CONV_LATE != 0u && conv) ci = conv_load(n);  // before the store: all in flight at once
    const float bv = has_bv ? word_elem(p.bias_dtype, p.off[5] + n, bv_word) : 0.0;
    xz[p.off[6] + n] = acc + bv;
    if (conv) {
      const float v = conv_store(n, acc + bv, ci);
#if XPART
      xcs[tid / T] = v;
#endif
    }
  }
#if XPART
  barrier();
  if (xrow) {
    float s = 0.0;
    [[unroll]] for (uint k = 0; k < ROWS; ++k)
      if (n0 + k < p.channels) s = fma(word_elem(p.x_proj_dtype, xb + k, xw[k]), xcs[k], s);
    part[p.off_part + linear_group_id() * p.nr + tid] = s;
  }
#endif
}

#else  // the scan step, B
layout(constant_id = 0) const uint D_STATE = 16;
layout(constant_id = 1) const uint LANES = 8;   // invocations per channel (≤ subgroup size)
layout(constant_id = 2) const uint NRMAX = 80;  // shared floats for x_dbl (≥ R + 2N)

layout(std430, binding = 0) readonly buffer U { float u[]; };  // xc
layout(std430, binding = 1) writeonly buffer Delta { float delta[]; };
layout(std430, binding = 2) readonly buffer ALog { uint a_log[]; };
layout(std430, binding = 3) readonly buffer Dsk { uint Dv[]; };
layout(std430, binding = 4) readonly buffer Z { float z[]; };
layout(std430, binding = 5) readonly buffer DtBias { uint dt_bias[]; };
layout(std430, binding = 6) buffer State { float state[]; };
layout(std430, binding = 7) writeonly buffer Y { float y[]; };
#if XPART
layout(std430, binding = 8) writeonly buffer XDbl { float x_dbl[]; };
layout(std430, binding = 9) readonly buffer Part { float part[]; };
#else
layout(std430, binding = 8) readonly buffer XDbl { float x_dbl[]; };
#endif
layout(std430, binding = 10) readonly buffer DtProj { uint dt_proj[]; };
layout(std430, binding = 11) buffer Res { float res[]; };
layout(std430, binding = 12) readonly buffer X { float x[]; };

layout(push_constant) uniform Push {
  uint channels, dt_rank, d_model;
  uint groups;  // scan_xpart: partial x_dbl vectors (front_xpart's work groups with xc channels)
  uint dt_proj_stride, dt_proj_dtype;
  uint A_log_dtype, D_dtype, dt_bias_dtype;
  uint has_x;
  // element offsets: u, delta, A_log, D, z, dt_bias, ssm_state, y, x_dbl, part, dt_proj,
  // residual, x
  uint off[13];
} p;

DEFINE_LOAD_WORD(load_a_log_word, a_log)
DEFINE_LOAD_WORD(load_d_word, Dv)
DEFINE_LOAD_WORD(load_dt_bias_word, dt_bias)
DEFINE_LOAD_WORD(load_dt_proj_word, dt_proj)

const uint NPL = (D_STATE + LANES - 1) / LANES;  // states per invocation
const uint RB = 8;                               // dt_proj terms loaded per batch
shared float xd[NRMAX];                          // dt_low | B | C
#if XPART
shared float chunk[WG];                          // the partial sums' chunk totals
#endif

void main() {
  const uint tid = gl_SubgroupID * gl_SubgroupSize + gl_SubgroupInvocationID;
  const uint l = tid % LANES;
  const uint c = gl_WorkGroupID.x * (WG / LANES) + tid / LANES;
  const uint R = p.dt_rank, NR = R + 2u * D_STATE;
  // The channel's own loads first (as dt_proj_sg), in flight during x_proj.
  const bool live = c < p.channels;
  const uint sb = p.off[6] + c * D_STATE;
  // 16-bit parameters as their words, decoded where used (DEFINE_LOAD_WORD).
  uint a_w[NPL];
  float h0[NPL];
  [[unroll]] for (uint i = 0; i < NPL; ++i) {
    const uint n = l + i * LANES;
    const bool on = live && n < D_STATE;
    a_w[i] = on ? load_a_log_word(p.A_log_dtype, p.off[2] + c * D_STATE + n) : 0u;
    h0[i] = on ? state[sb + n] : 0.0;
  }
  const bool lead = live && l == 0u;
  const float uu = live ? u[p.off[0] + c] : 0.0;
  const uint bias_w = live ? load_dt_bias_word(p.dt_bias_dtype, p.off[5] + c) : 0u;
  const uint dskip_w = lead ? load_d_word(p.D_dtype, p.off[3] + c) : 0u;
  const float zz = lead ? z[p.off[4] + c] : 0.0;
  // dt_proj's first RB terms of this lane too (R ≤ RB · LANES: all of them): nothing in them
  // waits for x_dbl, so they need not cost a round trip after it.
  const uint wb = p.off[10] + c * p.dt_proj_stride;
  uint wa0[RB];
  [[unroll]] for (uint i = 0; i < RB; ++i) {
    const uint r = l + i * LANES;
    wa0[i] = live && r < R ? load_dt_proj_word(p.dt_proj_dtype, wb + r) : 0u;
  }

#if XPART
  // x_dbl[r] = Σ_g part[g][r]: chunk ch of the WG / NR chunks sums g = ch, ch + NCH, ... in that
  // order, then the chunks in order. The host guarantees NR ≤ WG. The loads go out PB at a
  // time (130m: all 64 of a chunk at once), so the sum waits for one L2 round trip, not eight.
  {
    const uint NCH = WG / NR, r = tid % NR, ch = tid / NR;
    const uint PB = 64u;
    float s = 0.0;
    if (ch < NCH) {
      for (uint g0 = ch; g0 < p.groups; g0 += PB * NCH) {
        float v[PB];
        [[unroll]] for (uint i = 0; i < PB; ++i) {
          const uint g = g0 + i * NCH;
          v[i] = g < p.groups ? part[p.off[9] + g * NR + r] : 0.0;
        }
        [[unroll]] for (uint i = 0; i < PB; ++i) s += v[i];
      }
    }
    chunk[tid] = s;
    barrier();
    if (tid < NR) {
      float x = 0.0;
      for (uint i = 0; i < NCH; ++i) x += chunk[i * NR + tid];
      xd[tid] = x;
    }
  }
#else
  for (uint i = tid; i < NR; i += WG) xd[i] = x_dbl[p.off[8] + i];
#endif
  barrier();
  // Work group 0's side outputs: x_dbl, and residual += x (rms_norm.residual's sum).
  if (gl_WorkGroupID.x == 0u) {
#if XPART
    for (uint i = tid; i < NR; i += WG) x_dbl[p.off[8] + i] = xd[i];
#endif
    if (p.has_x != 0u)
      for (uint i = tid; i < p.d_model; i += WG) res[p.off[11] + i] = x[p.off[12] + i] + res[p.off[11] + i];
  }

  // selective_scan_step.dt_proj_sg from here, with dt_low, B and C in shared memory.
  float draw = 0.0;
  for (uint r0 = l; r0 < R; r0 += RB * LANES) {
    float xa[RB], wa[RB];
    [[unroll]] for (uint i = 0; i < RB; ++i) {
      const uint r = r0 + i * LANES;
      const bool on = live && r < R;
      xa[i] = on ? xd[r] : 0.0;
      const uint w = r0 == l ? wa0[i] : on ? load_dt_proj_word(p.dt_proj_dtype, wb + r) : 0u;
      wa[i] = on ? word_elem(p.dt_proj_dtype, wb + r, w) : 0.0;
    }
    [[unroll]] for (uint i = 0; i < RB; ++i) draw = fma(xa[i], wa[i], draw);
  }
  [[unroll]] for (uint o = LANES / 2u; o > 0u; o >>= 1) draw += subgroupShuffleXor(draw, o);
  if (lead) delta[p.off[1] + c] = draw;
  const float bias = live ? word_elem(p.dt_bias_dtype, p.off[5] + c, bias_w) : 0.0;
  const float dt = softplus(draw + bias);
  const float du = dt * uu;
  float acc = 0.0;
  [[unroll]] for (uint i = 0; i < NPL; ++i) {
    const uint n = l + i * LANES;
    if (live && n < D_STATE) {
      const float A = -exp(word_elem(p.A_log_dtype, p.off[2] + c * D_STATE + n, a_w[i]));
      const float h = fma(exp(dt * A), h0[i], du * xd[R + n]);
      state[sb + n] = h;
      acc = fma(h, xd[R + D_STATE + n], acc);
    }
  }
  [[unroll]] for (uint o = LANES / 2u; o > 0u; o >>= 1) acc += subgroupShuffleXor(acc, o);
  if (lead) {
    const float dskip = word_elem(p.D_dtype, p.off[3] + c, dskip_w);
    float r = fma(dskip, uu, acc);
    r *= silu(zz);
    y[p.off[7] + c] = r;
  }
}
#endif
