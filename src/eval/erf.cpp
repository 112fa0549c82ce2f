#include "eval/erf.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>

#include "core/dtype.h"
#include "core/error.h"

namespace dm {

double softplus20(double x) { return x > 20.0 ? x : std::log1p(std::exp(x)); }

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = q * double(v.size() - 1);
  const size_t lo = size_t(std::floor(pos));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - double(lo)) * (v[hi] - v[lo]);
}

namespace {

// A host copy of a (possibly strided) device tensor, as double, rows × cols.
std::vector<double> read_tensor(Backend& be, const Tensor& t) {
  std::vector<uint8_t> raw(t.span_bytes());
  if (!raw.empty()) be.download(*t.buf, t.offset, raw.data(), raw.size());
  std::vector<double> out(size_t(t.rows * t.cols));
  for (int64_t r = 0; r < t.rows; ++r)
    for (int64_t c = 0; c < t.cols; ++c)
      out[size_t(r * t.cols + c)] = load_as_f32(raw.data(), t.dtype, size_t(r * t.row_stride + c));
  return out;
}

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / double(v.size());
}

// Σ_j (L−1−j)·w_j / Σ_j w_j; 0 when the weights are all zero.
double mean_distance(const std::vector<double>& w) {
  const int64_t L = int64_t(w.size());
  double num = 0, den = 0;
  for (int64_t j = 0; j < L; ++j) {
    num += double(L - 1 - j) * w[size_t(j)];
    den += w[size_t(j)];
  }
  return den > 0 ? num / den : 0;
}

}  // namespace

ErfScanInputs erf_read_scan_inputs(Backend& be, const LayerWeights& w, const Tensor& delta,
                                   const Tensor& B, const Tensor& C) {
  ErfScanInputs in;
  in.L = delta.rows;
  in.E = delta.cols;
  in.N = B.cols;
  if (B.rows != in.L || C.rows != in.L || C.cols != in.N)
    fail("[erf] scan inputs disagree: delta ", delta.describe(), ", B ", B.describe(), ", C ",
         C.describe());
  if (w.A_log->numel() != in.E * in.N || w.dt_bias->numel() != in.E)
    fail("[erf] A_log ", w.A_log->shape_str(), " / dt_bias ", w.dt_bias->shape_str(),
         " do not fit d_inner ", in.E, ", d_state ", in.N);
  in.delta = read_tensor(be, delta);
  in.B = read_tensor(be, B);
  in.C = read_tensor(be, C);
  std::vector<double> bias(size_t(in.E));
  for (int64_t c = 0; c < in.E; ++c) bias[size_t(c)] = load_as_f32(w.dt_bias->data, w.dt_bias->dtype, size_t(c));
  for (int64_t t = 0; t < in.L; ++t)
    for (int64_t c = 0; c < in.E; ++c) {
      double& d = in.delta[size_t(t * in.E + c)];
      d = softplus20(d + bias[size_t(c)]);
    }
  in.A.resize(size_t(in.E * in.N));
  for (size_t i = 0; i < in.A.size(); ++i)
    in.A[i] = -std::exp(double(load_as_f32(w.A_log->data, w.A_log->dtype, i)));
  return in;
}

ErfLayerStats erf_layer_stats(const ErfScanInputs& in, double eps) {
  const int64_t L = in.L, E = in.E, N = in.N;
  ErfLayerStats s;
  s.L = L;
  s.L_in = L;
  if (L <= 0) return s;
  s.mmd_c.assign(size_t(E), 0);
  s.S_c.assign(size_t(E), 0);
  s.span_c.assign(size_t(E), 0);
  std::vector<double> avg(static_cast<size_t>(L), 0.0), absa(static_cast<size_t>(L)), P(static_cast<size_t>(N));
  const double* CL = &in.C[size_t((L - 1) * N)];
  const double log_eps = std::log(eps);
  for (int64_t c = 0; c < E; ++c) {
    const double* Ac = &in.A[size_t(c * N)];
    // 5.2: going back from the last query, P[n] = exp(A[c,n]·Σ_{k=j+1..L−1} Δ_k[c]).
    std::fill(P.begin(), P.end(), 1.0);
    for (int64_t j = L - 1; j >= 0; --j) {
      const double dj = in.delta[size_t(j * E + c)];
      const double* Bj = &in.B[size_t(j * N)];
      double a = 0;
      for (int64_t n = 0; n < N; ++n) a += CL[n] * P[size_t(n)] * Bj[n];
      absa[size_t(j)] = std::fabs(a * dj);
      avg[size_t(j)] += absa[size_t(j)];
      for (int64_t n = 0; n < N; ++n) P[size_t(n)] *= std::exp(dj * Ac[n]);
    }
    s.mmd_c[size_t(c)] = mean_distance(absa);
    // 5.3: total ΣΔ and the effective span under the slowest decay max_n A[c,n].
    const double Amax = *std::max_element(Ac, Ac + N);
    double total = 0;
    for (int64_t t = 0; t < L; ++t) total += in.delta[size_t(t * E + c)];
    s.S_c[size_t(c)] = total;
    double tail = 0;  // Σ_{k=j+1..L−1} Δ_k[c]
    int64_t span = 0;
    for (int64_t j = L - 1; j >= 0; --j) {
      if (!(Amax * tail > log_eps)) break;  // exp(A·tail) > eps; tail only grows going back
      span = L - 1 - j;
      tail += in.delta[size_t(j * E + c)];
    }
    s.span_c[size_t(c)] = span;
  }
  for (double& w : avg) w /= double(E);
  s.mmd_mean = mean_of(s.mmd_c);
  s.mmd_avg_alpha = mean_distance(avg);
  s.S_mean = mean_of(s.S_c);
  s.S_max = *std::max_element(s.S_c.begin(), s.S_c.end());
  s.S_p95 = percentile(s.S_c, 0.95);
  std::vector<double> spans(s.span_c.begin(), s.span_c.end());
  s.span_mean = mean_of(spans);
  s.span_max = *std::max_element(s.span_c.begin(), s.span_c.end());
  s.span_p95 = percentile(spans, 0.95);
  return s;
}

std::vector<int> erf_map_channels(int64_t E, int n) {
  std::vector<int> ch;
  if (E <= 0) return ch;
  if (n <= 0) {
    for (int64_t c = 0; c < E; c += 150) ch.push_back(int(c));
  } else if (n == 1) {
    ch.push_back(0);
  } else {
    n = int(std::min<int64_t>(n, E));
    for (int k = 0; k < n; ++k) ch.push_back(int(std::llround(double(k) * double(E - 1) / (n - 1))));
  }
  return ch;
}

std::vector<double> erf_attention_map(const ErfScanInputs& in, const std::vector<int>& channels,
                                      double floor_log10) {
  const int64_t L = in.L, E = in.E, N = in.N, K = int64_t(channels.size());
  for (int c : channels)
    if (c < 0 || c >= E) fail("[erf] map channel ", c, " is outside 0..", E - 1);
  if (K == 0) fail("[erf] the map needs at least one channel");
  // dA[j][k][n] = exp(Δ_j[c_k]·A[c_k,n]): the factor key j adds to every older key's decay.
  std::vector<double> dA(size_t(L * K * N));
  for (int64_t j = 0; j < L; ++j)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t n = 0; n < N; ++n) {
        const int64_t c = channels[size_t(k)];
        dA[size_t((j * K + k) * N + n)] = std::exp(in.delta[size_t(j * E + c)] * in.A[size_t(c * N + n)]);
      }
  std::vector<double> map(size_t(L * L), 0), P(size_t(K * N));
  for (int64_t i = 0; i < L; ++i) {
    const double* Ci = &in.C[size_t(i * N)];
    std::fill(P.begin(), P.end(), 1.0);
    for (int64_t j = i; j >= 0; --j) {
      const double* Bj = &in.B[size_t(j * N)];
      double sum = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double* Pk = &P[size_t(k * N)];
        double a = 0;
        for (int64_t n = 0; n < N; ++n) a += Ci[n] * Pk[n] * Bj[n];
        sum += a * in.delta[size_t(j * E + channels[size_t(k)])];
      }
      map[size_t(i * L + j)] = sum / double(K);
      const double* f = &dA[size_t(j * K * N)];
      for (int64_t m = 0; m < K * N; ++m) P[size_t(m)] *= f[m];
    }
  }
  double mx = 0;
  for (double& v : map) {
    v = std::fabs(v);
    mx = std::max(mx, v);
  }
  const double floor_v = std::pow(10.0, floor_log10);
  for (double& v : map) v = std::log10(std::max(mx > 0 ? v / mx : 0.0, floor_v));
  for (int64_t i = 0; i < L; ++i)
    for (int64_t j = i + 1; j < L; ++j) map[size_t(i * L + j)] = floor_log10;
  return map;
}

ErfResult compute_erf(Executor& exec, const Model& model, const std::vector<int32_t>& tokens,
                      const ErfOptions& opts) {
  const int n_layer = int(exec.config().n_layer);
  if (tokens.empty()) fail("[erf] no tokens");
  if (!(opts.eps > 0 && opts.eps < 1)) fail("[erf] eps must be in (0, 1), got ", opts.eps);
  ErfResult res;
  res.n_tokens = int64_t(tokens.size());
  if (opts.map_layer >= 0) {
    if (opts.map_layer >= n_layer)
      fail("[erf] map layer ", opts.map_layer, " does not exist (the model has ", n_layer,
           " layers, 0-based)");
    const int64_t tail = opts.protect_tail < 0 ? 1 : opts.protect_tail;
    const int64_t Lmap = exec.layer_lengths(res.n_tokens, tail)[size_t(opts.map_layer)];
    if (Lmap > opts.max_map_tokens)
      fail("[erf] the attention map of layer ", opts.map_layer, " would be ", Lmap, " x ", Lmap,
           " tokens, over the limit of ", opts.max_map_tokens,
           " (raise --max-map-tokens, or use fewer tokens)");
    res.map_layer = opts.map_layer;
  }

  struct Tap : PrefillTap {
    Backend& be;
    const Model& model;
    const ErfOptions& opts;
    ErfResult& res;
    int64_t prev_L;
    Tap(Backend& b, const Model& m, const ErfOptions& o, ErfResult& r, int64_t L0)
        : be(b), model(m), opts(o), res(r), prev_L(L0) {}
    void on_scan_inputs(int layer, const Tensor& u, const Tensor& delta, const Tensor& B,
                        const Tensor& C) override {
      const ErfScanInputs in =
          erf_read_scan_inputs(be, model.weights.layers[size_t(layer)], delta, B, C);
      ErfLayerStats s = erf_layer_stats(in, opts.eps);
      s.layer = layer;
      s.L_in = prev_L;
      prev_L = s.L;
      res.layers.push_back(std::move(s));
      if (layer == opts.map_layer) {
        res.map_L = in.L;
        res.map_channels = erf_map_channels(in.E, opts.map_channels);
        res.map = erf_attention_map(in, res.map_channels);
      }
    }
  } tap(exec.backend(), model, opts, res, res.n_tokens);

  auto state = exec.new_state();
  PrefillOptions po;
  po.tap = &tap;
  po.protect_tail = opts.protect_tail;
  po.on_progress = opts.on_progress;
  exec.prefill(tokens, *state, po);
  if (int(res.layers.size()) != n_layer)
    fail("[erf] the prefill reported ", res.layers.size(), " of ", n_layer, " layers");
  return res;
}

// ---------------------------------------------------------------- PNG

namespace {

void put_be32(std::string& s, uint32_t v) {
  for (int k = 3; k >= 0; --k) s.push_back(char((v >> (8 * k)) & 0xff));
}

void put_chunk(std::string& out, const char* type, const std::string& data) {
  put_be32(out, uint32_t(data.size()));
  std::string body(type, 4);
  body += data;
  out += body;
  put_be32(out, uint32_t(crc32(0L, reinterpret_cast<const Bytef*>(body.data()), uInt(body.size()))));
}

void write_png(const std::string& path, int64_t width, int64_t height, int channels,
               const std::vector<uint8_t>& pixels) {
  if (width <= 0 || height <= 0 || width > (1 << 24) || height > (1 << 24))
    fail("[erf] ", path, ": bad image size ", width, " x ", height);
  if (int64_t(pixels.size()) != width * height * channels)
    fail("[erf] ", path, ": ", pixels.size(), " bytes for a ", width, " x ", height, " image");
  const size_t row = size_t(width * channels);
  std::vector<uint8_t> raw;
  raw.reserve(size_t(height) * (row + 1));
  for (int64_t y = 0; y < height; ++y) {
    raw.push_back(0);  // filter: none
    raw.insert(raw.end(), pixels.begin() + ptrdiff_t(y * row), pixels.begin() + ptrdiff_t((y + 1) * row));
  }
  uLongf zlen = compressBound(uLong(raw.size()));
  std::string z(zlen, '\0');
  if (compress2(reinterpret_cast<Bytef*>(z.data()), &zlen, raw.data(), uLong(raw.size()), 6) != Z_OK)
    fail("[erf] ", path, ": zlib compression failed");
  z.resize(zlen);
  std::string png("\x89PNG\r\n\x1a\n", 8), ihdr;
  put_be32(ihdr, uint32_t(width));
  put_be32(ihdr, uint32_t(height));
  ihdr.push_back(8);                          // bit depth
  ihdr.push_back(channels == 3 ? 2 : 0);      // colour type: RGB or gray
  ihdr.append(3, '\0');                       // compression, filter, interlace
  put_chunk(png, "IHDR", ihdr);
  put_chunk(png, "IDAT", z);
  put_chunk(png, "IEND", "");
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) fail("[erf] ", path, ": cannot open for writing");
  f.write(png.data(), std::streamsize(png.size()));
  if (!f) fail("[erf] ", path, ": write failed");
}

}  // namespace

void write_png_gray(const std::string& path, int64_t width, int64_t height,
                    const std::vector<uint8_t>& pixels) {
  write_png(path, width, height, 1, pixels);
}

void write_png_rgb(const std::string& path, int64_t width, int64_t height,
                   const std::vector<uint8_t>& pixels) {
  write_png(path, width, height, 3, pixels);
}

void write_map_png(const std::string& path, const std::vector<double>& map, int64_t L,
                   double floor_log10) {
  if (int64_t(map.size()) != L * L) fail("[erf] map has ", map.size(), " entries, not ", L, "²");
  // Viridis at 5 stops, interpolated linearly.
  static const double stops[5][3] = {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
  std::vector<uint8_t> px(size_t(L * L * 3));
  for (size_t i = 0; i < map.size(); ++i) {
    double t = (map[i] - floor_log10) / -floor_log10;
    t = std::clamp(std::isfinite(t) ? t : 0.0, 0.0, 1.0) * 4;
    const int k = std::min(int(t), 3);
    const double f = t - k;
    for (int ch = 0; ch < 3; ++ch)
      px[i * 3 + size_t(ch)] = uint8_t(std::lround(stops[k][ch] + f * (stops[k + 1][ch] - stops[k][ch])));
  }
  write_png_rgb(path, L, L, px);
}

}  // namespace dm
