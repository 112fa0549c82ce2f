// CUDA graphs for decode: the kernels a Backend enqueues between begin and end are recorded once
// and replayed per token, so a step costs one launch instead of ~10 per layer. Vendor-free, so
// shared code (benchmarks, tests, later the executor) can use it through Backend&.
//
// While recording, nothing runs: upload(), download(), synchronize() and alloc() throw (inputs
// are written before replay(), outputs read after). The recorded work reads and writes the same
// buffers on every replay.
#pragma once

#include <memory>

#include "backend/backend.h"

namespace dm {

class CudaGraph {
 public:
  virtual ~CudaGraph() = default;
  virtual void replay() = 0;  // enqueues the recorded work on the backend's stream
};

// Throws dm::Error unless `backend` is the cuda backend.
void cuda_graph_begin(Backend& backend);
std::unique_ptr<CudaGraph> cuda_graph_end(Backend& backend);

}  // namespace dm
