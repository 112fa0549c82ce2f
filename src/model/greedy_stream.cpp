#include "model/greedy_stream.h"

#include <algorithm>

#include "core/error.h"

namespace dm {

GreedyStream::GreedyStream(Executor& exec, SequenceState& state, int64_t n_usable, int32_t first,
                           int64_t steps)
    : exec_(exec), state_(state), n_usable_(n_usable), first_(first), steps_(steps) {
  if (steps < 0) fail("[greedy] ", steps, " steps: want 0 or more");
  if (exec.greedy_outstanding() > 0)
    fail("[greedy] ", exec.greedy_outstanding(), " greedy picks enqueued and not taken");
  top_up();
}

GreedyStream::~GreedyStream() {
  try {
    drain();
  } catch (...) {  // already unwinding, or the device failed: nothing more to do here
  }
}

void GreedyStream::top_up() {
  const int unroll = exec_.greedy_unroll();
  // Ahead of the host: at least one recording's picks beyond the one it waits for, so the next
  // recording is queued while the host handles this one's picks.
  while (enqueued_ < steps_ && enqueued_ - taken_ <= unroll &&
         enqueued_ - taken_ + unroll <= Executor::kGreedyAhead) {
    const int n = int(std::min<int64_t>(unroll, steps_ - enqueued_));
    exec_.greedy_enqueue(enqueued_ == 0 ? first_ : -1, state_, n_usable_, n);
    enqueued_ += n;
  }
}

int32_t GreedyStream::next() {
  if (taken_ >= steps_) fail("[greedy] all ", steps_, " picks already taken");
  const int32_t id = exec_.greedy_take();
  ++taken_;
  top_up();
  return id;
}

void GreedyStream::drain() {
  while (taken_ < enqueued_) {
    exec_.greedy_take();
    ++taken_;
  }
}

}  // namespace dm
