// The list of backends this binary was built with. The only #ifdefs about which backends exist
// live here: a GPU backend, when its CMake option is on, compiles its folder and defines
// DM_HAVE_VULKAN / DM_HAVE_CUDA, and provides the two functions declared below.
#include <functional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "core/error.h"

namespace dm {

#ifdef DM_HAVE_VULKAN
// In src/backend/vulkan/: whether a usable device exists (detail = its name, or the reason
// not), and the backend on device `device`.
BackendInfo probe_vulkan_backend();
std::unique_ptr<Backend> create_vulkan_backend(int device);
#endif
#ifdef DM_HAVE_CUDA
// In src/backend/cuda/: as above.
BackendInfo probe_cuda_backend();
std::unique_ptr<Backend> create_cuda_backend(int device);
#endif

namespace {

struct Entry {
  std::string name;
  std::function<BackendInfo()> probe;
  std::function<std::unique_ptr<Backend>(int)> create;  // empty when not built
};

// Used only where a backend is configured out (the #else branches below).
[[maybe_unused]] BackendInfo not_built(const std::string& name, const std::string& option) {
  return {name, false, "not built into this binary (configure with " + option + "=ON)"};
}

// In order of preference for "auto": fastest first.
std::vector<Entry> entries() {
  std::vector<Entry> e;
#ifdef DM_HAVE_CUDA
  e.push_back({"cuda", probe_cuda_backend, create_cuda_backend});
#else
  e.push_back({"cuda", [] { return not_built("cuda", "DM_CUDA"); }, nullptr});
#endif
#ifdef DM_HAVE_VULKAN
  e.push_back({"vulkan", probe_vulkan_backend, create_vulkan_backend});
#else
  e.push_back({"vulkan", [] { return not_built("vulkan", "DM_VULKAN"); }, nullptr});
#endif
  e.push_back({"cpu", [] { return BackendInfo{"cpu", true, cpu_device_name()}; },
               [](int device) { return create_cpu_backend(device); }});
  return e;
}

}  // namespace

std::vector<BackendInfo> list_backends() {
  std::vector<BackendInfo> out;
  for (const Entry& e : entries()) out.push_back(e.probe());
  return out;
}

std::unique_ptr<Backend> create_backend(const std::string& name, int device) {
  const std::vector<Entry> all = entries();
  if (name == "auto") {
    // A GPU API running on the CPU (lavapipe) is slower than the CPU backend itself.
    for (const Entry& e : all) {
      if (!e.create) continue;
      const BackendInfo info = e.probe();
      if (info.available && !info.software) return e.create(device);
    }
    fail("[backend] auto: no backend is available");  // unreachable while cpu is built in
  }
  std::string valid = "auto";
  for (const Entry& e : all) {
    if (e.name != name) {
      valid += ", " + e.name;
      continue;
    }
    const BackendInfo info = e.probe();
    if (!e.create || !info.available) fail("[backend] ", name, ": ", info.detail);
    return e.create(device);
  }
  fail("[backend] unknown backend '", name, "': expected one of ", valid);
}

}  // namespace dm
