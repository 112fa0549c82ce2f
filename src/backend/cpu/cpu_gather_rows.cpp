// dst[i,:] = src[idx[i],:] as fp32. The indices are checked first, so a bad one throws before
// anything is written.
#include "backend/cpu/cpu_kernels.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/thread_pool.h"

namespace dm::cpu {

void gather_rows(const GatherRowsParams& p, const void* src, const int32_t* idx, float* dst) {
  for (uint32_t i = 0; i < p.n; ++i) {
    if (idx[i] < 0 || uint32_t(idx[i]) >= p.src_rows)
      fail("[gather_rows] idx[", i, "] = ", idx[i], " is outside [0, ", p.src_rows,
           ") (src rows)");
  }
  const DType dt = DType(p.src_dtype);
  const size_t esize = dtype_size(dt);
  parallel_for(p.n, 64, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const void* row = static_cast<const char*>(src) + size_t(idx[i]) * p.src_stride * esize;
      float* d = dst + i * p.dst_stride;
      for (uint32_t c = 0; c < p.cols; ++c) d[c] = load_as_f32(row, dt, c);
    }
  });
}

}  // namespace dm::cpu
