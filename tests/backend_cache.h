// One backend instance per name for the whole test binary (devices and pipelines are created
// once), destroyed by a GoogleTest environment at the end of the run rather than by static
// destructors: a GPU driver may already be torn down when those run (seen with NVIDIA's
// Vulkan driver: a crash at exit after every test had passed).
#pragma once

#include <string>

#include "backend/backend.h"

namespace dm::test {

Backend& cached_backend(const std::string& name);

}  // namespace dm::test
