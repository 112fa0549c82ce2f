// Errors at the edges (dm::Error, one line, bracket-prefixed: "[safetensors] ...") and
// invariants inside (DM_ASSERT, which throws rather than aborts so a CLI can still print one line).
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace dm {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
inline void concat(std::ostringstream&) {}
template <typename T, typename... Rest>
void concat(std::ostringstream& os, const T& first, const Rest&... rest) {
  os << first;
  concat(os, rest...);
}
}  // namespace detail

// fail("[config] ", path, ": missing key ", key) throws dm::Error with the pieces concatenated.
template <typename... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  std::ostringstream os;
  detail::concat(os, parts...);
  throw Error(os.str());
}

}  // namespace dm

#define DM_ASSERT(cond, ...)                                                          \
  do {                                                                                \
    if (!(cond)) ::dm::fail("[internal] ", __FILE__, ":", __LINE__, ": assertion `", \
                            #cond, "` failed. " __VA_OPT__(, ) __VA_ARGS__);          \
  } while (0)
