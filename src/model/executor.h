// The forward pass of a Mamba-1 model on one backend, with DeciMamba decimation in prefill.
// prefill() runs a prompt through every layer at full width (shortened at decimating layers)
// and leaves the sequence's recurrent state ready for step(), which runs one token.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "model/decimation.h"
#include "model/state.h"
#include "model/weights.h"

namespace dm {

// Observes a prefill, for tests and diagnostics. Tensors are valid only during the call; read
// them with Backend::download.
struct PrefillTap {
  virtual ~PrefillTap() = default;
  // After layer `layer`: the residual stream leaving the block = residual_in + mixer_out
  // (both L_out × d_model; L_out is shorter than the input at a decimating layer).
  virtual void on_layer(int layer, const Tensor& residual_in, const Tensor& mixer_out) {}
  // At a decimating layer: kept positions within the layer's input (L_out × 1 I32), ascending.
  virtual void on_kept(int layer, const Tensor& kept) {}
  // Per-layer inputs of the scan, for diagnostics (erf): all L_out rows.
  virtual void on_scan_inputs(int layer, const Tensor& u, const Tensor& delta, const Tensor& B,
                              const Tensor& C) {}
};

struct PrefillOptions {
  int64_t n_logits = 1;       // logits of the last n positions are returned
  int64_t protect_tail = -1;  // tokens never decimated; -1: n_logits
  PrefillTap* tap = nullptr;
  // Called after each layer with (layers done, n_layer); the CLI draws its progress bar from it.
  std::function<void(int, int)> on_progress;
};

class Executor {
 public:
  // Uploads the weights once. Throws dm::Error if the backend cannot run them.
  Executor(Backend& backend, const Model& model, DecimationConfig decimation = {});
  ~Executor();

  const ModelConfig& config() const { return config_; }
  const DecimationConfig& decimation() const { return decimation_; }
  void set_decimation(DecimationConfig d);
  Backend& backend() { return backend_; }

  std::unique_ptr<SequenceState> new_state() const;

  // tokens: the prompt (≥ 1 id). Continues from `state` (zeros for a new sequence).
  // Returns n_logits × padded_vocab fp32 logits, row-major.
  std::vector<float> prefill(const std::vector<int32_t>& tokens, SequenceState& state,
                             const PrefillOptions& opts = {});
  // One token; returns padded_vocab logits. Never decimates. Where the backend records
  // (Backend::record: CUDA graphs, Vulkan command buffers) the step's kernels are recorded on
  // first use for this SequenceState and this executor's step buffers, and replayed after that:
  // upload the token id, replay, download the logits. A recording whose buffers were freed (the
  // state destroyed, a buffer reallocated) is dropped and made again.
  std::vector<float> step(int32_t token, SequenceState& state);
  // The same into `logits` (resized to padded_vocab; a vector reused from step to step is
  // neither reallocated nor zero-filled again).
  void step(int32_t token, SequenceState& state, std::vector<float>& logits);
  // A greedy step: step(token), then the largest of the first n_usable logits (ties: the lower
  // id; NaN below every number, text/sampler.h's argmax) picked on the device (Backend::argmax),
  // so only the id is downloaded. A step given the id the previous greedy step returned skips
  // its upload (the pick is already where the step reads it). Recorded separately from step().
  int32_t step_greedy(int32_t token, SequenceState& state, int64_t n_usable);
  // Greedy decoding run ahead of the host (generation and `bench --pick greedy` use it, through
  // GreedyStream): greedy_enqueue enqueues `steps` greedy steps, the first fed `token`, or with
  // token = -1 fed the pick of the greedy step enqueued just before (on the device: the host need
  // not know it yet), each later one fed the pick of the one before it; it returns at once.
  // greedy_take returns the oldest pick not yet taken, waiting for it (Backend::download_start /
  // download_wait). So the next steps are on their way while the host handles a pick, and the
  // device does not idle between tokens. Steps are recorded and replayed greedy_unroll() at a
  // time (one recording of that many steps, their picks downloaded together), the rest of a call
  // in one shorter recording: on Vulkan a replay's submit costs ~26 µs a boundary (H200). At most
  // kGreedyAhead picks outstanding; a step enqueued ahead that is not wanted (an end-of-text
  // pick) still advances the state.
  static constexpr int kGreedyAhead = 16;
  static constexpr int kGreedyUnrollMax = 8;
  static_assert(kGreedyAhead <= Backend::kAsyncDownloadsOutstanding, "a download per pick at most");
  void greedy_enqueue(int32_t token, SequenceState& state, int64_t n_usable, int steps = 1);
  int32_t greedy_take();
  int64_t greedy_outstanding() const;  // picks enqueued and not yet returned by greedy_take
  // Greedy steps per recording, 1 to kGreedyUnrollMax; DM_GREEDY_UNROLL sets it for new
  // executors (default 4).
  int greedy_unroll() const { return greedy_unroll_; }
  void set_greedy_unroll(int steps);

  // Replay on (default) or off (every step enqueued kernel by kernel, as the CPU always does).
  // DM_DECODE_REPLAY=0 in the environment turns it off for new executors.
  void set_step_replay(bool on);
  bool step_replay() const { return step_replay_; }
  struct StepStats {
    int64_t eager = 0, recorded = 0, replayed = 0;  // steps by path; recordings made
  };
  const StepStats& step_stats() const { return step_stats_; }

  // The kernels step() runs for `state`, without its transfers: the token id is read from the
  // device buffer step() uploads to (the last token given to step(); call step() once first) and
  // the logits stay on the device. For benchmarks that time or record exactly what step() runs.
  // Advances the state like step(), but not tokens_seen. greedy_n > 0: with the greedy pick
  // over the first greedy_n logits at the end (what greedy_enqueue records), into the token id.
  void enqueue_step_kernels(SequenceState& state, int64_t greedy_n = -1);

  // Lengths each layer sees for a prompt of L tokens (output length of each layer).
  std::vector<int64_t> layer_lengths(int64_t L, int64_t protect_tail) const;

 private:
  // A greedy step's n_usable (the logits the pick ranges over) in [1, padded vocab], or fail.
  void check_greedy_n(int64_t n_usable) const;
  struct DeviceWeights;
  struct StepTensors;
  StepTensors step_tensors();
  // greedy_n > 0: the step ends with argmax over the first greedy_n logits into t.pick.
  void enqueue_step(const StepTensors& t, SequenceState& state, int64_t greedy_n);
  // `steps` steps in a row (more than one: greedy only), each fed the pick of the one before.
  void enqueue_steps(const StepTensors& t, SequenceState& state, int64_t greedy_n, int steps);
  // Uploads the id (unless the step buffer holds it), records or replays `steps` steps,
  // advances tokens_seen. The picks of greedy steps end in t.picks's last `steps` rows.
  StepTensors run_steps(int32_t token, SequenceState& state, int64_t greedy_n, int steps);

  Backend& backend_;
  bool step_replay_ = true;
  int64_t ids_hold_ = -1;     // the token id in the step's id slot; -1: not known
  bool ids_hold_pick_ = false;  // it holds the pick of the last greedy step enqueued
  int greedy_unroll_ = 4;
  struct PendingPicks {
    uint64_t ticket;  // Backend::download_start's
    int count;        // picks it downloads, in step order
  };
  std::deque<PendingPicks> pending_picks_;  // greedy_enqueue's downloads, oldest first
  std::deque<int32_t> taken_picks_;  // downloaded, not yet returned by greedy_take
  StepStats step_stats_;
  ModelConfig config_;
  DecimationConfig decimation_;
  std::unique_ptr<DeviceWeights> w_;
};

}  // namespace dm
