// Helpers for tests that compare against the Hugging Face reference fixtures in
// tests/data/models/<name>/reference.safetensors (see tools/reference/README.md).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/safetensors.h"
#include "test_paths.h"

namespace dm::test {


// Model directories that carry a reference.safetensors, sorted by name.
inline std::vector<std::string> fixture_models() {
  std::vector<std::string> out;
  const std::filesystem::path root = std::filesystem::path(data_dir()) / "models";
  if (!std::filesystem::exists(root)) return out;
  for (const auto& e : std::filesystem::directory_iterator(root))
    if (std::filesystem::exists(e.path() / "reference.safetensors")) out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

inline std::vector<float> as_floats(const HostTensor& t) {
  std::vector<float> v(size_t(t.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = load_as_f32(t.data, t.dtype, i);
  return v;
}

inline std::vector<int32_t> as_ints(const HostTensor& t) {
  std::vector<int32_t> v(size_t(t.numel()));
  std::memcpy(v.data(), t.data, v.size() * sizeof(int32_t));
  return v;
}

// ‖a − b‖₂ / ‖b‖₂ in double; infinite when sizes differ or a value is not finite.
inline double rel_error(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    const double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(b[i]) * double(b[i]);
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

inline double rel_error(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() ? rel_error(a.data(), b.data(), a.size()) : INFINITY;
}

}  // namespace dm::test
