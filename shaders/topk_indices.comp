#version 450
// The k highest scores among the first n_candidates (ties: the lower index wins), written in
// ascending position order, then the protected tail n_candidates .. L-1. One work group:
//  1. radix select, 8 bits at a time over an order-preserving 32-bit key, finds the k-th
//     highest key T and how many keys equal to T are taken (`take`, the first ones by index);
//  2. compaction in blocks of WG·E positions: each invocation counts its E keys above T and
//     equal to T, one shared-memory exclusive scan of the packed counts gives its output slot.
// O(L) reads (4 + 1 passes) whatever k is.
#include "common.glsl"

layout(constant_id = 0) const uint WG = 256;
layout(local_size_x_id = 0) in;
const uint E = 16;  // positions per invocation per block; WG·E < 65536 so counts pack in 16 bits

layout(std430, binding = 0) readonly buffer Scores { float scores[]; };
layout(std430, binding = 1) writeonly buffer Idx { int idx[]; };

layout(push_constant) uniform Push {
  uint L, n_candidates, k;
  uint off[2];  // scores, idx
} p;

shared uint hist[256];
shared uint s_prefix, s_mask, s_remaining;
shared uint scan_buf[WG];
shared uint s_base_gt, s_base_eq;  // keys above / equal to T in earlier blocks

// common.glsl's order_key of score i.
uint key_of(uint i) { return order_key(scores[p.off[0] + i]); }

void main() {
  const uint tid = gl_LocalInvocationID.x;
  const uint nc = p.n_candidates;

  // Protected tail.
  for (uint j = tid; j < p.L - nc; j += WG) idx[p.off[1] + p.k + j] = int(nc + j);
  if (p.k == 0) return;

  if (tid == 0) { s_prefix = 0; s_mask = 0; s_remaining = p.k; }
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (uint b = tid; b < 256; b += WG) hist[b] = 0;
    barrier();
    const uint prefix = s_prefix, mask = s_mask;
    for (uint i = tid; i < nc; i += WG) {
      const uint key = key_of(i);
      if ((key & mask) == prefix) atomicAdd(hist[(key >> uint(shift)) & 255u], 1u);
    }
    barrier();
    if (tid == 0) {
      uint above = 0, rem = s_remaining;
      for (int d = 255; d >= 0; --d) {
        const uint cnt = hist[d];
        if (above + cnt >= rem) {
          s_prefix = prefix | (uint(d) << uint(shift));
          s_remaining = rem - above;
          break;
        }
        above += cnt;
      }
      s_mask = mask | (255u << uint(shift));
    }
    barrier();
  }
  const uint T = s_prefix, take = s_remaining;  // take ≥ 1 keys equal to T, first by index

  if (tid == 0) { s_base_gt = 0; s_base_eq = 0; }
  barrier();
  for (uint blk = 0; blk < nc; blk += WG * E) {
    const uint i0 = blk + tid * E;
    uint gt = 0, eq = 0;
    for (uint e = 0; e < E; ++e) {
      const uint i = i0 + e;
      if (i < nc) {
        const uint key = key_of(i);
        gt += key > T ? 1u : 0u;
        eq += key == T ? 1u : 0u;
      }
    }
    const uint mine = (gt << 16) | eq;
    scan_buf[tid] = mine;
    barrier();
    // Hillis-Steele inclusive scan of the packed counts.
    for (uint s = 1; s < WG; s <<= 1) {
      const uint v = tid >= s ? scan_buf[tid - s] : 0u;
      barrier();
      scan_buf[tid] += v;
      barrier();
    }
    const uint excl = scan_buf[tid] - mine;
    const uint base_gt = s_base_gt, base_eq = s_base_eq;
    uint eq_seen = base_eq + (excl & 0xffffu);
    uint out_pos = base_gt + (excl >> 16) + min(eq_seen, take);
    for (uint e = 0; e < E; ++e) {
      const uint i = i0 + e;
      if (i >= nc) break;
      const uint key = key_of(i);
      if (key > T) {
        idx[p.off[1] + out_pos++] = int(i);
      } else if (key == T) {
        if (eq_seen < take) idx[p.off[1] + out_pos++] = int(i);
        ++eq_seen;
      }
    }
    barrier();  // everyone has read s_base_* and scan_buf
    if (tid == WG - 1) {
      const uint tot = scan_buf[WG - 1];
      s_base_gt = base_gt + (tot >> 16);
      s_base_eq = base_eq + (tot & 0xffffu);
    }
    barrier();
  }
}
