// The sum of a work group's per-invocation values (rms_norm.comp's sum of squares; mamba_step.comp
// recomputes that norm): a tree over shared memory, the same pairs in the same order everywhere,
// so every shader that sums a row this way gets the same bits. Needs, before the #include, the
// work-group size WG (a power of two) and `shared float partial[WG]`.
float row_sum(uint tid, float v) {
  partial[tid] = v;
  barrier();
  for (uint s = WG / 2; s > 0; s >>= 1) {
    if (tid < s) partial[tid] += partial[tid + s];
    barrier();
  }
  return partial[0];
}
