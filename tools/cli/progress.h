// A one-line progress bar on stderr for long prefills, fed by Executor's on_progress (layers
// done / total). It draws only when stderr is a terminal, so piped or logged output never
// holds carriage returns or escape codes.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace dmcli {

// Prompts shorter than this finish before a bar would be readable.
constexpr int64_t kProgressMinTokens = 1024;

bool stderr_is_terminal();

class ProgressBar {
 public:
  // `tokens`: the prompt length, for tokens/s. Disabled bars do nothing.
  ProgressBar(std::string label, int64_t tokens, bool enabled);
  ~ProgressBar();  // clears the line if it was drawn
  void update(int done, int total);
  void finish();
  // The Executor callback (empty when disabled, so the executor skips it).
  std::function<void(int, int)> callback();

 private:
  std::string label_;
  int64_t tokens_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_;
};

// A bar when stderr is a terminal, the prompt is long and the user did not ask for quiet.
inline bool want_progress(int64_t tokens, bool quiet) {
  return !quiet && tokens >= kProgressMinTokens && stderr_is_terminal();
}

}  // namespace dmcli
