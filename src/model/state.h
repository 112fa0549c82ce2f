// The recurrent state of one sequence: for every layer the conv window (d_inner × d_conv, the
// last d_conv inputs of the conv, oldest first) and the SSM state (d_inner × d_state), fp32, on
// the backend. It is all a Mamba needs to continue a sequence; save()/load() move it to the host.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "model/config.h"

namespace dm {

class SequenceState {
 public:
  SequenceState(Backend& backend, const ModelConfig& cfg);
  void reset();  // zeros: a fresh sequence

  Tensor conv(int layer) const;  // d_inner × d_conv
  Tensor ssm(int layer) const;   // d_inner × d_state
  int64_t tokens_seen = 0;       // original positions consumed (prompt + generated)

  // Host copies, layer-major: conv states of all layers, then ssm states of all layers.
  std::vector<float> save() const;
  void load(const std::vector<float>& host);

 private:
  Backend& backend_;
  int64_t n_layer_, d_inner_, d_conv_, d_state_;
  std::unique_ptr<Buffer> conv_, ssm_;
};

}  // namespace dm
