#include "progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace dmcli {

bool stderr_is_terminal() { return isatty(STDERR_FILENO) == 1; }

ProgressBar::ProgressBar(std::string label, int64_t tokens, bool enabled)
    : label_(std::move(label)),
      tokens_(tokens),
      enabled_(enabled),
      start_(std::chrono::steady_clock::now()) {}

ProgressBar::~ProgressBar() { finish(); }

void ProgressBar::update(int done, int total) {
  if (!enabled_ || total <= 0) return;
  if (done == 0) start_ = std::chrono::steady_clock::now();  // the work starts now
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double frac = double(done) / double(total);
  constexpr int kWidth = 30;
  const int fill = int(frac * kWidth);
  std::string bar(size_t(fill), '#');
  bar.resize(kWidth, ' ');
  // Layers take similar time at full width, so layer progress stands in for token progress.
  const double tok_s = elapsed > 0 ? double(tokens_) * frac / elapsed : 0;
  const double eta = done > 0 ? elapsed * double(total - done) / double(done) : NAN;
  char eta_text[32] = "?";
  if (!std::isnan(eta)) std::snprintf(eta_text, sizeof eta_text, eta < 10 ? "%.1fs" : "%.0fs", eta);
  std::fprintf(stderr, "\r\x1b[2K%s [%s] %d/%d layers  %.0f tok/s  ETA %s", label_.c_str(),
               bar.c_str(), done, total, tok_s, eta_text);
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressBar::finish() {
  if (drawn_) {
    std::fprintf(stderr, "\r\x1b[2K");
    std::fflush(stderr);
    drawn_ = false;
  }
}

std::function<void(int, int)> ProgressBar::callback() {
  if (!enabled_) return {};
  return [this](int done, int total) { update(done, total); };
}

}  // namespace dmcli
