// The backend-vs-CPU test harness (after ggml's test-backend-ops), shared by test_backend_ops
// and test_fused_step: a Case holds tensors with the same bytes on the CPU backend (the oracle)
// and on the backend under test, each in its own buffer with padding around it, and check()
// compares them.
//
// Every tensor lives in its own buffer: a few lead elements (kLead by default, so offsets are
// not 16-byte aligned and 16-bit tensors start at odd elements; align16() / set_lead() change
// it for the tensors added next), the rows at their stride, then a tail. Padding (lead, row
// gaps, tail) holds NaN in inputs (a kernel that reads it produces NaN) and a sentinel in
// outputs; after the kernel every padding byte must be unchanged and every input byte too.
// Outputs start as the sentinel, so an element a kernel forgets to write fails.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend_cache.h"
#include "core/dtype.h"

namespace dm::test {

constexpr int64_t kLead = 3;   // elements before each tensor
constexpr int64_t kTail = 37;  // elements after
constexpr float kSentinel = -1234.5f;

struct Backends {
  Backend* cpu;
  Backend* dev;
};

// The CPU oracle and the backend under test, created once for the whole binary.
inline Backends backends(const std::string& name) {
  return {&cached_backend("cpu"), &cached_backend(name)};
}

// Writes v as dtype dt; returns what a kernel reads back.
inline float store(DType dt, uint8_t* p, float v) {
  switch (dt) {
    case DType::F32: std::memcpy(p, &v, 4); return v;
    case DType::F16: { const uint16_t h = f32_to_f16(v); std::memcpy(p, &h, 2); return f16_to_f32(h); }
    case DType::BF16: { const uint16_t h = f32_to_bf16(v); std::memcpy(p, &h, 2); return bf16_to_f32(h); }
    case DType::I32: { const int32_t i = int32_t(v); std::memcpy(p, &i, 4); return float(i); }
  }
  return 0.f;
}

// Scratch: a buffer the call may overwrite with anything (its elements are not compared; its
// padding is checked like every buffer's).
// Weight: an input uploaded with upload_constant, as the model's weights are (read-only, so a
// backend may keep copies derived from it: CUDA's K-concatenated GEMM weights).
enum class Role { In, Weight, Out, InOut, Scratch };
inline bool is_input(Role r) { return r == Role::In || r == Role::Weight; }

// A tensor with the same bytes on the CPU backend and on the device backend.
struct Arg {
  std::string name;
  Role role;
  DType dtype;
  int64_t rows, cols, stride;
  int64_t lead = kLead;        // elements before the tensor
  std::vector<uint8_t> image;  // the whole buffer as uploaded
  std::unique_ptr<Buffer> cpu_buf, dev_buf;

  size_t es() const { return dtype_size(dtype); }
  size_t elem_pos(int64_t r, int64_t c) const { return size_t(lead + r * stride + c); }
  Tensor view(Buffer& b) const { return Tensor{&b, size_t(lead) * es(), dtype, rows, cols, stride}; }
  Tensor cpu() const { return view(*cpu_buf); }
  Tensor dev() const { return view(*dev_buf); }
};

using Gen = std::function<float(int64_t r, int64_t c)>;

class Case {
 public:
  Case(const std::string& backend, std::string desc, uint32_t seed)
      : Case(backends(backend), backend, std::move(desc), seed) {}
  Case(Backends be, const std::string& backend, std::string desc, uint32_t seed)
      : be_(be), desc_(backend + " (" + be_.dev->device_name() + "): " + std::move(desc)),
        rng_(seed) {}

  const std::string& desc() const { return desc_; }
  std::mt19937& rng() { return rng_; }
  Backend& cpu() { return *be_.cpu; }
  Backend& dev() { return *be_.dev; }

  // Uniform in ±[lo, hi]: never zero.
  Gen nonzero(float lo, float hi) {
    return [this, lo, hi](int64_t, int64_t) {
      std::uniform_real_distribution<float> mag(lo, hi);
      const float v = mag(rng_);
      return (rng_() & 1) ? v : -v;
    };
  }
  // Tensors added from now on start 16 bytes into their buffer instead of kLead elements
  // (paths that need 16-byte aligned rows, such as vector loads, are taken only then).
  void align16() { aligned_ = true; }
  // ... or `elements` elements into it (0: at its start, 16-byte aligned).
  void set_lead(int64_t elements) { lead_ = elements; }
  Gen uniform(float lo, float hi) {
    return [this, lo, hi](int64_t, int64_t) { return std::uniform_real_distribution<float>(lo, hi)(rng_); };
  }

  Arg& add(const std::string& name, Role role, DType dt, int64_t rows, int64_t cols, int64_t stride,
           const Gen& gen) {
    auto a = std::make_unique<Arg>();
    a->name = name;
    a->role = role;
    a->dtype = dt;
    a->rows = rows;
    a->cols = cols;
    a->stride = stride;
    a->lead = aligned_ ? int64_t(16 / a->es()) : lead_;
    const size_t n = size_t(a->lead + (rows > 0 ? (rows - 1) * stride + cols : 0) + kTail);
    a->image.resize(n * a->es());
    const float pad = is_input(role) ? std::nanf("") : kSentinel;
    for (size_t i = 0; i < n; ++i) {
      if (dt == DType::I32) {
        const int32_t v = is_input(role) ? 0x7fffff00 : -7;
        std::memcpy(&a->image[i * 4], &v, 4);
      } else {
        store(dt, &a->image[i * a->es()], pad);
      }
    }
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const bool out = role == Role::Out || role == Role::Scratch;
        const float v = out ? kSentinel : gen(r, c);
        if (dt == DType::I32) {
          const int32_t iv = out ? -7 : int32_t(v);
          std::memcpy(&a->image[a->elem_pos(r, c) * 4], &iv, 4);
        } else {
          store(dt, &a->image[a->elem_pos(r, c) * a->es()], v);
        }
      }
    if (role == Role::Weight) {  // image outlives the buffers (the CPU backend keeps a view)
      a->cpu_buf = be_.cpu->upload_constant(a->image.data(), a->image.size());
      a->dev_buf = be_.dev->upload_constant(a->image.data(), a->image.size());
    } else {
      a->cpu_buf = be_.cpu->alloc(a->image.size());
      a->dev_buf = be_.dev->alloc(a->image.size());
      be_.cpu->upload(*a->cpu_buf, 0, a->image.data(), a->image.size());
      be_.dev->upload(*a->dev_buf, 0, a->image.data(), a->image.size());
    }
    args_.push_back(std::move(a));
    return *args_.back();
  }

  // Downloads every buffer and checks: outputs within `tol` NMSE of the CPU (or exactly equal
  // when tol < 0), inputs untouched, padding of every buffer untouched.
  void check(double tol) {
    for (const auto& a : args_) {
      std::vector<uint8_t> got(a->image.size()), want;
      be_.dev->download(*a->dev_buf, 0, got.data(), got.size());
      // An input must come back byte for byte, padding included: one comparison of the whole
      // buffer (the LM head's weights are 100+ MB), element by element only to report a change.
      if (is_input(a->role) && std::memcmp(got.data(), a->image.data(), got.size()) == 0) continue;
      want.resize(a->image.size());
      be_.cpu->download(*a->cpu_buf, 0, want.data(), want.size());
      const size_t es = a->es();
      std::vector<bool> is_elem(a->image.size() / es, false);
      for (int64_t r = 0; r < a->rows; ++r)
        for (int64_t c = 0; c < a->cols; ++c) is_elem[a->elem_pos(r, c)] = true;
      size_t bad_pad = 0, first_bad = 0;
      for (size_t i = 0; i < is_elem.size(); ++i) {
        if (is_elem[i] && !is_input(a->role)) continue;
        if (std::memcmp(&got[i * es], &a->image[i * es], es) != 0) {
          if (bad_pad++ == 0) first_bad = i;
        }
      }
      EXPECT_EQ(bad_pad, 0u) << desc_ << " | " << a->name << ": " << bad_pad
                             << (is_input(a->role) ? " input or padding" : " padding")
                             << " elements changed, first at element " << first_bad;
      if (is_input(a->role) || a->role == Role::Scratch) continue;
      if (a->dtype == DType::I32 || tol < 0) {
        size_t mismatches = 0;
        int64_t first_r = -1, first_c = -1;
        for (int64_t r = 0; r < a->rows; ++r)
          for (int64_t c = 0; c < a->cols; ++c) {
            const size_t p = a->elem_pos(r, c) * es;
            if (std::memcmp(&got[p], &want[p], es) != 0 && mismatches++ == 0) { first_r = r; first_c = c; }
          }
        int32_t g = 0, w = 0;
        if (first_r >= 0) {
          std::memcpy(&g, &got[a->elem_pos(first_r, first_c) * es], 4);
          std::memcpy(&w, &want[a->elem_pos(first_r, first_c) * es], 4);
        }
        EXPECT_EQ(mismatches, 0u) << desc_ << " | " << a->name << ": " << mismatches
                                  << " elements differ, first (" << first_r << ", " << first_c
                                  << "): got " << g << " want " << w;
        continue;
      }
      double num = 0, den = 0, worst = 0;
      int64_t wr = 0, wc = 0;
      for (int64_t r = 0; r < a->rows; ++r)
        for (int64_t c = 0; c < a->cols; ++c) {
          const size_t p = a->elem_pos(r, c);
          const double g = load_as_f32(got.data(), a->dtype, p), w = load_as_f32(want.data(), a->dtype, p);
          const double d = std::isfinite(g) ? (g - w) * (g - w) : INFINITY;
          num += d;
          den += w * w;
          if (!(d <= worst)) { worst = d; wr = r; wc = c; }
        }
      const double nmse = num / std::max(den, 1e-30);
      max_nmse_ = std::max(max_nmse_, nmse);
      if (std::getenv("DM_BACKEND_OPS_VERBOSE"))
        std::printf("[nmse] %-10.3g %s | %s\n", nmse, desc_.c_str(), a->name.c_str());
      const size_t p = a->elem_pos(wr, wc);
      EXPECT_LE(nmse, tol) << desc_ << " | " << a->name << ": NMSE " << nmse << " > " << tol
                           << ", worst at (" << wr << ", " << wc << "): got "
                           << load_as_f32(got.data(), a->dtype, p) << " want "
                           << load_as_f32(want.data(), a->dtype, p);
    }
  }
  double max_nmse() const { return max_nmse_; }

 private:
  Backends be_;
  std::string desc_;
  std::mt19937 rng_;
  bool aligned_ = false;
  int64_t lead_ = kLead;
  std::vector<std::unique_ptr<Arg>> args_;
  double max_nmse_ = 0;
};

// One GEMM case on c's two backends: y (M×N, rows N + y_pad apart) = x (M×K, rows K + x_pad
// apart) · wᵀ (N×K, made as w_role: uploaded or upload_constant) (+ bias), random inputs, y
// within tol NMSE of the CPU's.
inline void run_gemm_case(Case& c, int64_t M, int64_t N, int64_t K, DType w_dtype, bool bias,
                          int64_t x_pad, int64_t y_pad, Role w_role, double tol) {
  Arg& x = c.add("x", Role::In, DType::F32, M, K, K + x_pad, c.nonzero(0.1f, 1.f));
  Arg& w = c.add("w", w_role, w_dtype, N, K, K, c.nonzero(0.01f, 0.1f));
  Arg* b = bias ? &c.add("bias", Role::In, w_dtype, 1, N, N, c.nonzero(0.1f, 1.f)) : nullptr;
  Arg& y = c.add("y", Role::Out, DType::F32, M, N, N + y_pad, nullptr);
  Tensor bc, bd;
  if (b) bc = b->cpu(), bd = b->dev();
  c.cpu().gemm(x.cpu(), w.cpu(), b ? &bc : nullptr, y.cpu());
  c.dev().gemm(x.dev(), w.dev(), b ? &bd : nullptr, y.dev());
  c.check(tol);
}

}  // namespace dm::test
