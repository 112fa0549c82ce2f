// Greedy picks streamed from the device: the steps that make them enqueued ahead of the host,
// greedy_unroll() steps a recording, so the device never waits for the host between tokens and
// a Vulkan submit is paid once per recording, not once per token. What generation and
// `decimamba bench --pick greedy` run.
#pragma once

#include <cstdint>

#include "model/executor.h"

namespace dm {

class GreedyStream {
 public:
  // `steps` greedy steps for `state`, the first fed `first` (a token id the host picked), each
  // later one the pick of the one before, over the first n_usable logits. Enqueues the first
  // ones at once (up to twice the unroll: while the host waits for one recording's picks, the
  // next recording runs). The executor must have no greedy picks outstanding.
  GreedyStream(Executor& exec, SequenceState& state, int64_t n_usable, int32_t first,
               int64_t steps);
  // Waits for the picks not taken: the state has then advanced by every step enqueued.
  ~GreedyStream();
  GreedyStream(const GreedyStream&) = delete;
  GreedyStream& operator=(const GreedyStream&) = delete;

  // The next pick, in step order; enqueues more steps as picks are taken. At most `steps` calls.
  int32_t next();
  // Steps enqueued so far (a step enqueued ahead whose pick is never taken still advanced the
  // state), and picks returned by next().
  int64_t enqueued() const { return enqueued_; }
  int64_t taken() const { return taken_; }
  // Takes the picks still outstanding (also what the destructor does; this one may throw).
  void drain();

 private:
  void top_up();  // enqueue whole recordings while fewer than one recording's picks are ahead
  Executor& exec_;
  SequenceState& state_;
  int64_t n_usable_;
  int32_t first_;
  int64_t steps_, enqueued_ = 0, taken_ = 0;
};

}  // namespace dm
