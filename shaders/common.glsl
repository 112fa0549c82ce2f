// Shared by every decimamba compute shader.
//
// Buffers: activations and states are fp32 arrays (`float v[]`). Tensors whose dtype the params
// struct names (weights: F32 / F16 / BF16) are bound as arrays of 32-bit words (`uint v[]`) and
// widened here, so no shader needs 16-bit storage or fp16 arithmetic: F16 via unpackHalf2x16,
// BF16 by shifting its 16 bits into the top of an fp32. Each binding's descriptor range starts
// at a 4-byte-aligned (at least minStorageBufferOffsetAlignment) byte offset and the tensor's
// remaining offset travels as an element offset in the push-constant tail (`off[]`).
#extension GL_EXT_control_flow_attributes : enable

#define DT_F32 0u
#define DT_F16 1u
#define DT_BF16 2u

// Element i (in elements of `dtype`) of word array BUF, from the 32-bit word w holding it.
float word_elem(uint dt, uint i, uint w) {
  if (dt == DT_F32) return uintBitsToFloat(w);
  const uint h = (i & 1u) != 0u ? (w >> 16) : (w & 0xffffu);
  return dt == DT_F16 ? unpackHalf2x16(h).x : uintBitsToFloat(h << 16);
}

// The weights of one 16-byte piece: 8 (F16, BF16: lo holds the first 4) or 4 (F32: lo only).
void widen(uint dtype, uvec4 q, out vec4 lo, out vec4 hi) {
  if (dtype == DT_F32) {
    lo = uintBitsToFloat(q);
    hi = vec4(0.0);
  } else if (dtype == DT_F16) {
    lo = vec4(unpackHalf2x16(q.x), unpackHalf2x16(q.y));
    hi = vec4(unpackHalf2x16(q.z), unpackHalf2x16(q.w));
  } else {  // BF16: element 2i in the low half of word i
    const uvec4 e = q << 16, o = q & 0xffff0000u;
    lo = uintBitsToFloat(uvec4(e.x, o.x, e.y, o.y));
    hi = uintBitsToFloat(uvec4(e.z, o.z, e.w, o.w));
  }
}

// float NAME(uint dtype, uint i): element i (in elements of `dtype`) of word array BUF.
#define DEFINE_LOAD_ANY(NAME, BUF)                      \
  float NAME(uint dt, uint i) {                         \
    if (dt == DT_F32) return uintBitsToFloat(BUF[i]);   \
    return word_elem(dt, i, BUF[i >> 1]);               \
  }

// The same in two halves, so that a run of loads goes out before the first is used: NAME(dt, i)
// loads the 32-bit word holding element i (one load, no branch around it: DEFINE_LOAD_ANY's
// per-dtype branches kept each load waiting for the one before), word_elem decodes it.
#define DEFINE_LOAD_WORD(NAME, BUF) \
  uint NAME(uint dt, uint i) { return BUF[dt == DT_F32 ? i : (i >> 1)]; }

// softplus as torch computes it (threshold 20). log1p(e) by its series where log(1 + e) would
// lose the digits of a small e (Δ is often 1e-3 and below).
float softplus(float x) {
  if (x > 20.0) return x;
  float e = exp(x);
  if (e < 1e-2) return e * (1.0 - e * (0.5 - e * (1.0 / 3.0 - e * 0.25)));
  return log(1.0 + e);
}

float silu(float x) { return x / (1.0 + exp(-x)); }

// An order-preserving 32-bit key of a float: larger value ⇔ larger key; -0 and +0 are one key
// (they compare equal as floats); NaN is key 0, below -inf (no number maps to 0), as the CPU
// backend ranks it. The total order of topk_indices and argmax.
uint order_key(float f) {
  if (isnan(f)) return 0u;
  uint b = f == 0.0 ? 0u : floatBitsToUint(f);
  return (b & 0x80000000u) != 0u ? ~b : (b | 0x80000000u);
}

// Work-group index over a grid the host folded into x, y (and z) to respect
// maxComputeWorkGroupCount: groups are numbered x fastest.
uint linear_group_id() {
  return gl_WorkGroupID.x + gl_NumWorkGroups.x * (gl_WorkGroupID.y + gl_NumWorkGroups.y * gl_WorkGroupID.z);
}
