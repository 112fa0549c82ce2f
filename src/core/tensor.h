// A non-owning 2-D view into a backend buffer. Every tensor the executor hands a kernel is a
// matrix of rows × cols with a row stride, which covers the views Mamba needs (x and z inside
// xz, dt_low / B / C inside x_dbl) without copies. Vectors are 1 × n or n × 1 as stated.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace dm {

// Device memory owned by one backend; only that backend looks inside.
class Buffer {
 public:
  explicit Buffer(size_t bytes) : bytes_(bytes) {}
  virtual ~Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  size_t bytes() const { return bytes_; }

 private:
  size_t bytes_;
};

struct Tensor {
  Buffer* buf = nullptr;
  size_t offset = 0;  // bytes from the start of buf
  DType dtype = DType::F32;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_stride = 0;  // elements between row starts; >= cols

  int64_t numel() const { return rows * cols; }
  bool contiguous() const { return row_stride == cols; }
  // Bytes from offset to one past the last element.
  size_t span_bytes() const {
    return rows == 0 ? 0 : size_t((rows - 1) * row_stride + cols) * dtype_size(dtype);
  }
  // Columns [c0, c0 + n) of every row: same buffer, same row stride.
  Tensor col_slice(int64_t c0, int64_t n) const {
    Tensor t = *this;
    t.offset += size_t(c0) * dtype_size(dtype);
    t.cols = n;
    return t;
  }
  // Rows [r0, r0 + n).
  Tensor row_slice(int64_t r0, int64_t n) const {
    Tensor t = *this;
    t.offset += size_t(r0 * row_stride) * dtype_size(dtype);
    t.rows = n;
    return t;
  }
  std::string describe() const;  // "(rows x cols, stride s, F32)" for error messages
};

inline Tensor make_tensor(Buffer& buf, DType dtype, int64_t rows, int64_t cols, size_t offset = 0) {
  return Tensor{&buf, offset, dtype, rows, cols, cols};
}

}  // namespace dm
