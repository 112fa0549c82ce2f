// Host memory for the CPU backend: either owned (64-byte aligned, zero-filled) or a read-only
// view of memory the caller keeps alive (weights in a memory-mapped file), which costs no copy.
#pragma once

#include <cstddef>

#include "core/tensor.h"

namespace dm {

class HostBuffer : public Buffer {
 public:
  // Owned, zero-filled.
  explicit HostBuffer(size_t bytes);
  // A read-only view of [data, data + bytes); the caller keeps it alive.
  HostBuffer(const void* data, size_t bytes);
  ~HostBuffer() override;

  std::byte* data() { return data_; }
  const std::byte* data() const { return data_; }
  bool read_only() const { return !owned_; }

 private:
  std::byte* data_;
  bool owned_;
};

}  // namespace dm
