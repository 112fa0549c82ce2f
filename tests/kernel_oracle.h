// Naive double-precision formulas for every kernel, written from the definitions in backend.h
// and the Mamba / DeciMamba references, independently of any backend. Inputs are dense row-major
// float arrays holding exactly the values the kernel sees (weights already rounded to their
// dtype); outputs are doubles, to be compared with an NMSE tolerance.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace dm::oracle {

using Vec = std::vector<float>;
using DVec = std::vector<double>;

inline double softplus(double x) { return x > 20.0 ? x : std::log1p(std::exp(x)); }
inline double silu(double x) { return x / (1.0 + std::exp(-x)); }

// y[m,n] = Σ_k x[m,k] w[n,k] + bias[n]; bias may be empty.
inline DVec gemm(int64_t M, int64_t N, int64_t K, const Vec& x, const Vec& w, const Vec& bias) {
  DVec y(size_t(M * N));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double s = bias.empty() ? 0.0 : bias[size_t(n)];
      for (int64_t k = 0; k < K; ++k) s += double(x[size_t(m * K + k)]) * double(w[size_t(n * K + k)]);
      y[size_t(m * N + n)] = s;
    }
  return y;
}

struct RmsNormOut {
  DVec y, residual;  // residual empty when there was none
};

// r = residual + x (or x); y = r / sqrt(mean(r²) + eps) · weight.
inline RmsNormOut rms_norm(int64_t L, int64_t D, const Vec& x, const Vec& residual, const Vec& weight,
                           double eps) {
  RmsNormOut o;
  o.y.resize(size_t(L * D));
  if (!residual.empty()) o.residual.resize(size_t(L * D));
  for (int64_t t = 0; t < L; ++t) {
    DVec r(static_cast<size_t>(D));
    double ss = 0;
    for (int64_t i = 0; i < D; ++i) {
      const size_t j = size_t(t * D + i);
      r[size_t(i)] = double(x[j]) + (residual.empty() ? 0.0 : double(residual[j]));
      if (!residual.empty()) o.residual[j] = r[size_t(i)];
      ss += r[size_t(i)] * r[size_t(i)];
    }
    const double inv = 1.0 / std::sqrt(ss / double(D) + eps);
    for (int64_t i = 0; i < D; ++i) o.y[size_t(t * D + i)] = r[size_t(i)] * inv * double(weight[size_t(i)]);
  }
  return o;
}

struct ConvOut {
  DVec y, state;
};

// xin[c] = [state[c, 1..d-1], x[0..L-1, c]]; y[t,c] = SiLU(bias[c] + Σ_k w[c,k] xin[c][t+k]);
// the new state is the last d elements of xin, zero-padded on the left (as HF's F.pad).
inline ConvOut causal_conv1d(int64_t L, int64_t C, int64_t d, const Vec& x, const Vec& w,
                             const Vec& bias, const Vec& state) {
  ConvOut o;
  o.y.resize(size_t(L * C));
  o.state.resize(size_t(C * d));
  for (int64_t c = 0; c < C; ++c) {
    DVec xin;
    for (int64_t k = 1; k < d; ++k) xin.push_back(state[size_t(c * d + k)]);
    for (int64_t t = 0; t < L; ++t) xin.push_back(x[size_t(t * C + c)]);
    for (int64_t t = 0; t < L; ++t) {
      double s = bias.empty() ? 0.0 : bias[size_t(c)];
      for (int64_t k = 0; k < d; ++k) s += double(w[size_t(c * d + k)]) * xin[size_t(t + k)];
      o.y[size_t(t * C + c)] = silu(s);
    }
    const int64_t n = int64_t(xin.size());
    for (int64_t k = 0; k < d; ++k) {
      const int64_t src = n - d + k;
      o.state[size_t(c * d + k)] = src >= 0 ? xin[size_t(src)] : 0.0;
    }
  }
  return o;
}

struct ScanOut {
  DVec y, state;
};

// Per channel c: A = -exp(A_log); Δ = softplus(delta + dt_bias);
// h = exp(Δ A) h + Δ B u; y = C·h + D u; y *= SiLU(z). z may be empty.
inline ScanOut selective_scan(int64_t L, int64_t Ch, int64_t N, const Vec& u, const Vec& delta,
                              const Vec& A_log, const Vec& B, const Vec& C, const Vec& D,
                              const Vec& z, const Vec& dt_bias, const Vec& state) {
  ScanOut o;
  o.y.resize(size_t(L * Ch));
  o.state.resize(size_t(Ch * N));
  for (int64_t c = 0; c < Ch; ++c) {
    DVec h(static_cast<size_t>(N));
    for (int64_t n = 0; n < N; ++n) h[size_t(n)] = state[size_t(c * N + n)];
    for (int64_t t = 0; t < L; ++t) {
      const size_t i = size_t(t * Ch + c);
      const double dt = softplus(double(delta[i]) + double(dt_bias[size_t(c)]));
      double y = 0;
      for (int64_t n = 0; n < N; ++n) {
        const double A = -std::exp(double(A_log[size_t(c * N + n)]));
        h[size_t(n)] = std::exp(dt * A) * h[size_t(n)] + dt * double(B[size_t(t * N + n)]) * double(u[i]);
        y += h[size_t(n)] * double(C[size_t(t * N + n)]);
      }
      y += double(D[size_t(c)]) * double(u[i]);
      if (!z.empty()) y *= silu(double(z[i]));
      o.y[i] = y;
    }
    for (int64_t n = 0; n < N; ++n) o.state[size_t(c * N + n)] = h[size_t(n)];
  }
  return o;
}

// score[t] = sqrt(Σ_c softplus(delta[t,c] + dt_bias[c])²).
inline DVec dt_importance(int64_t L, int64_t C, const Vec& delta, const Vec& dt_bias) {
  DVec s(static_cast<size_t>(L));
  for (int64_t t = 0; t < L; ++t) {
    double acc = 0;
    for (int64_t c = 0; c < C; ++c) {
      const double d = softplus(double(delta[size_t(t * C + c)]) + double(dt_bias[size_t(c)]));
      acc += d * d;
    }
    s[size_t(t)] = std::sqrt(acc);
  }
  return s;
}

// Candidate i is kept when fewer than k candidates beat it; j beats i when j's score is higher,
// or equal and j < i. NaN counts as lower than every number. Kept ascending, then the tail.
inline std::vector<int32_t> topk_indices(const Vec& scores, int64_t n_candidates, int64_t k) {
  auto key = [&](int64_t i) {
    const float s = scores[size_t(i)];
    return std::isnan(s) ? -std::numeric_limits<double>::infinity() : double(s);
  };
  auto beats = [&](int64_t j, int64_t i) {
    const bool nj = std::isnan(scores[size_t(j)]), ni = std::isnan(scores[size_t(i)]);
    if (nj != ni) return ni;  // a number beats a NaN
    if (!nj && key(j) != key(i)) return key(j) > key(i);
    return j < i;
  };
  std::vector<int32_t> out;
  for (int64_t i = 0; i < n_candidates; ++i) {
    int64_t better = 0;
    for (int64_t j = 0; j < n_candidates && better < k; ++j)
      if (j != i && beats(j, i)) ++better;
    if (better < k) out.push_back(int32_t(i));
  }
  for (int64_t i = n_candidates; i < int64_t(scores.size()); ++i) out.push_back(int32_t(i));
  return out;
}

}  // namespace dm::oracle
