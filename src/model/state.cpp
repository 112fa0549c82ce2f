#include "model/state.h"

#include "core/error.h"

namespace dm {

SequenceState::SequenceState(Backend& backend, const ModelConfig& cfg)
    : backend_(backend),
      n_layer_(cfg.n_layer),
      d_inner_(cfg.d_inner),
      d_conv_(cfg.d_conv),
      d_state_(cfg.d_state) {
  conv_ = backend_.alloc(size_t(n_layer_ * d_inner_ * d_conv_) * sizeof(float));
  ssm_ = backend_.alloc(size_t(n_layer_ * d_inner_ * d_state_) * sizeof(float));
  reset();
}

void SequenceState::reset() {
  load(std::vector<float>(size_t(n_layer_ * d_inner_ * (d_conv_ + d_state_)), 0.f));
  tokens_seen = 0;
}

Tensor SequenceState::conv(int layer) const {
  DM_ASSERT(layer >= 0 && layer < n_layer_);
  return make_tensor(*conv_, DType::F32, d_inner_, d_conv_,
                     size_t(layer * d_inner_ * d_conv_) * sizeof(float));
}

Tensor SequenceState::ssm(int layer) const {
  DM_ASSERT(layer >= 0 && layer < n_layer_);
  return make_tensor(*ssm_, DType::F32, d_inner_, d_state_,
                     size_t(layer * d_inner_ * d_state_) * sizeof(float));
}

std::vector<float> SequenceState::save() const {
  const size_t nc = size_t(n_layer_ * d_inner_ * d_conv_), ns = size_t(n_layer_ * d_inner_ * d_state_);
  std::vector<float> host(nc + ns);
  backend_.download(*conv_, 0, host.data(), nc * sizeof(float));
  backend_.download(*ssm_, 0, host.data() + nc, ns * sizeof(float));
  return host;
}

void SequenceState::load(const std::vector<float>& host) {
  const size_t nc = size_t(n_layer_ * d_inner_ * d_conv_), ns = size_t(n_layer_ * d_inner_ * d_state_);
  if (host.size() != nc + ns)
    fail("[state] saved state has ", host.size(), " floats, this model needs ", nc + ns);
  backend_.upload(*conv_, 0, host.data(), nc * sizeof(float));
  backend_.upload(*ssm_, 0, host.data() + nc, ns * sizeof(float));
}

}  // namespace dm
