#version 450
// The prompt scan (d_state 16), time-parallel inside a subgroup, with every subgroup preparing
// and gating its own channel: the first GLSL port of cuda/selective_scan_v6.cu ("warp6", removed
// in session 5; in the git history) restructured after cuda/selective_scan_v7.cu.
//
// Why: the v6 port runs, between two barriers, work-group-wide phases (Δ = softplus for the
// whole chunk, transposed one element at a time; the gate, reading y back transposed) in
// lockstep with every subgroup's scan; on the H100 it was slower than the chunked scan. Here
// the work group only moves data and each subgroup does all the arithmetic of its channel:
//   staging (work group): chunk k+1's delta, u, z rows, loaded into registers one iteration
//            earlier, are stored TRANSPOSED ([channel][token], rows of T + 4 floats: the 4 stores
//            of a vec4 piece hit distinct banks at CB 4 and 8), B and C as rows
//            ([slot][row][state / 4], a pad row after each slice's R rows); chunk k−1's gated y
//            (transposed, written by the subgroups) goes out as whole rows.
//   prep (subgroup, per channel): lane l takes tokens l + SG·i (i < R/4) of its channel
//            (PREP2 below; conflict-free column reads): Δ = softplus(delta + bias) and Δ·u
//            overwrite delta and u in place (the lane keeps u and SiLU(z) in registers); a
//            subgroup barrier, no work-group one.
//   scan:    v6's: lane = 4·slice + state group, a = exp2(Δ·A·log2e) and Δ·B·u kept in
//            registers, the slice maps scanned with shuffles (ZD: no predication), the rerun
//            from the true start; y summed over the 4 group lanes through shared memory (YSM:
//            the channel's consumed rows of the slot), or reduce-scattered by shuffles (OPT 0).
//   gate:    the prep's lane of a token adds its 4 partial sums (or gets y by shuffles, OPT 0),
//            y = (C·h + D·u)·SiLU(z) into the transposed y rows.
// One work-group barrier per chunk (T = SG/4 · R tokens); ring slots: 2 of each. Inputs read
// once, y written once. Tokens past L have Δ = 0 and zero B: decay 1, input 0, the state is
// left alone; their y is not stored.
// Measured (H100, one run): at the v6 port's shape (8,8) no faster than it; what won was the
// shape 12,8 (d_inner 1536: a third of the v6 port's time saved, a quarter of the chunked
// scan's), which the v6 port's shared memory (56 KiB at 12,8) does not allow. Its work group
// takes a whole SM's registers, so time goes by waves of work groups (vulkan_scan.cpp).
// Tried in session 6 and dropped (H100, 1536 × 4K at 12,8, against 118.7-119.6 µs; in the git
// history): B and C read by the scan from the buffers, not staged (173.1 µs; 163.3 with the
// staging loads kept as an L1 prefetch); odd subgroups doing their staging duty after the scan
// (151.5; 241.6 when the scan's call was written twice instead); a denormal-flushing variant
// (SPV_KHR_float_controls) was never dispatched: the H100 driver reported no fp32 flush-to-zero.
// Session 12 (H100, three calls, bench/results/h100_session12_vkscan_2026-11-28.md): ZD + YSM
// (OPT 3, the default) 1.4-2.7% faster than OPT 0 at d_inner 1536 / 2048 / 3072, L 4K / 16K
// (1536 × 4K: 119.6 → 117.0 µs in call 3; 29-31% of the floor). Tried and dropped (in the git
// history, commit "vulkan warp scan: session 12 variants"): exp2 arguments clamped at −126 (no
// change: the driver spends nothing on denormals), no subgroupMemoryBarrierShared before a
// subgroupBarrier (no change), and every variant that gave more duty to the warps that had
// little: the prep done by the staging invocations (10-15% slower), the delta / u and z / y-out
// staging on separate invocations (11% slower), B / C staged by the last warps (no gain), y out
// or the next loads issued from inside the scan (no gain, slower): with one barrier a chunk,
// warps without duty start the scan at once and overlap the duty warps' latency.
// Needs: d_state 16, subgroup shuffles in compute, work groups of CB full subgroups of the
// reported size; CB a multiple of 4, R a multiple of 4, R <= 16. Variant warp2 (VEC): channels,
// row strides and element offsets of u, delta, B, C, z, y multiples of 4; warp2_scalar: any.
//   Δ = softplus(delta + dt_bias); h = exp(Δ·A)·h + Δ·B·u; y = C·h + D·u; y *= SiLU(z).
// variant selective_scan.warp2 -DVEC=1
// variant selective_scan.warp2_scalar -DVEC=0
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#include "common.glsl"

layout(constant_id = 0) const uint WG = 256;  // CB · SG
layout(constant_id = 1) const uint SG = 32;   // subgroup size
layout(constant_id = 2) const uint CB = 8;    // channels (subgroups) per work group
layout(constant_id = 3) const uint R = 8;     // tokens per slice
// PREP2 (the default, 1): the prep's lane l takes tokens l + SG·i (consecutive floats of the
// transposed row: no bank conflicts) rather than l·Q + i (0: 2-way conflicts at Q 2, where the
// reduce-scatter leaves the lane's y); the scan's y then comes to it by Q² shuffles (none at
// Q 1, where both maps are one). H100, two runs: 0.5-1% faster at 12,8 (session 6).
layout(constant_id = 4) const uint PREP2 = 1;
// OPT (session 12), bits: 1 = ZD, the slice scan without predication (CUDA's kScanZeroDone,
// cuda/selective_scan_common.cuh: slice 0's decay zeroed once the carry is folded in, every
// combine unconditional); 2 = YSM, y summed over the 4 group lanes through shared memory
// instead of the reduce-scatter and the PREP2 gather shuffles (scan_chunk). The host's default
// is 3 (VulkanBackend::WarpConfig::opt); 0 is the scan before session 12.
layout(constant_id = 5) const uint OPT = 3;
const bool ZD = (OPT & 1u) != 0u;
const bool YSM = (OPT & 2u) != 0u;
layout(local_size_x_id = 0) in;

#include "selective_scan_warp_io.glsl"

const uint N = 16;
const uint NSL = SG / 4;     // time slices per subgroup
const uint T = NSL * R;      // tokens per chunk
const uint Q = R / 4;        // tokens per lane after the reduce-scatter (T = SG · Q)
const uint V = CB / 4;       // vec4 pieces in a row of CB channels
const uint TP4 = T / 4 + 1;  // a transposed row, in vec4s: T + 4 floats
const uint BR = T + NSL;     // B, C rows: a pad row after each slice's R rows
const uint NBP = (R + CB - 1) / CB;  // B, C staging pieces per invocation (T·4 = SG·R pieces)

// The four transposed arrays ([slot][channel][token] each, AS vec4s) as one, so that YSM can
// address "array a of this channel's row" arithmetically:
const uint AS = 2 * CB * TP4;
shared vec4 s_io[4 * AS];
#define s_dl(i) s_io[(i)]           // delta, then Δ (prep)
#define s_u(i) s_io[AS + (i)]       // u, then Δ·u
#define s_z(i) s_io[2u * AS + (i)]  // z
#define s_y(i) s_io[3u * AS + (i)]  // gated y
shared vec4 s_B[2 * BR * 4];     // [slot][row][state / 4], rows padded per slice
shared vec4 s_C[2 * BR * 4];

// Per invocation: its staging piece of the channel arrays (row lt, channels c0 + 4·lq ..) and
// its NBP pieces of B / C (piece i: e = tid + i·WG, row e / 4, states 4·(e % 4) ..).
uint tid, c0, nch, lt, lq, ln;  // ln: channels in the piece (4 but at the end)
bool lrow, lch;

bool row_ok(uint k, uint t) { return k < nch && k * T + t < p.L; }

vec4 ld_rows(uint k, uint which) {
  if (!lch || !row_ok(k, lt)) return vec4(0.0);
  const uint r = k * T + lt, c = c0 + 4 * lq;
  if (which == 0u) return LD4(delta4, p.off[1] + r * p.delta_stride + c, ln);
  if (which == 1u) return LD4(u4, p.off[0] + r * p.u_stride + c, ln);
  return LD4(z4, p.off[6] + r * p.z_stride + c, ln);
}
// B and C pieces of the next chunk to stage (NBP <= 4 used; a fixed size: GLSL cannot copy
// arrays sized by specialization constants).
vec4 rb[4], rc[4];
void ld_bc(uint k) {
  [[unroll]] for (uint i = 0; i < NBP; ++i) {
    const uint e = tid + i * WG, bt = e / 4;
    const bool ok = e < T * 4 && row_ok(k, bt);
    rb[i] = ok ? LD4(B4, p.off[3] + (k * T + bt) * p.B_stride + 4 * (e % 4), 4u) : vec4(0.0);
    rc[i] = ok ? LD4(C4, p.off[4] + (k * T + bt) * p.C_stride + 4 * (e % 4), 4u) : vec4(0.0);
  }
}

// Transposed element (channel ch, token t) of slot k & 1: vec4 index and component.
uint trow(uint k, uint ch) { return ((k & 1u) * CB + ch) * TP4; }

void stage(uint k, vec4 d, vec4 uu, vec4 zz, bool has_z) {
  if (lrow)
    [[unroll]] for (uint j = 0; j < 4; ++j) {
      const uint o = trow(k, 4 * lq + j) + lt / 4;
      s_dl(o)[lt % 4] = d[j];
      s_u(o)[lt % 4] = uu[j];
      if (has_z) s_z(o)[lt % 4] = zz[j];
    }
  [[unroll]] for (uint i = 0; i < NBP; ++i) {
    const uint e = tid + i * WG, bt = e / 4;
    if (e < T * 4) {
      const uint o = (k & 1u) * BR * 4 + (bt + bt / R) * 4 + e % 4;
      s_B[o] = rb[i];
      s_C[o] = rc[i];
    }
  }
}

// Store chunk k's gated y rows (this invocation's piece).
void write_out(uint k) {
  if (!lch || !row_ok(k, lt)) return;
  vec4 o;
  [[unroll]] for (uint j = 0; j < 4; ++j) o[j] = s_y(trow(k, 4 * lq + j) + lt / 4)[lt % 4];
  store_y4(p.off[9] + (k * T + lt) * p.y_stride + c0 + 4 * lq, o, ln);
}

// The token of entry i of the prep's lane (PREP2: Q = 1 maps the same either way).
uint prep_token(uint lane, uint i) { return PREP2 != 0u ? lane + SG * i : lane * Q + i; }

// YSM's partial-sum blocks: group g's block is array (g + 3) % 4 (y, then Δ, Δ·u, z) of the
// channel's row (vec4 index); its tokens rotated by ysm_rot(g) floats (a multiple of 4) so that
// a quarter subgroup's 8 lanes (slices 0-1 × groups 0-3, rows of the arrays AS·4 ≡ 0 mod 32
// floats apart) store to 8 distinct 16-byte bank quads: quads s·R/4 + rot/4 (mod 8) distinct.
uint ysm_block(uint g, uint row) { return ((g + 3u) % 4u) * AS + row; }
uint ysm_rot(uint g) {
  const uint r4 = (R / 4) % 2u == 1u ? 2u * g : (R == 8u ? (g & 1u) + 4u * (g >> 1) : g);
  return (4u * r4) % T;
}

// Chunk k of channel w (see the file comment); h: the carried state of this lane's 4 states.
void scan_chunk(uint k, uint w, uint lane, vec4 A2, float bias, float dskip, bool has_z,
                inout vec4 h) {
  const uint s = lane >> 2, g = lane & 3u;
  const uint row = trow(k, w);
  // Prep: this lane's Q tokens (lane·Q + i, or lane + SG·i with PREP2).
  float uq[Q], gz[Q];
  [[unroll]] for (uint i = 0; i < Q; ++i) {
    const uint t = prep_token(lane, i), o = row + t / 4;
    const float dt = k * T + t < p.L ? softplus(s_dl(o)[t % 4] + bias) : 0.0;
    uq[i] = s_u(o)[t % 4];
    gz[i] = has_z ? silu(s_z(o)[t % 4]) : 1.0;
    s_dl(o)[t % 4] = dt;
    s_u(o)[t % 4] = dt * uq[i];
  }
  subgroupMemoryBarrierShared();
  subgroupBarrier();  // the prep's Δ and Δ·u are visible to the subgroup

  float dtv[R], duv[R];
  [[unroll]] for (uint r = 0; r < R / 4; ++r) {
    const vec4 d4 = s_dl(row + s * (R / 4) + r), v4 = s_u(row + s * (R / 4) + r);
    [[unroll]] for (uint j = 0; j < 4; ++j) {
      dtv[4 * r + j] = d4[j];
      duv[4 * r + j] = v4[j];
    }
  }
  const uint brow = (k & 1u) * BR * 4 + s * (R + 1) * 4 + g;
  vec4 a[R], x[R];
  vec4 H = vec4(0.0);
  float dsum = 0.0;
  [[unroll]] for (uint r = 0; r < R; ++r) {
    dsum += dtv[r];
    a[r] = exp2(dtv[r] * A2);
    x[r] = s_B[brow + 4 * r] * duv[r];
    H = fma(a[r], H, x[r]);
  }
  // The slice's decay product as one exp2 of the summed Δ.
  vec4 P = exp2(dsum * A2);
  if (s == 0) {
    H = fma(P, h, H);
    // ZD: slice 0's map now starts at the chunk's start: decay 0. Slices below d at level d are
    // complete (decay 0), so combining them with their own values (the shuffle's source for
    // lanes below 4·d) changes nothing while the states are finite: H = 0·H + H, P = 0·P.
    if (ZD) P = vec4(0.0);
  }
  [[unroll]] for (uint d = 1; d < NSL; d *= 2) {
    const uint src = lane >= 4 * d ? lane - 4 * d : lane;
    const vec4 Hq = subgroupShuffle(H, src), Pq = subgroupShuffle(P, src);
    if (ZD || s >= d) {
      H = fma(P, Hq, H);
      P *= Pq;
    }
  }
  // H: this slice's true end state. Start = the previous slice's end; carry = the last one's.
  const vec4 prev = subgroupShuffle(H, lane >= 4 ? lane - 4 : lane);
  vec4 hs = s == 0 ? h : prev;
  h = subgroupShuffle(H, 4 * (NSL - 1) + g);
  float yv[R];
  [[unroll]] for (uint r = 0; r < R; ++r) {
    hs = fma(a[r], hs, x[r]);
    yv[r] = dot(hs, s_C[brow + 4 * r]);
  }
  if (YSM) {
    // y through shared memory: this channel's rows of slot k & 1 are consumed (Δ, Δ·u read
    // above, z in the prep, chunk k − 2's y written out before this iteration's barrier): lane
    // (s, g) writes its R partial sums (its 4 states' C·h) into block g (g 0: the y row, 1-3:
    // the Δ, Δ·u, z rows), tokens rotated by ysm_rot(g) so that each quarter subgroup's 16-byte
    // stores hit 8 distinct bank quads; the prep's lane of token t then adds the 4 partials in
    // the reduce-scatter's order ((g0 + g2) + (g1 + g3): the same y, bit for bit) and gates.
    subgroupBarrier();  // every lane's reads of the Δ, Δ·u rows are done
    const uint bg = ysm_block(g, row);
    [[unroll]] for (uint q = 0; q < R / 4; ++q) {
      const uint pos = (s * R + 4 * q + ysm_rot(g)) % T;
      s_io[bg + pos / 4] = vec4(yv[4 * q], yv[4 * q + 1], yv[4 * q + 2], yv[4 * q + 3]);
    }
    subgroupMemoryBarrierShared();
    subgroupBarrier();
    float yt[Q];
    [[unroll]] for (uint i = 0; i < Q; ++i) {
      const uint t = prep_token(lane, i);
      float pg[4];
      [[unroll]] for (uint j = 0; j < 4; ++j) {
        const uint pos = (t + ysm_rot(j)) % T;
        pg[j] = s_io[ysm_block(j, row) + pos / 4][pos % 4];
      }
      yt[i] = (pg[0] + pg[2]) + (pg[1] + pg[3]);
    }
    // Block 0 is the y row unrotated: token t's partial and its gated y are one float, read
    // and written by the same lane.
    [[unroll]] for (uint i = 0; i < Q; ++i) {
      const uint t = prep_token(lane, i);
      s_y(row + t / 4)[t % 4] = fma(dskip, uq[i], yt[i]) * gz[i];
    }
    return;
  }
  // Reduce-scatter over the 4 group lanes: lane g ends with tokens g·Q .. of its slice, i.e.
  // tokens lane·Q + i of the chunk: the ones its prep took.
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
    const uint t = prep_token(lane, i);
    float yt = yv[i];
    if (PREP2 != 0u && Q > 1u) {
      // Token t's y sits in lane t / Q, entry t % Q: every entry j is shuffled from that lane
      // (a shuffle's index must be uniform in the source lane's registers), the right one kept.
      const uint holder = t / Q, idx = t % Q;
      yt = 0.0;
      [[unroll]] for (uint j = 0; j < Q; ++j) {
        const float yj = subgroupShuffle(yv[j], holder);
        if (idx == j) yt = yj;
      }
    }
    s_y(row + t / 4)[t % 4] = fma(dskip, uq[i], yt) * gz[i];
  }
}

// The staging duty of iteration k: chunk k + 1 into shared memory, chunk k + 2's loads issued
// (before the scan of k, so that its work hides their latency: issued after it instead, the scan
// took 25-45% longer on the H100), chunk k − 1's y out.
void duty(uint k, inout vec4 rd, inout vec4 ru, inout vec4 rz, bool has_z) {
  if (k + 1 < nch) stage(k + 1, rd, ru, rz, has_z);
  rd = ld_rows(k + 2, 0);
  ru = ld_rows(k + 2, 1);
  if (has_z) rz = ld_rows(k + 2, 2);
  ld_bc(k + 2);
  if (k >= 1) write_out(k - 1);
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

  const uint g = lane & 3u, s = lane >> 2;
  const float kLog2e = 1.4426950408889634;
  vec4 A2, h;
  [[unroll]] for (uint j = 0; j < 4; ++j) {
    A2[j] = -exp(load_a_log(p.A_log_dtype, p.off[2] + cc * N + 4 * g + j)) * kLog2e;
    h[j] = cv ? state[p.off[8] + c * N + 4 * g + j] : 0.0;
  }
  const float dskip = load_d(p.D_dtype, p.off[5] + cc);
  const float bias = load_dt_bias(p.dt_bias_dtype, p.off[7] + cc);
  const bool has_z = p.has_z != 0u;

  // Prologue: chunk 0 in shared memory, chunk 1 in registers.
  ld_bc(0);
  stage(0, ld_rows(0, 0), ld_rows(0, 1), has_z ? ld_rows(0, 2) : vec4(0.0), has_z);
  vec4 rd = ld_rows(1, 0), ru = ld_rows(1, 1), rz = has_z ? ld_rows(1, 2) : vec4(0.0);
  ld_bc(1);
  for (uint k = 0; k < nch; ++k) {
    // Chunk k's staging and chunk k−1's y are visible; every read of slot (k + 1) & 1 (chunk
    // k − 1's inputs, chunk k − 2's y) is done.
    barrier();
    duty(k, rd, ru, rz, has_z);
    scan_chunk(k, w, lane, A2, bias, dskip, has_z, h);
  }
  barrier();
  write_out(nch - 1);
  if (cv && s == 0)
    [[unroll]] for (uint j = 0; j < 4; ++j) state[p.off[8] + c * N + 4 * g + j] = h[j];
}
