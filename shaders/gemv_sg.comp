#version 450
// The decode GEMVs where subgroup shuffles exist, y[M,N] = x[M,K] · w[N,K]ᵀ (+ bias[N]) for M ≤ 4
// rows of x (reading W is the whole cost); x, y fp32, w and bias F32/F16/BF16, fp32 accumulate.
// They replace gemv.comp's gemm.small_m_vec (same 16-byte pieces and preconditions); bindings
// and push constants in gemv_io.glsl. Variants:
//  gemm.gemv     Sizes are specialization constants, so the loops are unrolled and the arrays
//                live in registers: ROWS rows of W per work group, T = 256 / ROWS invocations per
//                row, PIPE pieces per invocation loaded (all of them, before the first is used)
//                per batch — the host picks PIPE so that one batch covers the whole row slice of
//                an invocation where it can, i.e. each invocation has its whole share of the row
//                in flight at once; MM the most rows of x (1 at batch 1: one accumulator, a
//                quarter of the reduction). The T partial sums of a row are reduced with subgroup
//                shuffles (no barrier) and, when a row spans several subgroups, one shared-memory
//                step.
//  gemm.gemv_conv  gemm.gemv with gemm.small_m_vec_conv's conv step.
//  gemm.gemv(_conv, _norm_tail)_rw2 / _rw4  the same at batch 1 with RW = 2 or 4 rows of W per
//                slot of T invocations (compile-time RW: every array's size is known to the
//                compiler): each invocation loads a piece of x once and multiplies it into RW
//                rows' pieces, so x's traffic per weight byte falls by RW (CUDA's gemv_rows idea,
//                session 16). ROWS counts slots; a work group covers ROWS · RW rows.
//  gemm.gemv_norm_tail  gemm.gemv (one row of x) that also runs the next layer's rms_norm.residual
//                (Backend's next_norm: residual += y, normed = residual · rsqrt(mean(residual²)
//                + eps) · norm_w) without a dispatch of its own: each work group adds its rows
//                of y into the residual, then counts itself done on a device counter; the last
//                one to finish (no work group ever waits for another) reads the whole residual
//                and writes normed as rms_norm.comp's register path does, the same terms in the
//                same order: the same bits. It resets the counter for the next dispatch. On
//                NVIDIA's Vulkan driver a dependent dispatch costs ~3 µs of drain and fill
//                (bench/results/h200_session14_vkdecode_2026-11-28.md) plus the norm's own
//                load and reduction latency; the tail pays only the latter, in one work group.
//                Where it runs: vulkan_decode.cpp (decode_norm_tail).
//  (gemm.gemv_norm(_conv), the residual add and rms_norm inside the GEMV, was measured 2–3×
//                slower than rms_norm + gemm.gemv on an H100 — every work group re-read x, the
//                residual and the norm weight from L2 — and removed in session 5; the git
//                history has it.)
// variant gemm.gemv -DSMALL_M=3
// variant gemm.gemv_conv -DSMALL_M=3 -DCONV=1
// variant gemm.gemv_norm_tail -DSMALL_M=3 -DTAIL=1
// variant gemm.gemv_rw2 -DSMALL_M=3 -DRW=2
// variant gemm.gemv_rw4 -DSMALL_M=3 -DRW=4
// variant gemm.gemv_conv_rw2 -DSMALL_M=3 -DCONV=1 -DRW=2
// variant gemm.gemv_conv_rw4 -DSMALL_M=3 -DCONV=1 -DRW=4
// variant gemm.gemv_norm_tail_rw2 -DSMALL_M=3 -DTAIL=1 -DRW=2
// variant gemm.gemv_norm_tail_rw4 -DSMALL_M=3 -DTAIL=1 -DRW=4
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#include "common.glsl"
#include "gemv_io.glsl"

layout(constant_id = 0) const uint ROWS = 8;  // rows of W per work group (1 … 256, a power of two)
layout(constant_id = 1) const uint PIPE = 8;  // 16-byte pieces per invocation per batch (1 … 16)
layout(constant_id = 2) const uint MM = 4;    // the most rows of x this pipeline takes (1 or 4)
layout(constant_id = 3) const uint SG = 32;   // the device's subgroup size (a power of two ≤ 256)
// gemm.gemv_conv: 1 loads the conv step's inputs after the weight loop instead of before it, so
// that they hold no registers while the weights stream (the default above 1536 channels, where
// that measured faster; vulkan_decode.cpp conv_loads_late).
layout(constant_id = 4) const uint CONV_LATE = 0;
const uint MAX_M = 4, WG = 256;
const uint T = WG / ROWS;           // invocations per row of W
const uint TS = T < SG ? T : SG;    // of them in one subgroup
const uint NSUB = T / TS;           // subgroups per row
shared float part[MAX_M][64];       // per-subgroup sums (subgroups of ≥ 4 lanes: ≤ 64 of them)
#if TAIL
shared float partial[WG];           // row_sum's
shared bool last_group;
#include "row_sum.glsl"

layout(constant_id = 5) const uint TE = 10;       // residual elements per invocation (⌈N / 256⌉)

// After the work group's rows of y: residual += y there (tail_row, by the invocation that stored
// row n); then the last work group to finish writes normed (tail_count: rms_norm.comp's sum,
// reading the residual the others wrote). Lean on registers: they are allocated for the whole
// kernel, so the tail's would cost the GEMV loop occupancy; the norm weights are loaded after
// the sum (their round trip overlaps the reduction's barriers). Measured at 2.8b on an H200
// (session 17, bench/results/h200_session17_2026-11-28.md, call 4): fencing in every invocation
// instead of only those that stored cost ~2.3 µs a layer; loading the norm weights with the
// residual was no faster; the last work group's norm costs ~2.7 µs a layer.
void tail_row(uint n, float yv) {
  res[p.tail_off[0] + n] = yv + res[p.tail_off[0] + n];  // rms_norm's x + residual
  memoryBarrierBuffer();  // this store before the count (only stores need ordering)
}
void tail_count(uint tid) {  // tid: rms_norm.comp's index; every invocation calls it
  barrier();
  if (tid == 0u) last_group = atomicAdd(counter[p.tail_off[3]], 1u) == p.groups - 1u;
  barrier();
  if (!last_group) return;  // uniform over the work group
  memoryBarrierBuffer();
  if (tid == 0u) counter[p.tail_off[3]] = 0u;  // every work group has counted: ready for the next
  float v[TE];
  uint w[TE];
  [[unroll]] for (uint j = 0; j < TE; ++j) {
    const uint i = tid + j * WG;
    v[j] = i < p.N ? res[p.tail_off[0] + i] : 0.0;
  }
  float ss = 0.0;
  [[unroll]] for (uint j = 0; j < TE; ++j)
    if (tid + j * WG < p.N) ss = fma(v[j], v[j], ss);
  [[unroll]] for (uint j = 0; j < TE; ++j) {
    const uint i = tid + j * WG;
    w[j] = i < p.N ? load_norm_w_word(p.norm_w_dtype, p.tail_off[1] + i) : 0u;
  }
  const float inv = inversesqrt(row_sum(tid, ss) / float(p.N) + p.eps);
  [[unroll]] for (uint j = 0; j < TE; ++j) {
    const uint i = tid + j * WG;
    if (i < p.N)
      normed[p.tail_off[2] + i] = v[j] * inv * word_elem(p.norm_w_dtype, p.tail_off[1] + i, w[j]);
  }
}
#endif

#if RW > 1
// Batch 1 with RW rows of W per slot (the host sends M = 1 only).
void main() {
  const uint tid = gl_SubgroupID * SG + gl_SubgroupInvocationID;  // as below
  const uint t = tid % T;
  const uint n0 = (linear_group_id() * ROWS + tid / T) * RW;  // the slot's first row of W
  const bool wide = p.w_dtype != DT_F32;
  const uint per = wide ? 8u : 4u;
  const uint pieces = p.K / per;
  float acc[RW], bv[RW];
  uint wb[RW];  // first piece of each row (rows past N read row n0's, their sums unused)
  [[unroll]] for (uint r = 0; r < RW; ++r) {
    const uint n = n0 + r;
    acc[r] = 0.0;
    bv[r] = t == 0u && n < p.N && p.has_bias != 0u ? load_bias(p.bias_dtype, p.off[2] + n) : 0.0;
    wb[r] = (p.off[1] + (n < p.N ? n : n0) * p.w_stride) / per;
  }
#if CONV
  ConvIn ci[RW];
  if (CONV_LATE == 0u)
    [[unroll]] for (uint r = 0; r < RW; ++r)
      if (t == 0u && n0 + r < p.N && n0 + r < p.conv_channels) ci[r] = conv_load(0u, n0 + r);
#endif
  if (n0 < p.N) {
    const uint xb0 = p.off[0] / 4u;
    for (uint j0 = t; j0 < pieces; j0 += PIPE * T) {
      uvec4 q[PIPE * RW];  // every weight load of the batch first, RW rows a piece
      [[unroll]] for (uint u = 0; u < PIPE; ++u) {
        const uint j = j0 + u * T;
        [[unroll]] for (uint r = 0; r < RW; ++r)
          q[u * RW + r] = j < pieces ? w4[wb[r] + j] : uvec4(0);
      }
      [[unroll]] for (uint u = 0; u < PIPE; ++u) {
        const uint j = j0 + u * T;
        const uint xb = xb0 + (j < pieces ? j : 0u) * (per / 4u);
        const vec4 xlo = x4[xb], xhi = wide ? x4[xb + 1u] : vec4(0.0);  // once for RW rows
        [[unroll]] for (uint r = 0; r < RW; ++r) {
          vec4 lo, hi;
          widen(p.w_dtype, q[u * RW + r], lo, hi);
          acc[r] += dot(lo, xlo);
          if (wide) acc[r] += dot(hi, xhi);
        }
      }
    }
  }
  [[unroll]] for (uint r = 0; r < RW; ++r)
    [[unroll]] for (uint o = TS / 2u; o > 0u; o >>= 1) acc[r] += subgroupShuffleXor(acc[r], o);
  if (NSUB > 1u) {
    if (gl_SubgroupInvocationID == 0u)
      [[unroll]] for (uint r = 0; r < RW; ++r) part[r][gl_SubgroupID] = acc[r];
    barrier();
    const uint first = gl_SubgroupID - (t / TS);  // the slot's first subgroup
    [[unroll]] for (uint r = 0; r < RW; ++r) {
      float s = 0.0;
      for (uint i = 0; i < NSUB; ++i) s += part[r][first + i];
      acc[r] = s;
    }
  }
  if (t == 0u)
    [[unroll]] for (uint r = 0; r < RW; ++r) {
      const uint n = n0 + r;
      if (n >= p.N) break;
#if CONV
      const bool conv = n < p.conv_channels;
      if (CONV_LATE != 0u && conv) ci[r] = conv_load(0u, n);
#endif
      y[p.off[3] + n] = acc[r] + bv[r];
#if CONV
      if (conv) conv_store(0u, n, acc[r] + bv[r], ci[r]);
#endif
#if TAIL
      tail_row(n, acc[r] + bv[r]);
#endif
    }
#if TAIL
  tail_count(gl_LocalInvocationID.x);
#endif
}
#else
void main() {
  // Rows own runs of T consecutive invocations counted subgroup by subgroup, so a row's lanes
  // share a subgroup (T ≤ SG) or own whole subgroups (T > SG): the shuffles below stay in a row.
  const uint tid = gl_SubgroupID * SG + gl_SubgroupInvocationID;
  const uint t = tid % T;
  const uint n = linear_group_id() * ROWS + tid / T;
  const bool wide = p.w_dtype != DT_F32;  // 8 weights per piece, else 4
  const uint per = wide ? 8u : 4u;
  const uint pieces = p.K / per;          // the host guarantees K % per == 0
  float acc[MAX_M];
  [[unroll]] for (uint m = 0; m < MAX_M; ++m) acc[m] = 0.0;
  // The bias (and the conv step's inputs) loaded now, so that they arrive with the weights
  // rather than after the reduction.
  const float bv = t == 0u && n < p.N && p.has_bias != 0u ? load_bias(p.bias_dtype, p.off[2] + n) : 0.0;
#if CONV
  const bool conv = t == 0u && n < p.N && n < p.conv_channels;
  ConvIn ci[MAX_M];
  if (CONV_LATE == 0u)
    [[unroll]] for (uint m = 0; m < MAX_M; ++m)
      if (m < MM && m < p.M && conv) ci[m] = conv_load(m, n);
#endif
  if (n < p.N) {
    const uint wb = (p.off[1] + n * p.w_stride) / per;  // first piece of the row
    for (uint j0 = t; j0 < pieces; j0 += PIPE * T) {
      // Every weight load of the batch first (PIPE × 16 bytes in flight per invocation) ...
      uvec4 q[PIPE];
      [[unroll]] for (uint u = 0; u < PIPE; ++u) {
        const uint j = j0 + u * T;
        q[u] = j < pieces ? w4[wb + j] : uvec4(0);
      }
      // ... then x (L1/L2-resident) and the FMAs. Pieces past the row are zero weights times
      // x's first piece (read, never out of range) rather than a branch per piece.
      [[unroll]] for (uint u = 0; u < PIPE; ++u) {
        const uint j = j0 + u * T;
        const uint jj = j < pieces ? j : 0u;
        vec4 lo, hi;
        widen(p.w_dtype, q[u], lo, hi);
        [[unroll]] for (uint m = 0; m < MAX_M; ++m) {
          if (m >= MM || m >= p.M) break;
          const uint xb = (p.off[0] + m * p.x_stride) / 4u + jj * (per / 4u);
          acc[m] += dot(lo, x4[xb]);
          if (wide) acc[m] += dot(hi, x4[xb + 1u]);
        }
      }
    }
  }
  // The row's T partial sums: a butterfly inside the subgroup (every lane ends with its group's
  // sum), then across the row's subgroups through shared memory.
  const uint NR = MM;
  [[unroll]] for (uint m = 0; m < MAX_M; ++m) {
    if (m >= NR) break;
    [[unroll]] for (uint o = TS / 2u; o > 0u; o >>= 1) acc[m] += subgroupShuffleXor(acc[m], o);
  }
  if (NSUB > 1u) {
    if (gl_SubgroupInvocationID == 0u)
      [[unroll]] for (uint m = 0; m < MAX_M; ++m)
        if (m < NR) part[m][gl_SubgroupID] = acc[m];
    barrier();
    // Every lane of the row takes the total.
    [[unroll]] for (uint m = 0; m < MAX_M; ++m) {
      if (m >= NR) break;
      float s = 0.0;
      const uint first = gl_SubgroupID - (t / TS);  // the row's first subgroup
      for (uint i = 0; i < NSUB; ++i) s += part[m][first + i];
      acc[m] = s;
    }
  }
  if (t == 0u && n < p.N) {
#if CONV
    if (CONV_LATE != 0u)
      [[unroll]] for (uint m = 0; m < MAX_M; ++m)
        if (m < MM && m < p.M && conv) ci[m] = conv_load(m, n);
#endif
    [[unroll]] for (uint m = 0; m < MAX_M; ++m) {
      if (m >= MM || m >= p.M) break;
      y[p.off[3] + m * p.y_stride + n] = acc[m] + bv;
#if CONV
      if (conv) conv_store(m, n, acc[m] + bv, ci[m]);
#endif
    }
  }
#if TAIL
  if (t == 0u && n < p.N) tail_row(n, acc[0] + bv);
  tail_count(gl_LocalInvocationID.x);
#endif
}
#endif  // RW
