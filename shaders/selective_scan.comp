#version 450
// Selective scan over L tokens, parallel over time: L is cut into n_chunks chunks of chunk_len
// tokens; every (channel, chunk) is one invocation holding the channel's d_state states in
// registers. Three dispatches of this shader:
//   PASS 0  (channel, chunk < n_chunks-1): the chunk's end state from a zero start, and ΣΔ over
//           the chunk (its decay is exp(A·ΣΔ), no need to store products per state).
//   PASS 1  (channel, state entry): walk the chunks in order; turn each slot into the chunk's
//           true start state (carry = exp(A·ΣΔ)·carry + local end state).
//   PASS 2  (channel, chunk): rerun the chunk from its start state, write y; the last chunk
//           writes the end state into ssm_state.
// With one chunk only PASS 2 runs, starting from ssm_state itself (same invocation reads and
// then overwrites its row). B and C rows are shared by the work group's channels, so they are
// staged through shared memory S_TOK tokens at a time.
//   Δ = softplus(delta + dt_bias); h = exp(Δ·A)·h + Δ·B·u; y = C·h + D·u; y *= SiLU(z).
// The passes are compiled as separate variants so that none references a buffer it does not
// touch (the recorder's barriers, and the validation layer, go by what a pipeline accesses).
// variant selective_scan.chunk_state -DPASS=0
// variant selective_scan.combine -DPASS=1
// variant selective_scan -DPASS=2
#include "common.glsl"

layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint D_STATE = 16;
layout(constant_id = 2) const uint S_TOK = 32;
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
layout(std430, binding = 10) buffer ChunkH { float chunk_h[]; };    // n_chunks × channels × d_state
layout(std430, binding = 11) buffer ChunkD { float chunk_dsum[]; }; // n_chunks × channels

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

shared float sB[S_TOK * D_STATE];
shared float sC[S_TOK * D_STATE];

#if PASS == 1
void main() {
  const uint e = gl_GlobalInvocationID.x;  // c · d_state + n
  if (e >= p.channels * D_STATE) return;
  const uint c = e / D_STATE;
  const float A = -exp(load_a_log(p.A_log_dtype, p.off[2] + e));
  float carry = state[p.off[8] + e];
  for (uint j = 0; j < p.n_chunks; ++j) {
    const uint slot = j * p.channels * D_STATE + e;
    const float local_end = j + 1 < p.n_chunks ? chunk_h[slot] : 0.0;
    chunk_h[slot] = carry;
    if (j + 1 < p.n_chunks) carry = fma(exp(A * chunk_dsum[j * p.channels + c]), carry, local_end);
  }
}

#else
void main() {
  const uint c = gl_WorkGroupID.x * WG + gl_LocalInvocationID.x;
  const bool live = c < p.channels;
  const uint j = gl_WorkGroupID.y;
  const uint t0 = j * p.chunk_len;
  const uint t1 = min(t0 + p.chunk_len, p.L);
  const uint cc = live ? c : 0;  // inactive invocations only help stage B and C

  float A[D_STATE], h[D_STATE];
  const bool single = p.n_chunks == 1;
  [[unroll]] for (uint n = 0; n < D_STATE; ++n) {
    A[n] = -exp(load_a_log(p.A_log_dtype, p.off[2] + cc * D_STATE + n));
#if PASS == 0
    h[n] = 0.0;
#else
    h[n] = single ? state[p.off[8] + cc * D_STATE + n] : chunk_h[(j * p.channels + cc) * D_STATE + n];
#endif
  }
  const float dtb = load_dt_bias(p.dt_bias_dtype, p.off[7] + cc);
#if PASS == 2
  const float dskip = load_d(p.D_dtype, p.off[5] + cc);
#endif
  float dsum = 0.0;

  for (uint tb = t0; tb < t1; tb += S_TOK) {
    const uint nt = min(S_TOK, t1 - tb);
    barrier();  // the previous round's readers are done with sB / sC
    for (uint e = gl_LocalInvocationID.x; e < nt * D_STATE; e += WG) {
      const uint tt = e / D_STATE, n = e % D_STATE;
      sB[e] = Bm[p.off[3] + (tb + tt) * p.B_stride + n];
#if PASS == 2
      sC[e] = Cm[p.off[4] + (tb + tt) * p.C_stride + n];
#endif
    }
    barrier();
    if (!live) continue;
    for (uint tt = 0; tt < nt; ++tt) {
      const uint t = tb + tt;
      const float uu = u[p.off[0] + t * p.u_stride + c];
      const float dt = softplus(delta[p.off[1] + t * p.delta_stride + c] + dtb);
      const float du = dt * uu;
#if PASS == 0
      dsum += dt;
      [[unroll]] for (uint n = 0; n < D_STATE; ++n)
        h[n] = fma(exp(dt * A[n]), h[n], du * sB[tt * D_STATE + n]);
#else
      {
        float acc = 0.0;
        [[unroll]] for (uint n = 0; n < D_STATE; ++n) {
          h[n] = fma(exp(dt * A[n]), h[n], du * sB[tt * D_STATE + n]);
          acc = fma(h[n], sC[tt * D_STATE + n], acc);
        }
        float res = fma(dskip, uu, acc);
        if (p.has_z != 0u) res *= silu(z[p.off[6] + t * p.z_stride + c]);
        y[p.off[9] + t * p.y_stride + c] = res;
      }
#endif
    }
  }
  if (!live) return;
#if PASS == 0
  [[unroll]] for (uint n = 0; n < D_STATE; ++n) chunk_h[(j * p.channels + c) * D_STATE + n] = h[n];
  chunk_dsum[j * p.channels + c] = dsum;
#else
  if (j + 1 == p.n_chunks)
    [[unroll]] for (uint n = 0; n < D_STATE; ++n) state[p.off[8] + c * D_STATE + n] = h[n];
#endif
}
#endif
