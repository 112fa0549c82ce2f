// cuda_profile.h on the CUDA backend (its timer: cuda_call_timer.h).
#include "backend/cuda/cuda_profile.h"

#include "backend/cuda/cuda_backend.h"

namespace dm {

bool cuda_set_profiling(Backend& backend, bool on) {
  auto* c = dynamic_cast<CudaBackend*>(&backend);
  if (!c) return false;
  c->set_profiling(on);
  return true;
}

std::vector<ProfileRow> cuda_profile(Backend& backend) {
  auto* c = dynamic_cast<CudaBackend*>(&backend);
  return c ? c->profile() : std::vector<ProfileRow>{};
}

std::string cuda_profile_table(Backend& backend) {
  return format_profile_table(cuda_profile(backend));
}

}  // namespace dm
