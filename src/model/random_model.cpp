#include "model/random_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <random>

#include "core/error.h"
#include "core/thread_pool.h"

namespace dm {

namespace {

struct Shape {
  const char* name;
  int64_t d_model, n_layer;
};
constexpr Shape kShapes[] = {{"130m", 768, 24},   {"370m", 1024, 48}, {"790m", 1536, 48},
                             {"1.4b", 2048, 48},  {"2.8b", 2560, 64}, {"tiny", 64, 2}};

// splitmix64: the generator of every random-model value. Counter-based use (below) makes a
// model depend on its seed only, not on the thread count or the standard library (whose
// *_distribution classes are implementation-defined).
struct SplitMix {
  uint64_t s;
  static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t next() { return mix(s += 0x9E3779B97F4A7C15ull); }
  double unit() { return double((next() >> 11) + 1) * 0x1.0p-53; }  // (0, 1]
};

class Filler {
 public:
  Filler(RandomModel& m, DType dtype, uint64_t seed) : m_(m), dtype_(dtype), rng_(seed) {}

  // A tensor of `shape` with values from gen(), in order, stored in dt (small tensors).
  template <typename Gen>
  const HostTensor* add(const std::string& name, std::vector<int64_t> shape, DType dt, Gen gen) {
    uint8_t* bytes = nullptr;
    HostTensor& t = new_tensor(name, std::move(shape), dt, bytes);
    for (size_t i = 0, n = size_t(t.numel()); i < n; ++i) store(bytes, dt, i, gen());
    return &t;
  }
  // Normal (Box-Muller) and uniform tensors, drawn in parallel: block b of the tensor takes its
  // values from its own SplitMix seeded by (seed, tensor ordinal, b). 2.8b's 2.8e9 values took
  // about a minute on one thread with std::normal_distribution; now they scale with the cores.
  const HostTensor* normal(const std::string& name, std::vector<int64_t> shape, float std) {
    return add_blocks(name, std::move(shape), [std](SplitMix& r, float* out, size_t n) {
      for (size_t i = 0; i < n; i += 2) {  // float math: ~2x faster than double, plenty here
        const float rad = std * std::sqrt(-2.f * std::log(float(r.unit())));
        const float ang = 6.2831853f * float(r.unit());
        out[i] = rad * std::cos(ang);
        if (i + 1 < n) out[i + 1] = rad * std::sin(ang);
      }
    });
  }
  const HostTensor* uniform(const std::string& name, std::vector<int64_t> shape, float lo, float hi) {
    return add_blocks(name, std::move(shape), [lo, hi](SplitMix& r, float* out, size_t n) {
      for (size_t i = 0; i < n; ++i) out[i] = lo + (hi - lo) * float(r.unit() - 0x1.0p-53);
    });
  }
  SplitMix& rng() { return rng_; }

 private:
  // A tensor of zeros in our storage; `bytes` points at them, for filling.
  HostTensor& new_tensor(const std::string& name, std::vector<int64_t> shape, DType dt,
                         uint8_t*& bytes) {
    auto t = std::make_unique<HostTensor>();
    t->name = name;
    t->dtype = dt;
    t->shape = std::move(shape);
    t->file = "<random>";
    m_.storage.emplace_back(size_t(t->numel()) * dtype_size(dt));
    bytes = m_.storage.back().data();
    t->data = bytes;
    t->bytes = m_.storage.back().size();
    m_.tensors.push_back(std::move(t));
    return *m_.tensors.back();
  }
  static void store(uint8_t* p, DType dt, size_t i, float v) {
    if (dt == DType::F32) {
      std::memcpy(p + i * 4, &v, 4);
    } else {
      const uint16_t h = dt == DType::F16 ? f32_to_f16(v) : f32_to_bf16(v);
      std::memcpy(p + i * 2, &h, 2);
    }
  }
  template <typename Draw>
  const HostTensor* add_blocks(const std::string& name, std::vector<int64_t> shape, Draw draw) {
    uint8_t* bytes = nullptr;
    HostTensor& t = new_tensor(name, std::move(shape), dtype_, bytes);
    const size_t n = size_t(t.numel());
    constexpr size_t kBlock = size_t(1) << 16;
    const uint64_t key = SplitMix::mix(rng_.next() ^ ++ordinal_);
    parallel_for(int64_t((n + kBlock - 1) / kBlock), 1, [&](int64_t b0, int64_t b1) {
      std::vector<float> v(kBlock);
      for (int64_t b = b0; b < b1; ++b) {
        SplitMix r{SplitMix::mix(key + uint64_t(b))};
        const size_t i0 = size_t(b) * kBlock, m = std::min(kBlock, n - i0);
        draw(r, v.data(), m);
        for (size_t i = 0; i < m; ++i) store(bytes, dtype_, i0 + i, v[i]);
      }
    });
    return &t;
  }

  RandomModel& m_;
  DType dtype_;
  SplitMix rng_;
  uint64_t ordinal_ = 0;
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
    const float lo = std::log(1e-3f), hi = std::log(1e-1f);
    lw.dt_bias = f.add(p + ".mixer.dt_proj.bias", {E}, dtype, [&] {
      const float dt = std::exp(lo + (hi - lo) * float(f.rng().unit() - 0x1.0p-53));
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

std::vector<float> uniform_pool(size_t n, uint64_t seed) {
  std::vector<float> v(n);
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& x : v) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    x = float(int64_t(s >> 40) - (int64_t(1) << 23)) / float(1 << 23);
  }
  return v;
}

std::unique_ptr<RandomModel> make_pooled_random_model(const std::string& shape) {
  if (shape == "tiny") return make_random_model(shape, DType::F16);  // small either way
  if (shape != "130m" && shape != "370m" && shape != "790m" && shape != "1.4b" && shape != "2.8b")
    fail("[model] no random model shape '", shape, "' (130m, 370m, 790m, 1.4b, 2.8b, tiny)");
  auto tiny = make_random_model("tiny", DType::F16);  // only its config's fixed fields are kept
  auto rm = std::make_unique<RandomModel>();
  ModelConfig& c = rm->model.config;
  c = tiny->model.config;
  c.d_model = shape == "2.8b" ? 2560 : shape == "1.4b" ? 2048 : shape == "790m" ? 1536
            : shape == "370m" ? 1024 : 768;
  c.n_layer = shape == "2.8b" ? 64 : shape == "130m" ? 24 : 48;
  c.vocab_size = c.padded_vocab = 50280;
  c.d_inner = c.expand * c.d_model;
  c.dt_rank = (c.d_model + 15) / 16;
  rm->model.dir = "<bench random " + shape + ">";
  const int64_t D = c.d_model, E = c.d_inner, N = c.d_state, R = c.dt_rank, V = c.padded_vocab;
  // One pool of 4M fp16 values per (scale, shift): uniform in ±1 · scale + shift.
  std::map<std::pair<float, float>, std::vector<uint16_t>> pools;
  const std::vector<float> base = uniform_pool(size_t(1) << 22, 7);
  size_t cursor = 0;
  auto add = [&](const std::string& name, std::vector<int64_t> sh, float scale, float shift) {
    std::vector<uint16_t>& pool = pools[{scale, shift}];
    if (pool.empty()) {
      pool.resize(base.size());
      for (size_t i = 0; i < base.size(); ++i) pool[i] = f32_to_f16(shift + scale * base[i]);
    }
    auto t = std::make_unique<HostTensor>();
    t->name = name;
    t->dtype = DType::F16;
    t->shape = std::move(sh);
    t->file = "<random>";
    const size_t n = size_t(t->numel());
    std::vector<uint8_t> bytes(n * 2);
    auto* h = reinterpret_cast<uint16_t*>(bytes.data());
    for (size_t i = 0; i < n;) {
      const size_t take = std::min(n - i, pool.size() - cursor);
      std::memcpy(h + i, pool.data() + cursor, take * 2);
      i += take;
      cursor = (cursor + take) % pool.size();
    }
    rm->storage.push_back(std::move(bytes));
    t->data = rm->storage.back().data();
    t->bytes = rm->storage.back().size();
    rm->tensors.push_back(std::move(t));
    return rm->tensors.back().get();
  };
  ModelWeights& w = rm->model.weights;
  w.dtype = DType::F16;
  w.embedding = add("embedding", {V, D}, 0.05f, 0.f);
  w.lm_head = w.embedding;
  w.tied = true;
  w.norm_f = add("norm_f", {D}, 0.2f, 1.f);
  for (int64_t l = 0; l < c.n_layer; ++l) {
    LayerWeights lw;
    lw.norm = add("norm", {D}, 0.2f, 1.f);
    lw.in_proj = add("in_proj", {2 * E, D}, 1.7f / std::sqrt(float(D)), 0.f);
    lw.conv_weight = add("conv", {E, 1, c.d_conv}, 0.5f, 0.f);
    lw.conv_bias = add("conv_bias", {E}, 0.1f, 0.f);
    lw.x_proj = add("x_proj", {R + 2 * N, E}, 1.7f / std::sqrt(float(E)), 0.f);
    lw.dt_proj = add("dt_proj", {E, R}, 1.7f / std::sqrt(float(R)), 0.f);
    lw.dt_bias = add("dt_bias", {E}, 1.f, -4.f);
    lw.A_log = add("A_log", {E, N}, 1.f, 1.5f);
    lw.D = add("D", {E}, 0.5f, 1.f);
    lw.out_proj = add("out_proj", {D, E}, 1.7f / std::sqrt(float(E)), 0.f);
    w.layers.push_back(lw);
  }
  return rm;
}

}  // namespace dm
