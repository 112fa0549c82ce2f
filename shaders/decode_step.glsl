// What the decode GEMV shaders share (gemv.comp's and gemv_sg.comp's gemm.*_conv,
// mamba_step.comp's A): the decode conv step of one channel. (Widening a 16-byte piece of
// weights is common.glsl's widen.)
//
// The conv step needs, declared before the #include: the buffers conv_state (float, read and
// written), conv_w and conv_b (uint words), load_conv_w_word / load_conv_b_word
// (DEFINE_LOAD_WORD), and the constant MAX_D_CONV (the host sends larger d_conv elsewhere);
// define DECODE_CONV_STEP.

#ifdef DECODE_CONV_STEP
// A channel's decode conv step in two halves: conv_step_load issues every load (the state's
// last d_conv - 1 taps at sb, the weights at wb, the bias at bo), conv_step_store shifts in the
// value just computed, stores the state and returns SiLU of the dot product. The GEMV shaders
// load before their weight loop, so the conv adds no memory round trip at the work group's tail.
// (Loads after a store to a buffer that might alias them cannot be hoisted: interleaved, each
// tap would pay a round trip.) The arithmetic is that of causal_conv1d_step.
struct ConvIn {
  float s[MAX_D_CONV];
  uint w[MAX_D_CONV], b;  // words holding the weights and the bias (word_elem decodes them)
  uint wb, bo, w_dtype, b_dtype;
  bool has_bias;
};
ConvIn conv_step_load(uint sb, uint wb, uint bo, uint d_conv, uint w_dtype, uint b_dtype,
                 bool has_bias) {
  ConvIn r;
  [[unroll]] for (uint k = 0; k < MAX_D_CONV; ++k) {
    r.s[k] = k + 1 < d_conv ? conv_state[sb + k + 1] : 0.0;
    r.w[k] = k < d_conv ? load_conv_w_word(w_dtype, wb + k) : 0u;
  }
  r.b = has_bias ? load_conv_b_word(b_dtype, bo) : 0u;
  r.wb = wb, r.bo = bo, r.w_dtype = w_dtype, r.b_dtype = b_dtype, r.has_bias = has_bias;
  return r;
}
float conv_step_store(uint sb, uint d_conv, float xv, ConvIn r) {
  [[unroll]] for (uint k = 0; k < MAX_D_CONV; ++k)
    if (k + 1 == d_conv) r.s[k] = xv;
  float acc = r.has_bias ? word_elem(r.b_dtype, r.bo, r.b) : 0.0;
  [[unroll]] for (uint k = 0; k < MAX_D_CONV; ++k) {
    if (k < d_conv) {
      acc = fma(word_elem(r.w_dtype, r.wb + k, r.w[k]), r.s[k], acc);
      conv_state[sb + k] = r.s[k];
    }
  }
  return silu(acc);
}
#endif
