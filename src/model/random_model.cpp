#include "model/random_model.h"

#include <cmath>
#include <cstring>
#include <random>

#include "core/error.h"

namespace dm {

namespace {

struct Shape {
  const char* name;
  int64_t d_model, n_layer;
};
constexpr Shape kShapes[] = {{"130m", 768, 24},   {"370m", 1024, 48}, {"790m", 1536, 48},
                             {"1.4b", 2048, 48},  {"2.8b", 2560, 64}, {"tiny", 64, 2}};

class Filler {
 public:
  Filler(RandomModel& m, DType dtype, uint64_t seed) : m_(m), dtype_(dtype), rng_(seed) {}

  // A tensor of `shape` with values from gen(), stored in dtype.
  template <typename Gen>
  const HostTensor* add(const std::string& name, std::vector<int64_t> shape, DType dt, Gen gen) {
    auto t = std::make_unique<HostTensor>();
    t->name = name;
    t->dtype = dt;
    t->shape = std::move(shape);
    t->file = "<random>";
    const size_t n = size_t(t->numel());
    std::vector<uint8_t> bytes(n * dtype_size(dt));
    for (size_t i = 0; i < n; ++i) {
      const float v = gen();
      if (dt == DType::F32) std::memcpy(&bytes[i * 4], &v, 4);
      else {
        const uint16_t h = dt == DType::F16 ? f32_to_f16(v) : f32_to_bf16(v);
        std::memcpy(&bytes[i * 2], &h, 2);
      }
    }
    m_.storage.push_back(std::move(bytes));
    t->data = m_.storage.back().data();
    t->bytes = m_.storage.back().size();
    m_.tensors.push_back(std::move(t));
    return m_.tensors.back().get();
  }
  const HostTensor* normal(const std::string& name, std::vector<int64_t> shape, float std) {
    std::normal_distribution<float> d(0.f, std);
    return add(name, std::move(shape), dtype_, [&] { return d(rng_); });
  }
  const HostTensor* uniform(const std::string& name, std::vector<int64_t> shape, float lo, float hi) {
    std::uniform_real_distribution<float> d(lo, hi);
    return add(name, std::move(shape), dtype_, [&] { return d(rng_); });
  }
  std::mt19937_64& rng() { return rng_; }
  DType dtype() const { return dtype_; }

 private:
  RandomModel& m_;
  DType dtype_;
  std::mt19937_64 rng_;
};

}  // namespace

std::vector<std::string> random_model_shapes() {
  std::vector<std::string> out;
  for (const Shape& s : kShapes) out.push_back(s.name);
  return out;
}

std::unique_ptr<RandomModel> make_random_model(const std::string& shape, DType dtype,
                                               uint64_t seed) {
  const Shape* sh = nullptr;
  for (const Shape& s : kShapes)
    if (shape == s.name) sh = &s;
  if (!sh) {
    std::string names;
    for (const auto& n : random_model_shapes()) names += (names.empty() ? "" : ", ") + n;
    fail("[model] unknown random-model shape '", shape, "' (known: ", names, ")");
  }
  if (dtype == DType::I32) fail("[model] random model weights must be F32, F16 or BF16");
  auto rm = std::make_unique<RandomModel>();
  ModelConfig& c = rm->model.config;
  c.dialect = "random";
  c.d_model = sh->d_model;
  c.n_layer = sh->n_layer;
  c.vocab_size = c.padded_vocab = shape == "tiny" ? 512 : 50280;
  c.d_inner = c.expand * c.d_model;
  c.dt_rank = (c.d_model + 15) / 16;
  c.declared_dtype = std::string(dtype_name(dtype));
  rm->model.dir = "<random " + shape + ">";
  const int64_t D = c.d_model, E = c.d_inner, N = c.d_state, R = c.dt_rank, V = c.padded_vocab;

  Filler f(*rm, dtype, seed);
  ModelWeights& w = rm->model.weights;
  w.dtype = dtype;
  w.embedding = f.normal("backbone.embeddings.weight", {V, D}, 0.02f);
  w.lm_head = w.embedding;
  w.tied = true;
  w.norm_f = f.uniform("backbone.norm_f.weight", {D}, 0.8f, 1.2f);
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const std::string p = "backbone.layers." + std::to_string(l);
    LayerWeights lw;
    lw.norm = f.uniform(p + ".norm.weight", {D}, 0.8f, 1.2f);
    lw.in_proj = f.normal(p + ".mixer.in_proj.weight", {2 * E, D}, 1.f / std::sqrt(float(D)));
    lw.conv_weight = f.uniform(p + ".mixer.conv1d.weight", {E, 1, c.d_conv}, -0.5f, 0.5f);
    lw.conv_bias = f.uniform(p + ".mixer.conv1d.bias", {E}, -0.1f, 0.1f);
    lw.x_proj = f.normal(p + ".mixer.x_proj.weight", {R + 2 * N, E}, 1.f / std::sqrt(float(E)));
    lw.dt_proj = f.normal(p + ".mixer.dt_proj.weight", {E, R}, 1.f / std::sqrt(float(R)));
    // dt_bias = softplus⁻¹(dt) for dt log-uniform in [1e-3, 1e-1], as mamba_ssm initialises it.
    std::uniform_real_distribution<float> u(std::log(1e-3f), std::log(1e-1f));
    lw.dt_bias = f.add(p + ".mixer.dt_proj.bias", {E}, dtype, [&] {
      const float dt = std::exp(u(f.rng()));
      return dt + std::log(-std::expm1(-dt));
    });
    int64_t i = 0;
    lw.A_log = f.add(p + ".mixer.A_log", {E, N}, dtype,
                     [&] { return std::log(float(1 + (i++ % N))); });
    lw.D = f.uniform(p + ".mixer.D", {E}, 0.5f, 1.5f);
    lw.out_proj = f.normal(p + ".mixer.out_proj.weight", {D, E}, 1.f / std::sqrt(float(E)));
    w.layers.push_back(lw);
  }
  return rm;
}

}  // namespace dm
