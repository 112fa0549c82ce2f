// One backend instance per name for the whole test binary (devices and pipelines are created
// once), destroyed by a GoogleTest environment at the end of the run rather than by static
// destructors: a GPU driver may already be torn down when those run (seen with NVIDIA's
// Vulkan driver: a crash at exit after every test had passed).
#pragma once

#include <string>
#include <vector>

#include "backend/backend.h"

namespace dm::test {

Backend& cached_backend(const std::string& name);

// Whether list_backends() reports `name` available on this machine.
bool backend_available(const std::string& name);
// The available backends other than the CPU oracle, in list_backends() order.
std::vector<std::string> device_backends();

}  // namespace dm::test
