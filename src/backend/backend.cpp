// Defaults shared by the backends.
#include "backend/backend.h"

namespace dm {

// A device with its own memory needs a copy; host-memory backends override this with a view.
std::unique_ptr<Buffer> Backend::upload_constant(const void* host, size_t bytes) {
  std::unique_ptr<Buffer> buf = alloc(bytes);
  if (bytes > 0) upload(*buf, 0, host, bytes);
  return buf;
}

}  // namespace dm
