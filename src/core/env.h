// Switches read from the environment (DM_* variables that pick between forms of a kernel).
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>

#include "core/error.h"

namespace dm {

// The position in `values` of environment variable `var`'s value; unset or empty: 0 (the first
// value is the default). Any other value fails with one line naming it, e.g.
// "[cuda] DM_CUDA_ARGMAX=fast: want grid or block". Read per call: switches apply at once.
inline size_t env_choice(const char* who, const char* var,
                         std::initializer_list<const char*> values) {
  const char* e = std::getenv(var);
  if (!e || !*e) return 0;
  size_t i = 0;
  std::string want;
  for (const char* v : values) {
    if (std::strcmp(e, v) == 0) return i;
    want += (i == 0 ? "" : i + 1 == values.size() ? " or " : ", ") + std::string(v);
    ++i;
  }
  fail("[", who, "] ", var, "=", e, ": want ", want);
}

// Environment variable `var` as an integer in [lo, hi]; unset or empty: `fallback`. Anything
// else fails with one line, e.g. "[executor] DM_GREEDY_UNROLL=9: want 1 to 8".
inline long env_int(const char* who, const char* var, long lo, long hi, long fallback) {
  const char* e = std::getenv(var);
  if (!e || !*e) return fallback;
  char* end = nullptr;
  const long n = std::strtol(e, &end, 10);
  if (*end != '\0' || n < lo || n > hi) fail("[", who, "] ", var, "=", e, ": want ", lo, " to ", hi);
  return n;
}

}  // namespace dm
