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

// A test entry's decode-form settings, "vulkan:block=0:tail=0", "cuda:form=3": each ":key=value"
// sets its variable (block DM_VULKAN_BLOCK_STEP, tail DM_VULKAN_NORM_TAIL, form
// DM_CUDA_DECODE_FORM) until clear_entry_env(). Returns the backend's name (before the first ':').
std::string apply_entry_env(const std::string& entry);
void clear_entry_env();

}  // namespace dm::test
