#include "backend/cpu/host_buffer.h"

#include <cstring>
#include <new>

namespace dm {

namespace {
constexpr std::align_val_t kAlign{64};  // one cache line; also what AVX-512 loads like
}

HostBuffer::HostBuffer(size_t bytes)
    : Buffer(bytes),
      data_(static_cast<std::byte*>(::operator new(bytes == 0 ? 1 : bytes, kAlign))),
      owned_(true) {
  // Zeroed so that a kernel reading memory nobody wrote gives the same answer every run.
  std::memset(data_, 0, bytes);
}

HostBuffer::HostBuffer(const void* data, size_t bytes)
    : Buffer(bytes), data_(static_cast<std::byte*>(const_cast<void*>(data))), owned_(false) {}

HostBuffer::~HostBuffer() {
  if (owned_) ::operator delete(data_, kAlign);
}

}  // namespace dm
