// The CUDA-only API of cuda_graph.h and cuda_timing.h in a binary built without DM_CUDA: every
// entry throws, so code that uses it links everywhere (callers check list_backends() first).
// cuda_profile.h's entries answer as for a backend that is not CUDA's (false, empty).
#include "backend/cuda/cuda_graph.h"
#include "backend/cuda/cuda_profile.h"
#include "backend/cuda/cuda_timing.h"
#include "core/error.h"

namespace dm {
namespace {
[[noreturn]] void absent() {
  fail("[cuda] not built into this binary (configure with DM_CUDA=ON)");
}
}  // namespace

void cuda_graph_begin(Backend&) { absent(); }
std::unique_ptr<CudaGraph> cuda_graph_end(Backend&) { absent(); }
double cuda_time_ms(Backend&, const std::function<void()>&, int, int) { absent(); }
double cuda_loop_time_ms(Backend&, const std::function<void()>&, int, int,
                         const std::function<void()>&) {
  absent();
}
double cuda_copy_bandwidth_gbs(Backend&, size_t) { absent(); }
void cuda_profiler_range(Backend&, const std::function<void()>&) { absent(); }
std::vector<unsigned long long> cuda_decode_block_trace(Backend&) { absent(); }
bool cuda_set_profiling(Backend&, bool) { return false; }
std::vector<ProfileRow> cuda_profile(Backend&) { return {}; }
std::string cuda_profile_table(Backend&) { return ""; }

}  // namespace dm
