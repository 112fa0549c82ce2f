// decimamba erf (decimamba-spec.md §5): the O(L·E·N) MMD / ΣΔ statistics against a direct
// O(L²·E·N) evaluation of the formulas, the attention map against the 5.1 formula, the PNG
// header, and the CLI.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "backend/backend.h"
#include "cli_runner.h"
#include "eval/erf.h"
#include "fixture_util.h"
#include "model/executor.h"
#include "model/weights.h"

namespace fs = std::filesystem;

namespace {

const std::string kModel = dm::test::cli_fixture_model();

// The scan inputs exactly as the executor hands them over, in float, plus the layer's weights.
struct RawLayer {
  int64_t L = 0, E = 0, N = 0;
  std::vector<float> dt, B, C;  // L×E, L×N, L×N (dt before bias and softplus)
};

std::vector<float> fetch(dm::Backend& be, const dm::Tensor& t) {
  std::vector<float> all(size_t((t.rows - 1) * t.row_stride + t.cols));
  EXPECT_EQ(t.dtype, dm::DType::F32);
  be.download(*t.buf, t.offset, all.data(), all.size() * sizeof(float));
  std::vector<float> out;
  for (int64_t r = 0; r < t.rows; ++r)
    for (int64_t c = 0; c < t.cols; ++c) out.push_back(all[size_t(r * t.row_stride + c)]);
  return out;
}

struct RecordTap : dm::PrefillTap {
  dm::Backend& be;
  std::vector<RawLayer> layers;
  explicit RecordTap(dm::Backend& b) : be(b) {}
  void on_scan_inputs(int, const dm::Tensor&, const dm::Tensor& dt, const dm::Tensor& B,
                      const dm::Tensor& C) override {
    RawLayer r;
    r.L = dt.rows;
    r.E = dt.cols;
    r.N = B.cols;
    r.dt = fetch(be, dt);
    r.B = fetch(be, B);
    r.C = fetch(be, C);
    layers.push_back(std::move(r));
  }
};

// Written from the spec's formulas, the slow way.
struct Direct {
  std::vector<double> mmd_c, S_c;
  std::vector<int64_t> span_c;
  double mmd_mean = 0, mmd_avg = 0, S_mean = 0, S_max = 0, S_p95 = 0;
  std::vector<std::vector<double>> delta;  // [t][c]
  std::vector<std::vector<double>> A;      // [c][n]
};

double sp(double x) { return x > 20 ? x : std::log(1 + std::exp(x)); }

double p95(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const double pos = 0.95 * double(v.size() - 1);
  const size_t lo = size_t(pos);
  const double frac = pos - double(lo);
  return lo + 1 < v.size() ? v[lo] * (1 - frac) + v[lo + 1] * frac : v[lo];
}

Direct direct(const RawLayer& r, const dm::LayerWeights& w, double eps) {
  const auto A_log = dm::test::as_floats(*w.A_log), bias = dm::test::as_floats(*w.dt_bias);
  const int64_t L = r.L, E = r.E, N = r.N;
  Direct d;
  d.delta.assign(size_t(L), std::vector<double>(size_t(E)));
  for (int64_t t = 0; t < L; ++t)
    for (int64_t c = 0; c < E; ++c)
      d.delta[size_t(t)][size_t(c)] = sp(double(r.dt[size_t(t * E + c)]) + double(bias[size_t(c)]));
  d.A.assign(size_t(E), std::vector<double>(size_t(N)));
  for (int64_t c = 0; c < E; ++c)
    for (int64_t n = 0; n < N; ++n) d.A[size_t(c)][size_t(n)] = -std::exp(double(A_log[size_t(c * N + n)]));
  const int64_t q = L - 1;  // the last query
  std::vector<double> avg(size_t(L), 0);
  for (int64_t c = 0; c < E; ++c) {
    std::vector<double> alpha(static_cast<size_t>(L));
    for (int64_t j = 0; j < L; ++j) {
      double a = 0;
      for (int64_t n = 0; n < N; ++n) {
        double decay = 1;  // Π_{k=j+1..q} exp(A·Δ_k)
        for (int64_t k = j + 1; k <= q; ++k) decay *= std::exp(d.A[size_t(c)][size_t(n)] * d.delta[size_t(k)][size_t(c)]);
        a += double(r.C[size_t(q * N + n)]) * decay * d.delta[size_t(j)][size_t(c)] *
             double(r.B[size_t(j * N + n)]);
      }
      alpha[size_t(j)] = a;
      avg[size_t(j)] += std::fabs(a) / double(E);
    }
    double num = 0, den = 0;
    for (int64_t j = 0; j < L; ++j) {
      num += double(q - j) * std::fabs(alpha[size_t(j)]);
      den += std::fabs(alpha[size_t(j)]);
    }
    d.mmd_c.push_back(num / den);
    // ΣΔ: prefix sums, then the span by the definition over every j.
    std::vector<double> S(static_cast<size_t>(L));
    for (int64_t t = 0; t < L; ++t) S[size_t(t)] = (t ? S[size_t(t - 1)] : 0) + d.delta[size_t(t)][size_t(c)];
    d.S_c.push_back(S[size_t(q)]);
    const double Amax = *std::max_element(d.A[size_t(c)].begin(), d.A[size_t(c)].end());
    int64_t span = 0;
    for (int64_t j = 0; j < L; ++j)
      if (std::exp(Amax * (S[size_t(q)] - S[size_t(j)])) > eps) span = std::max(span, q - j);
    d.span_c.push_back(span);
  }
  double num = 0, den = 0;
  for (int64_t j = 0; j < L; ++j) {
    num += double(q - j) * avg[size_t(j)];
    den += avg[size_t(j)];
  }
  d.mmd_avg = num / den;
  for (double m : d.mmd_c) d.mmd_mean += m / double(E);
  for (double s : d.S_c) d.S_mean += s / double(E);
  d.S_max = *std::max_element(d.S_c.begin(), d.S_c.end());
  d.S_p95 = p95(d.S_c);
  return d;
}

double rel(double a, double b) { return std::fabs(a - b) / std::max(std::fabs(b), 1e-300); }

std::vector<int32_t> prompt(size_t n) {
  std::mt19937_64 rng(5);
  std::uniform_int_distribution<int32_t> u(3, 511);
  std::vector<int32_t> ids(n);
  for (auto& x : ids) x = u(rng);
  return ids;
}

void check_against_direct(const dm::DecimationConfig& deci, const std::vector<int64_t>& want_L) {
  auto model = dm::load_model(kModel);
  auto be = dm::create_backend("cpu");
  dm::Executor exec(*be, *model, deci);
  const auto ids = prompt(60);

  dm::ErfOptions opts;
  const dm::ErfResult res = dm::compute_erf(exec, *model, ids, opts);
  RecordTap tap(*be);
  auto state = exec.new_state();
  dm::PrefillOptions po;
  po.tap = &tap;
  exec.prefill(ids, *state, po);

  ASSERT_EQ(res.layers.size(), 4u);
  ASSERT_EQ(tap.layers.size(), 4u);
  int64_t L_in = 60;
  for (int l = 0; l < 4; ++l) {
    SCOPED_TRACE("layer " + std::to_string(l));
    const auto& got = res.layers[size_t(l)];
    const Direct want = direct(tap.layers[size_t(l)], model->weights.layers[size_t(l)], opts.eps);
    EXPECT_EQ(got.layer, l);
    EXPECT_EQ(got.L, want_L[size_t(l)]);
    EXPECT_EQ(got.L_in, L_in);
    L_in = got.L;
    ASSERT_EQ(got.mmd_c.size(), want.mmd_c.size());
    for (size_t c = 0; c < want.mmd_c.size(); ++c) {
      ASSERT_LE(rel(got.mmd_c[c], want.mmd_c[c]), 1e-9) << "channel " << c;
      ASSERT_LE(rel(got.S_c[c], want.S_c[c]), 1e-9) << "channel " << c;
      ASSERT_EQ(got.span_c[c], want.span_c[c]) << "channel " << c;
    }
    EXPECT_LE(rel(got.mmd_mean, want.mmd_mean), 1e-9);
    EXPECT_LE(rel(got.mmd_avg_alpha, want.mmd_avg), 1e-9);
    EXPECT_LE(rel(got.S_mean, want.S_mean), 1e-9);
    EXPECT_LE(rel(got.S_max, want.S_max), 1e-9);
    EXPECT_LE(rel(got.S_p95, want.S_p95), 1e-9);
    // Not degenerate: the statistics say something.
    EXPECT_GT(got.mmd_mean, 0.5);
    EXPECT_LT(got.mmd_mean, double(got.L - 1));
    EXPECT_GT(got.span_max, 0);
  }
}

}  // namespace

TEST(Erf, MmdAndSumDeltaMatchTheDirectFormulas) {
  check_against_direct(dm::DecimationConfig{}, {60, 60, 60, 60});
}

TEST(Erf, MmdAndSumDeltaMatchTheDirectFormulasAfterDecimation) {
  dm::DecimationConfig deci;
  deci.enabled = true;
  deci.layers = {1};
  deci.L_base = 30;
  deci.min_seq_len = 10;
  // Layer 1 keeps 30 of the first 59 and the protected last token.
  check_against_direct(deci, {60, 31, 31, 31});
}

TEST(Erf, AttentionMapMatchesTheHiddenAttentionFormula) {
  auto model = dm::load_model(kModel);
  auto be = dm::create_backend("cpu");
  dm::Executor exec(*be, *model);
  const auto ids = prompt(40);
  RecordTap tap(*be);
  auto state = exec.new_state();
  dm::PrefillOptions po;
  po.tap = &tap;
  exec.prefill(ids, *state, po);
  const int layer = 2;
  const RawLayer& r = tap.layers[layer];
  const Direct d = direct(r, model->weights.layers[layer], 1e-3);

  dm::ErfOptions opts;
  opts.map_layer = layer;
  opts.map_channels = 3;
  const dm::ErfResult res = dm::compute_erf(exec, *model, ids, opts);
  const std::vector<int> ch = {0, 64, 127};
  ASSERT_EQ(res.map_channels, ch);
  ASSERT_EQ(res.map_L, 40);
  ASSERT_EQ(res.map.size(), 1600u);

  const int64_t L = r.L, N = r.N;
  std::vector<double> m(size_t(L * L), 0);
  double mx = 0;
  for (int64_t i = 0; i < L; ++i)
    for (int64_t j = 0; j <= i; ++j) {
      double sum = 0;
      for (int c : ch) {
        double Ssum = 0;  // Σ_{k=j+1..i} Δ_k[c]
        for (int64_t k = j + 1; k <= i; ++k) Ssum += d.delta[size_t(k)][size_t(c)];
        for (int64_t n = 0; n < N; ++n)
          sum += double(r.C[size_t(i * N + n)]) * std::exp(d.A[size_t(c)][size_t(n)] * Ssum) *
                 d.delta[size_t(j)][size_t(c)] * double(r.B[size_t(j * N + n)]);
      }
      m[size_t(i * L + j)] = std::fabs(sum / double(ch.size()));
      mx = std::max(mx, m[size_t(i * L + j)]);
    }
  for (int64_t i = 0; i < L; ++i)
    for (int64_t j = 0; j < L; ++j) {
      const double want = j > i ? -3.0 : std::log10(std::max(m[size_t(i * L + j)] / mx, 1e-3));
      ASSERT_NEAR(res.map[size_t(i * L + j)], want, 1e-9) << i << "," << j;
    }
  EXPECT_DOUBLE_EQ(*std::max_element(res.map.begin(), res.map.end()), 0.0);

  // The notebook's default subset and the length limit.
  EXPECT_EQ(dm::erf_map_channels(1536, 0), (std::vector<int>{0, 150, 300, 450, 600, 750, 900, 1050, 1200, 1350, 1500}));
  opts.max_map_tokens = 39;
  try {
    dm::compute_erf(exec, *model, ids, opts);
    FAIL() << "no error for a map over the limit";
  } catch (const dm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("over the limit of 39"), std::string::npos) << e.what();
  }
}

TEST(Erf, PngHasSignatureAndSize) {
  dm::test::CliTempDir tmp;
  const std::string path = (tmp.path / "map.png").string();
  const int64_t L = 37;
  std::vector<double> map(size_t(L * L), -3.0);
  for (int64_t i = 0; i < L; ++i) map[size_t(i * L + i)] = 0;
  dm::write_map_png(path, map, L);
  const std::string png = dm::test::slurp(path);
  ASSERT_GE(png.size(), 33u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(png.substr(12, 4), "IHDR");
  auto be32 = [&](size_t at) {
    return (uint32_t(uint8_t(png[at])) << 24) | (uint32_t(uint8_t(png[at + 1])) << 16) |
           (uint32_t(uint8_t(png[at + 2])) << 8) | uint32_t(uint8_t(png[at + 3]));
  };
  EXPECT_EQ(be32(16), uint32_t(L));
  EXPECT_EQ(be32(20), uint32_t(L));
  EXPECT_EQ(png[24], 8);  // bit depth
  EXPECT_EQ(png[25], 2);  // RGB
  EXPECT_EQ(png.substr(png.size() - 8, 4), "IEND");
}

TEST(CliErf, WritesJsonAndRefusesToOverwrite) {
  dm::test::CliTempDir tmp;
  const std::string json = (tmp.path / "erf.json").string(), png = (tmp.path / "m.png").string();
  const std::vector<std::string> args = {"erf",   "--model",    kModel, "--backend",   "cpu",
                                         "--tokens", "60",      "--json", json, "--map-layer", "1",
                                         "--png", png,          "--deci-layers", "1", "--deci-L-base", "30"};
  auto r = dm::test::run_cli(args);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("span_mean"), std::string::npos) << r.out;
  const auto j = nlohmann::json::parse(dm::test::slurp(json));
  ASSERT_EQ(j["layers"].size(), 4u);
  EXPECT_EQ(j["n_tokens"], 60);
  EXPECT_EQ(j["layers"][1]["L_in"], 60);
  EXPECT_EQ(j["layers"][1]["L"], 31);
  EXPECT_GT(j["layers"][0]["mmd_mean"].get<double>(), 0);
  EXPECT_EQ(j["map"]["L"], 31);
  EXPECT_EQ(dm::test::slurp(png).substr(1, 3), "PNG");

  r = dm::test::run_cli(args);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("already exists"), std::string::npos) << r.err;
  auto forced = args;
  forced.push_back("--force");
  r = dm::test::run_cli(forced);
  EXPECT_EQ(r.code, 0) << r.err;

  // A map longer than --max-map-tokens is refused before anything is written.
  fs::remove(json);
  fs::remove(png);
  r = dm::test::run_cli({"erf", "--model", kModel, "--backend", "cpu", "--tokens", "60",
                         "--map-layer", "0", "--png", png, "--max-map-tokens", "50"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("over the limit of 50"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(png));
  // Exactly one text source.
  r = dm::test::run_cli({"erf", "--model", kModel, "--backend", "cpu"});
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("--text-file"), std::string::npos) << r.err;
}
