#version 450
// EXPERIMENTAL, opt-in (DM_VULKAN_SCAN=lookback): correct (lavapipe, validation layer, H100) but
// measured on an H100 at 6-11% of the bandwidth floor, about 2x slower than the chunked scan
// (selective_scan.comp): with ~200 registers per invocation one work group fills an SM, and
// each work group's life is a chain of dependent global round trips (ticket atomic, loads,
// aggregate publish + fence, flag poll, inclusive publish + fence, stores + fence, group
// count atomic) that nothing overlaps. See src/backend/vulkan/README.md.
//
// Selective scan in ONE pass over the inputs (u, Δ, z, B, C read once, y written once) with one
// exp per (token, channel, state), parallel over channels AND time: a work group owns
// (channel group of CW channels, time chunk of S·TOK tokens) and gets its chunk's start state by
// a decoupled look-back over the aggregates its predecessors in time published.
//
//   Δ = softplus(delta + dt_bias); h = exp(Δ·A)·h + Δ·B·u; y = C·h + D·u; y *= SiLU(z).
//
// Layout: invocation (s, c) = (tid / CW, tid % CW) owns channel c and TOK consecutive tokens
// (segment s) of the chunk: a subgroup's lanes are consecutive channels, so u, Δ, z and y are
// whole-row accesses and B, C (staged in shared memory, read as vec4) are broadcasts.
//   1. local pass: a = exp2(Δ·A·log2 e) for its TOK tokens and 16 states, kept in registers;
//      the segment's end state from zero H and ΣΔ (its decay is exp(A·ΣΔ)).
//   2. in-group scan over the S segments (shared memory, one walk per (channel, state), the
//      segments' decays as products of their a, no exp): each
//      segment's start state from a zero chunk start, the decay from the chunk start to it, and
//      the chunk's aggregate (ΣΔ, H).
//   3. look-back: publish the aggregate (flag AGG), then walk predecessors k = j-1, j-2, ...
//      composing their aggregates until one has published its inclusive end state (flag INCL);
//      publish this chunk's inclusive end state. Chunk 0 starts from ssm_state.
//   4. rerun the TOK tokens from the true segment start with the a kept in registers (no exp),
//      y = C·h + D·u, gated, written; the last chunk writes the final state.
// Forward progress: a work group takes a ticket (an atomic counter that only grows; the host
// pushes its value before this dispatch) when it starts and maps it to (group, chunk)
// chunk-major, so it only ever looks back at lower tickets, i.e. work groups that already
// started. It polls a predecessor's flag a bounded number of times (POLL); if the flag is still
// not there it computes that chunk's aggregate itself from the chunk's inputs (the fallback of a
// decoupled look-back) and goes on to the chunk before; before chunk 0 lies ssm_state. So no
// work group ever waits unboundedly: no deadlock where work groups run one at a time, and no
// reliance on spinning, which lavapipe caps (its loops stop after 65535 iterations in all,
// whatever the condition). The final state goes through scratch: the last work group of a
// channel group to finish (every reader of the initial state is done then) copies it into
// ssm_state and resets the group's count. Flags are tagged with the dispatch's epoch (pushed),
// so nothing has to be cleared between dispatches.
// Scratch (binding 10, floats): agg H [n_chunks·G][16][CW], agg ΣΔ [n_chunks·G][CW],
// incl H [n_chunks·G][16][CW], final state [G][16][CW]. Sync (binding 11, uints): ticket, 2 unused,
// fallback count, per-group done counts [GMAX], flags [n_chunks·G].
// d_state must be 16 (the host falls back to the chunked scan otherwise).
// variant selective_scan.lookback_t8 -DTOK=8
// variant selective_scan.lookback_t4 -DTOK=4
#include "common.glsl"

#define NS 16u
#define LOG2E 1.4426950408889634
#define GMAX 8192u        // per-group done counts before the flags (the host's kLbMaxGroups)

layout(constant_id = 0) const uint WGS = 256;  // CW · S
layout(constant_id = 1) const uint CW = 32;    // channels per work group
layout(constant_id = 2) const uint S = 8;      // segments (of TOK tokens) per chunk
layout(constant_id = 3) const uint POLL = 64;  // polls of a predecessor's flag before computing its aggregate
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
layout(std430, binding = 10) coherent volatile buffer ScrB { float scr[]; };
layout(std430, binding = 11) coherent volatile buffer SyncB { uint sync_[]; };

layout(push_constant) uniform Push {
  uint L, channels, d_state;
  uint u_stride, delta_stride, B_stride, C_stride, z_stride, y_stride;
  uint A_log_dtype, D_dtype, dt_bias_dtype;
  uint has_z;
  uint n_chunks;
  uint ticket_base;  // the ticket counter's value before this dispatch (it only ever grows)
  uint epoch;        // this dispatch's number: tags the flags
  uint off[10];      // u, delta, A_log, B, C, D, z, dt_bias, ssm_state, y
} p;

DEFINE_LOAD_ANY(load_a_log, a_log)
DEFINE_LOAD_ANY(load_d, Dv)
DEFINE_LOAD_ANY(load_dt_bias, dt_bias)

const uint CHUNK = S * TOK;
const uint ST_AGG = 1u, ST_INCL = 2u;

shared float sH[S * NS * CW];  // per (segment, state, channel): end state from zero, then start state from zero
shared float sP[S * NS * CW];  // the segment's decay, then the decay from the chunk start to the segment start
shared float sD[S * CW];       // ΣΔ per segment
shared vec4 sB[CHUNK * NS / 4];
shared vec4 sC[CHUNK * NS / 4];
shared float sAgg[NS * CW];    // the chunk's H from zero, then (look-back) the predecessors' composed H
shared float sH0[NS * CW];     // the chunk's true start state
shared float sFb[NS * CW];     // fallback: a predecessor's aggregate H computed here
shared float sDtot[CW];
shared uint sU[3];

// A·log2 e of (channel c, state n).
float a2_of(uint c, uint n) { return -exp(load_a_log(p.A_log_dtype, p.off[2] + c * NS + n)) * float(LOG2E); }

void run_chunk(const uint ticket, const uint epoch) {
  const uint tid = gl_LocalInvocationID.x;
  const uint cl = tid % CW, s = tid / CW;
  const uint G = (p.channels + CW - 1) / CW;
  const uint j = ticket / G, g = ticket % G;
  const uint c = g * CW + cl;
  const bool live = c < p.channels;
  const uint cc = live ? c : 0;
  const uint t0 = j * CHUNK, ts = t0 + s * TOK;
  const uint nslot = p.n_chunks * G;
  const uint slot = j * G + g;
  const uint aggd_base = nslot * NS * CW, incl_base = aggd_base + nslot * CW;
  const uint fin_base = incl_base + nslot * NS * CW;

  // Stage the chunk's B and C rows (read by every channel).
  for (uint e = tid; e < CHUNK * NS; e += WGS) {
    const uint tt = e / NS, n = e % NS, t = t0 + tt;
    const bool ok = t < p.L;
    sB[e >> 2][e & 3u] = ok ? Bm[p.off[3] + t * p.B_stride + n] : 0.0;
    sC[e >> 2][e & 3u] = ok ? Cm[p.off[4] + t * p.C_stride + n] : 0.0;
  }
  float A2[NS];
  [[unroll]] for (uint n = 0; n < NS; ++n) {
    A2[n] = a2_of(cc, n);
  }
  const float dtb = load_dt_bias(p.dt_bias_dtype, p.off[7] + cc);
  const float dskip = load_d(p.D_dtype, p.off[5] + cc);
  float dt[TOK], du[TOK], yv[TOK], zz[TOK];
  float dseg = 0.0;
  [[unroll]] for (uint i = 0; i < TOK; ++i) {
    const uint t = ts + i;
    const bool ok = live && t < p.L;
    const float uu = ok ? u[p.off[0] + t * p.u_stride + c] : 0.0;
    const float dd = ok ? delta[p.off[1] + t * p.delta_stride + c] : 0.0;
    zz[i] = (ok && p.has_z != 0u) ? z[p.off[6] + t * p.z_stride + c] : 0.0;
    // Past the end (or a padding channel): Δ = 0, the identity map.
    dt[i] = ok ? softplus(dd + dtb) : 0.0;
    du[i] = dt[i] * uu;
    yv[i] = dskip * uu;
    dseg += dt[i];
  }
  barrier();  // sB, sC staged

  // 1. Local pass from zero; a kept for the rerun.
  float a[TOK * NS];
  float h[NS];
  [[unroll]] for (uint n = 0; n < NS; ++n) h[n] = 0.0;
  [[unroll]] for (uint i = 0; i < TOK; ++i) {
    const uint tb = (s * TOK + i) * (NS / 4);
    [[unroll]] for (uint q = 0; q < NS / 4; ++q) {
      const vec4 b4 = sB[tb + q];
      [[unroll]] for (uint r = 0; r < 4; ++r) {
        const uint n = q * 4 + r;
        a[i * NS + n] = exp2(dt[i] * A2[n]);
        h[n] = fma(a[i * NS + n], h[n], du[i] * b4[r]);
      }
    }
  }
  [[unroll]] for (uint n = 0; n < NS; ++n) {
    // The segment's decay: the product of its a (no exp).
    float pn = a[n];
    [[unroll]] for (uint i = 1; i < TOK; ++i) pn *= a[i * NS + n];
    sH[(s * NS + n) * CW + cl] = h[n];
    sP[(s * NS + n) * CW + cl] = pn;
  }
  sD[s * CW + cl] = dseg;
  barrier();

  // 2. Walk the segments per (state, channel): exclusive start state from zero, decay to it,
  // and the chunk aggregate.
  for (uint n = s; n < NS; n += S) {
    const uint q = n * CW + cl;
    float run = 0.0, pc = 1.0, dacc = 0.0;
    for (uint sg = 0; sg < S; ++sg) {
      const uint idx = (sg * NS + n) * CW + cl;
      const float hs = sH[idx], ps = sP[idx], ds = sD[sg * CW + cl];
      sH[idx] = run;
      sP[idx] = pc;
      run = fma(ps, run, hs);
      pc *= ps;
      dacc += ds;
    }
    sAgg[q] = run;
    if (n == 0) sDtot[cl] = dacc;  // the same for every state of the channel
  }
  barrier();

  // 3. Look-back. Invocations own (state n ≡ s mod S, channel cl) pairs as in step 2. Every
  // barrier below is reached by the whole group on every path (no barrier under a branch).
  // Publish the aggregate unless this is chunk 0 or the predecessor already has its inclusive
  // state (one decision for the group).
  if (tid == 0) {
    uint f = 0u;
    if (j > 0) f = sync_[4 + GMAX + slot - G];
    sU[2] = f;
  }
  barrier();
  const uint fp = sU[2];
  const bool publish_agg = j > 0 && !((fp >> 2) == epoch && (fp & 3u) == ST_INCL);
  if (publish_agg) {
    for (uint n = s; n < NS; n += S) {
      const uint q = n * CW + cl;
      scr[slot * NS * CW + q] = sAgg[q];
    }
    if (s == 0) scr[aggd_base + slot * CW + cl] = sDtot[cl];
  }
  memoryBarrierBuffer();
  barrier();
  if (publish_agg && tid == 0) atomicExchange(sync_[4 + GMAX + slot], (epoch << 2) | ST_AGG);
  if (j == 0) {
    for (uint n = s; n < NS; n += S) {
      const uint q = n * CW + cl;
      sH0[q] = live ? state[p.off[8] + cc * NS + n] : 0.0;
    }
  } else {
    // Walk back, each invocation for its own (state, channel) pairs and polling the flags itself
    // (no barrier inside the loop): X = composition of chunks k+1 .. j-1, its ΣΔ in xd, its H
    // accumulating in sH0. Invocations may see a chunk at different stages (AGG, INCL, not yet
    // there): every way gives the same start state.
    for (uint n = s; n < NS; n += S) sH0[n * CW + cl] = 0.0;
    float xd = 0.0;
    int k = int(j) - 1;
    for (;;) {
      if (k < 0) {  // walked past chunk 0 (by fallbacks): the initial state
        for (uint n = s; n < NS; n += S) {
          const uint q = n * CW + cl;
          const float h0 = live ? state[p.off[8] + cc * NS + n] : 0.0;
          sH0[q] = fma(exp2(a2_of(cc, n) * xd), h0, sH0[q]);
        }
        break;
      }
      const uint ks = uint(k) * G + g;
      uint f = 0u;
      for (uint it = 0; it < POLL; ++it) {
        f = sync_[4 + GMAX + ks];
        if ((f >> 2) == epoch && (f & 3u) != 0u) break;
      }
      const bool ready = (f >> 2) == epoch && (f & 3u) != 0u;
      if (ready) {
        memoryBarrierBuffer();
        const uint st = f & 3u;
        for (uint n = s; n < NS; n += S) {
          const uint q = n * CW + cl;
          const float v = st == ST_INCL ? scr[incl_base + ks * NS * CW + q] : scr[ks * NS * CW + q];
          sH0[q] = fma(exp2(a2_of(cc, n) * xd), v, sH0[q]);
        }
        if (st == ST_INCL) break;
        xd += scr[aggd_base + ks * CW + cl];
      } else {
        // Fallback: chunk k's aggregate from its inputs (this channel, this invocation's states).
        if (tid == 0) atomicAdd(sync_[3], 1u);  // how often (diagnostics)
        for (uint n = s; n < NS; n += S) sFb[n * CW + cl] = 0.0;
        float dk = 0.0;
        const uint tk1 = min(uint(k + 1) * CHUNK, p.L);
        for (uint t = uint(k) * CHUNK; t < tk1; ++t) {
          const float dtt = live ? softplus(delta[p.off[1] + t * p.delta_stride + cc] + dtb) : 0.0;
          const float dut = live ? dtt * u[p.off[0] + t * p.u_stride + cc] : 0.0;
          dk += dtt;
          for (uint n = s; n < NS; n += S) {
            const uint q = n * CW + cl;
            sFb[q] = fma(exp2(dtt * a2_of(cc, n)), sFb[q], dut * Bm[p.off[3] + t * p.B_stride + n]);
          }
        }
        for (uint n = s; n < NS; n += S) {
          const uint q = n * CW + cl;
          sH0[q] = fma(exp2(a2_of(cc, n) * xd), sFb[q], sH0[q]);
        }
        xd += dk;
      }
      --k;
    }
  }
  // Publish this chunk's inclusive end state (the last chunk has no reader).
  const bool publish_incl = j + 1 < p.n_chunks;
  if (publish_incl)
    for (uint n = s; n < NS; n += S) {
      const uint q = n * CW + cl;
      scr[incl_base + slot * NS * CW + q] = fma(exp2(a2_of(cc, n) * sDtot[cl]), sH0[q], sAgg[q]);
    }
  memoryBarrierBuffer();
  barrier();  // also: sH0 complete for the rerun
  if (publish_incl && tid == 0) atomicExchange(sync_[4 + GMAX + slot], (epoch << 2) | ST_INCL);

  // 4. Rerun from the true segment start.
  [[unroll]] for (uint n = 0; n < NS; ++n) {
    const uint idx = (s * NS + n) * CW + cl;
    h[n] = fma(sP[idx], sH0[n * CW + cl], sH[idx]);
  }
  [[unroll]] for (uint i = 0; i < TOK; ++i) {
    const uint tb = (s * TOK + i) * (NS / 4);
    float acc = 0.0;
    [[unroll]] for (uint q = 0; q < NS / 4; ++q) {
      const vec4 b4 = sB[tb + q], c4 = sC[tb + q];
      [[unroll]] for (uint r = 0; r < 4; ++r) {
        const uint n = q * 4 + r;
        h[n] = fma(a[i * NS + n], h[n], du[i] * b4[r]);
        acc = fma(h[n], c4[r], acc);
      }
    }
    const uint t = ts + i;
    if (live && t < p.L) {
      float res = acc + yv[i];
      if (p.has_z != 0u) res *= silu(zz[i]);
      y[p.off[9] + t * p.y_stride + c] = res;
    }
  }
  // The final state: into scratch now, into ssm_state by the group's last work group to finish
  // (chunk 0 and fallbacks read the initial state until then).
  if (live && j + 1 == p.n_chunks && s == S - 1)
    [[unroll]] for (uint n = 0; n < NS; ++n) scr[fin_base + (g * NS + n) * CW + cl] = h[n];
  memoryBarrierBuffer();
  barrier();
  if (tid == 0) sU[2] = atomicAdd(sync_[4 + g], 1u);
  barrier();
  if (sU[2] + 1 == p.n_chunks) {
    memoryBarrierBuffer();
    for (uint e = tid; e < NS * CW; e += WGS) {
      const uint n = e / CW, cl2 = e % CW, c2 = g * CW + cl2;
      if (c2 < p.channels) state[p.off[8] + c2 * NS + n] = scr[fin_base + (g * NS + n) * CW + cl2];
    }
    if (tid == 0) atomicExchange(sync_[4 + g], 0u);
  }
}

void main() {
  if (gl_LocalInvocationID.x == 0) sU[0] = atomicAdd(sync_[0], 1u) - p.ticket_base;
  barrier();
  const uint ticket = sU[0];
  // The grid may be rounded up past n_chunks · G work groups: the extra tickets idle.
  if (ticket < p.n_chunks * ((p.channels + CW - 1) / CW)) run_chunk(ticket, p.epoch & 0x3fffffffu);
}
