// The Mamba-1 forward pass, prefill and decode, as one readable loop over layers.
// Shapes: L = tokens entering a layer (shrinks at decimating layers), D = d_model,
// E = d_inner, N = d_state, R = dt_rank, V = padded vocab.
#include "model/executor.h"

#include <algorithm>
#include <map>
#include <string>
#include <tuple>

#include "core/env.h"
#include "core/error.h"

namespace dm {

namespace {

// A weight on the device, viewed as a matrix (vectors are 1 × n, conv weights E × d_conv).
Tensor upload_weight(Backend& be, const HostTensor& h, int64_t rows, int64_t cols,
                     std::vector<std::unique_ptr<Buffer>>& owned) {
  DM_ASSERT(h.numel() == rows * cols, "weight ", h.name, " has ", h.numel(), " elements");
  owned.push_back(be.upload_constant(h.data, h.bytes));
  return make_tensor(*owned.back(), h.dtype, rows, cols);
}

}  // namespace

struct Executor::DeviceWeights {
  struct Layer {
    Tensor norm, in_proj, conv_w, x_proj, dt_proj, dt_bias, A_log, D, out_proj;
    Tensor in_proj_bias, conv_b, out_proj_bias;  // rows == 0 when absent
  };
  Tensor embedding, norm_f, lm_head;
  std::vector<Layer> layers;
  std::vector<std::unique_ptr<Buffer>> owned;

  // Scratch buffers by role, grown on demand and kept between calls.
  std::map<std::string, std::unique_ptr<Buffer>> scratch;
  // Recorded decode steps, one per sequence state (its state buffers are baked in), kind
  // (-1: logits out; n > 0: greedy over the first n logits, the id out) and steps in a row
  // (greedy: up to kGreedyUnrollMax). Declared last:
  // destroyed before the buffers they use.
  std::map<std::tuple<const SequenceState*, int64_t, int>, std::unique_ptr<Recording>>
      step_recordings;
};

static const Tensor* opt(const Tensor& t) { return t.rows ? &t : nullptr; }

Executor::Executor(Backend& backend, const Model& model, DecimationConfig decimation)
    : backend_(backend), config_(model.config), w_(std::make_unique<DeviceWeights>()) {
  set_decimation(std::move(decimation));
  step_replay_ = env_choice("executor", "DM_DECODE_REPLAY", {"1", "0"}) == 0;
  greedy_unroll_ = int(env_int("executor", "DM_GREEDY_UNROLL", 1, kGreedyUnrollMax, 4));
  const ModelConfig& c = config_;
  const ModelWeights& mw = model.weights;
  for (const HostTensor* h : {mw.embedding, mw.lm_head, mw.layers.at(0).in_proj})
    if (!backend_.supports_weight_dtype(h->dtype))
      fail("[", backend_.name(), "] cannot run ", dtype_name(h->dtype), " weights (", h->name,
           ")");
  auto up = [&](const HostTensor* h, int64_t rows, int64_t cols) {
    return h ? upload_weight(backend_, *h, rows, cols, w_->owned) : Tensor{};
  };
  const int64_t D = c.d_model, E = c.d_inner, N = c.d_state, R = c.dt_rank, V = c.padded_vocab;
  w_->embedding = up(mw.embedding, V, D);
  w_->norm_f = up(mw.norm_f, 1, D);
  w_->lm_head = mw.tied ? w_->embedding : up(mw.lm_head, V, D);
  for (const LayerWeights& lw : mw.layers) {
    DeviceWeights::Layer l;
    l.norm = up(lw.norm, 1, D);
    l.in_proj = up(lw.in_proj, 2 * E, D);
    l.in_proj_bias = up(lw.in_proj_bias, 1, 2 * E);
    l.conv_w = up(lw.conv_weight, E, c.d_conv);
    l.conv_b = up(lw.conv_bias, 1, E);
    l.x_proj = up(lw.x_proj, R + 2 * N, E);
    l.dt_proj = up(lw.dt_proj, E, R);
    l.dt_bias = up(lw.dt_bias, 1, E);
    l.A_log = up(lw.A_log, E, N);
    l.D = up(lw.D, 1, E);
    l.out_proj = up(lw.out_proj, D, E);
    l.out_proj_bias = up(lw.out_proj_bias, 1, D);
    w_->layers.push_back(l);
  }
}

Executor::~Executor() {
  // Picks still outstanding are the backend's tickets too (waited for oldest first): take them,
  // so a later executor on the same backend starts with none of this one's.
  try {
    while (greedy_outstanding() > 0) greedy_take();
  } catch (...) {  // a failed device: nothing more to do here
  }
}

void Executor::set_step_replay(bool on) {
  step_replay_ = on;
  if (!on) w_->step_recordings.clear();
}

void Executor::set_decimation(DecimationConfig d) {
  validate_decimation(d, config_.n_layer);
  decimation_ = std::move(d);
}

std::unique_ptr<SequenceState> Executor::new_state() const {
  return std::make_unique<SequenceState>(backend_, config_);
}

std::vector<int64_t> Executor::layer_lengths(int64_t L, int64_t protect_tail) const {
  std::vector<int64_t> out;
  const int64_t r = std::min(std::max<int64_t>(protect_tail, 0), L);
  for (int l = 0; l < config_.n_layer; ++l) {
    L = decimation_keep(decimation_, l, L, r) + r;
    out.push_back(L);
  }
  return out;
}

namespace {

// A fp32 (or I32) rows × cols matrix in the scratch buffer named `role`, grown as needed.
Tensor scratch(Backend& be, std::map<std::string, std::unique_ptr<Buffer>>& pool,
               const std::string& role, int64_t rows, int64_t cols, DType dt = DType::F32) {
  const size_t bytes = std::max<size_t>(size_t(rows * cols) * dtype_size(dt), 4);
  auto& buf = pool[role];
  if (!buf || buf->bytes() < bytes) buf = be.alloc(bytes);
  return make_tensor(*buf, dt, rows, cols);
}

void check_tokens(const std::vector<int32_t>& tokens, int64_t V) {
  for (int32_t t : tokens)
    if (t < 0 || t >= V) fail("[executor] token id ", t, " is outside the vocabulary (0..", V - 1, ")");
}

}  // namespace

std::vector<float> Executor::prefill(const std::vector<int32_t>& tokens, SequenceState& state,
                                     const PrefillOptions& opts) {
  const ModelConfig& c = config_;
  const int64_t D = c.d_model, E = c.d_inner, N = c.d_state, R = c.dt_rank, V = c.padded_vocab;
  int64_t L = int64_t(tokens.size());
  if (L == 0) fail("[executor] prefill needs at least one token");
  if (opts.n_logits < 1 || opts.n_logits > L)
    fail("[executor] n_logits must be in 1..", L, ", got ", opts.n_logits);
  const int64_t r = std::min<int64_t>(opts.protect_tail < 0 ? opts.n_logits : opts.protect_tail, L);
  if (r < opts.n_logits)
    fail("[executor] protect_tail (", r, ") must cover the ", opts.n_logits, " logit positions");
  check_tokens(tokens, V);
  Backend& be = backend_;
  auto& pool = w_->scratch;
  auto buf = [&](const char* role, int64_t rows, int64_t cols, DType dt = DType::F32) {
    return scratch(be, pool, role, rows, cols, dt);
  };

  // Size every scratch role for the full length up front: lengths only shrink from here, so no
  // buffer is reallocated while queued work may still use it.
  for (const auto& [role, cols] : std::initializer_list<std::pair<const char*, int64_t>>{
           {"residual_a", D}, {"residual_b", D}, {"normed", D}, {"xz", 2 * E}, {"xc", E},
           {"x_dbl", R + 2 * N}, {"dt", E}, {"scores", 1}, {"xc_kept", E},
           {"x_dbl_kept", R + 2 * N}, {"z_kept", E}, {"y", E}, {"hidden", D}})
    buf(role, L, cols);
  buf("kept", L, 1, DType::I32);
  buf("logits", opts.n_logits, V);

  Tensor ids = buf("ids", L, 1, DType::I32);  // (L) token ids
  be.upload(*ids.buf, 0, tokens.data(), tokens.size() * sizeof(int32_t));
  // Two residual buffers: a decimating layer gathers the kept rows from one into the other.
  Tensor residual = buf("residual_a", L, D);  // (L, D) pre-norm sum entering the layer
  Tensor residual_alt = buf("residual_b", L, D);
  be.gather_rows(w_->embedding, ids, residual);  // (L, D) embeddings
  Tensor hidden;                                 // (L, D) mixer output of the previous layer

  for (int l = 0; l < c.n_layer; ++l) {
    const DeviceWeights::Layer& w = w_->layers[size_t(l)];
    Tensor normed = buf("normed", L, D);  // (L, D)
    Tensor xz = buf("xz", L, 2 * E);      // (L, 2E) x | z
    // residual += hidden (not at layer 0), normed = rms_norm(residual), xz = in_proj(normed)
    be.rms_norm_gemm(l == 0 ? nullptr : &hidden, residual, w.norm, c.norm_eps, normed, w.in_proj,
                     opt(w.in_proj_bias), xz);
    Tensor x = xz.col_slice(0, E);    // (L, E) conv input
    Tensor z = xz.col_slice(E, E);    // (L, E) gate
    Tensor xc = buf("xc", L, E);      // (L, E) conv output after SiLU: the scan input u
    Tensor x_dbl = buf("x_dbl", L, R + 2 * N);  // (L, R + 2N) dt_low | B | C
    // xc = conv(x), x_dbl = x_proj(xc). The conv state is written from this layer's full input,
    // before its own decimation.
    be.causal_conv1d_gemm(x, w.conv_w, opt(w.conv_b), state.conv(l), xc, w.x_proj, x_dbl);

    // DeciMamba: keep the K highest-Δ tokens of the first L − r; the tail r is always kept.
    const int64_t K = decimation_keep(decimation_, l, L, r);
    if (K < L - r) {
      const int64_t L_out = K + r;
      Tensor scores = buf("scores", L, 1);              // (L) ‖softplus(dt + b)‖₂
      Tensor kept = buf("kept", L_out, 1, DType::I32);  // (L_out) ascending positions
      // Every token's Δ is needed only for its score: the projection may go straight into the
      // scores (dt_all is the composition's scratch); the kept rows are projected again below.
      Tensor dt_all = buf("dt", L, E);  // (L, E)
      be.dt_proj_importance(x_dbl.col_slice(0, R), w.dt_proj, dt_all, w.dt_bias, scores);
      be.topk_indices(scores, L - r, K, kept);
      Tensor xc_k = buf("xc_kept", L_out, E);
      Tensor x_dbl_k = buf("x_dbl_kept", L_out, R + 2 * N);
      Tensor z_k = buf("z_kept", L_out, E);
      Tensor residual_k = residual_alt.row_slice(0, L_out);
      be.gather_rows(xc, kept, xc_k);
      be.gather_rows(x_dbl, kept, x_dbl_k);
      be.gather_rows(z, kept, z_k);
      be.gather_rows(residual, kept, residual_k);
      if (opts.tap) opts.tap->on_kept(l, kept);
      std::swap(residual, residual_alt);
      residual = residual_k;
      xc = xc_k, x_dbl = x_dbl_k, z = z_k;
      L = L_out;
    }
    Tensor dt = buf("dt", L, E);  // (L, E) Δ before bias and softplus
    be.gemm(x_dbl.col_slice(0, R), w.dt_proj, nullptr, dt);
    Tensor B = x_dbl.col_slice(R, N);      // (L, N)
    Tensor C = x_dbl.col_slice(R + N, N);  // (L, N)
    if (opts.tap) opts.tap->on_scan_inputs(l, xc, dt, B, C);

    Tensor y = buf("y", L, E);     // (L, E) gated scan output (scratch: see selective_scan_gemm)
    hidden = buf("hidden", L, D);  // (L, D) mixer output = out_proj(y)
    be.selective_scan_gemm(xc, dt, w.A_log, B, C, w.D, &z, w.dt_bias, state.ssm(l), y,
                           w.out_proj, opt(w.out_proj_bias), hidden);
    if (opts.tap) opts.tap->on_layer(l, residual, hidden);
    if (opts.on_progress) opts.on_progress(l + 1, int(c.n_layer));
  }

  // Only the last n_logits rows reach the LM head; they are original positions (never dropped).
  const int64_t n = opts.n_logits;
  Tensor hidden_tail = hidden.row_slice(L - n, n);      // (n, D)
  Tensor residual_tail = residual.row_slice(L - n, n);  // (n, D)
  Tensor normed = buf("normed", n, D);                  // (n, D) after norm_f
  be.rms_norm(hidden_tail, &residual_tail, w_->norm_f, normed, c.norm_eps);
  Tensor logits = buf("logits", n, V);  // (n, V)
  be.gemm(normed, w_->lm_head, nullptr, logits);
  std::vector<float> out(size_t(n * V));
  be.download(*logits.buf, logits.offset, out.data(), out.size() * sizeof(float));
  state.tokens_seen += int64_t(tokens.size());
  return out;
}

// The step's buffers: the token id in, the logits out, activations between. Sized for one token
// of this model, so they are allocated on the first step and never again.
// The id slots: picks (kGreedyUnrollMax × 1) holds the picks of a recording of greedy steps in
// its last rows, in step order; its last row is where every step's token id is read from (ids)
// and where a greedy step's pick goes (pick), unless it is one of several steps in a row.
struct Executor::StepTensors {
  Tensor picks, ids, pick, residual, hidden, normed, xz, xc, x_dbl, dt, y, logits;
};

Executor::StepTensors Executor::step_tensors() {
  const ModelConfig& c = config_;
  const int64_t D = c.d_model, E = c.d_inner, N = c.d_state, R = c.dt_rank, V = c.padded_vocab;
  auto buf = [&](const char* role, int64_t rows, int64_t cols, DType dt = DType::F32) {
    return scratch(backend_, w_->scratch, std::string("step_") + role, rows, cols, dt);
  };
  StepTensors t;
  t.picks = buf("ids", kGreedyUnrollMax, 1, DType::I32);
  t.ids = t.picks.row_slice(kGreedyUnrollMax - 1, 1);  // (1) the step's token id
  t.pick = t.ids;                                      // (1) a greedy step's pick
  t.residual = buf("residual", 1, D);  // (1, D)
  t.hidden = buf("hidden", 1, D);      // (1, D) mixer output
  t.normed = buf("normed", 1, D);      // (1, D)
  t.xz = buf("xz", 1, 2 * E);          // (1, 2E)
  t.xc = buf("xc", 1, E);              // (1, E)
  t.x_dbl = buf("x_dbl", 1, R + 2 * N);
  t.dt = buf("dt", 1, E);
  t.y = buf("y", 1, E);
  t.logits = buf("logits", 1, V);
  return t;
}

// The kernels of one step: token id from t.ids (device), logits to t.logits. No host transfer,
// so it can be recorded. One Backend call per layer (mamba_block_step: the four decode fusions
// of backend.h in order, or one kernel where the backend has it), then the LM head.
void Executor::enqueue_step(const StepTensors& t, SequenceState& state, int64_t greedy_n) {
  const ModelConfig& c = config_;
  Backend& be = backend_;
  be.gather_rows(w_->embedding, t.ids, t.residual);  // (1, D) the token's embedding
  bool normed_ready = false;  // the layer before ran this layer's norm (next_norm)
  for (int l = 0; l < c.n_layer; ++l) {
    const DeviceWeights::Layer& w = w_->layers[size_t(l)];
    MambaBlockStepArgs a;
    // residual += hidden: not at layer 0, nor where the layer before already added it (next_norm)
    a.x = l == 0 || normed_ready ? nullptr : &t.hidden;
    a.normed_ready = normed_ready;
    a.residual = t.residual;              // (1, D)
    a.norm_weight = w.norm;
    a.eps = c.norm_eps;
    a.normed = t.normed;                  // (1, D)
    a.in_proj = w.in_proj;
    a.in_proj_bias = opt(w.in_proj_bias);
    a.xz = t.xz;                          // (1, 2E) x | z
    a.conv_weight = w.conv_w;
    a.conv_bias = opt(w.conv_b);
    a.conv_state = state.conv(l);         // advanced by one token
    a.xc = t.xc;                          // (1, E) SiLU(conv step of x)
    a.x_proj = w.x_proj;
    a.x_dbl = t.x_dbl;                    // (1, R + 2N) dt_low | B | C
    a.dt_proj = w.dt_proj;
    a.dt = t.dt;                          // (1, E) Δ before bias and softplus
    a.A_log = w.A_log;
    a.D = w.D;
    a.dt_bias = w.dt_bias;
    a.ssm_state = state.ssm(l);           // advanced by one token
    a.y = t.y;                            // (1, E) gated scan output
    a.out_proj = w.out_proj;
    a.out_proj_bias = opt(w.out_proj_bias);
    a.hidden = t.hidden;                  // (1, D) mixer output, the next layer's x
    // Where the backend runs the next norm in this block's last kernel (decode_norm_tail):
    // residual += hidden and normed = the next layer's (or the final) norm, here.
    normed_ready = be.decode_norm_tail(a);
    if (normed_ready)
      a.next_norm = l + 1 < c.n_layer ? &w_->layers[size_t(l) + 1].norm : &w_->norm_f;
    be.mamba_block_step(a);
  }
  // residual += hidden; normed = norm_f(residual) (done by the last block where normed_ready);
  // logits (1, V) = normed · lm_headᵀ.
  if (normed_ready)
    be.gemm(t.normed, w_->lm_head, nullptr, t.logits);
  else
    be.rms_norm_gemm(&t.hidden, t.residual, w_->norm_f, c.norm_eps, t.normed, w_->lm_head,
                     nullptr, t.logits);
  // Greedy: the pick goes where the next step reads its token id from.
  if (greedy_n > 0) be.argmax(t.logits, greedy_n, t.pick);
}

// Steps in a row: step i of n writes its pick to id slot kGreedyUnrollMax - n + i and step i + 1
// reads it there, so the picks lie in step order in the last n slots and the last one ends in the
// token slot (t.ids), where the next step, recorded with these or not, reads it.
void Executor::enqueue_steps(const StepTensors& t, SequenceState& state, int64_t greedy_n,
                             int steps) {
  DM_ASSERT(steps == 1 || (greedy_n > 0 && steps <= kGreedyUnrollMax), "steps ", steps);
  StepTensors ti = t;  // step 0 reads t.ids
  for (int i = 0; i < steps; ++i) {
    ti.pick = t.picks.row_slice(kGreedyUnrollMax - steps + i, 1);
    enqueue_step(ti, state, greedy_n);
    ti.ids = ti.pick;  // the next step reads this one's pick
  }
}

void Executor::enqueue_step_kernels(SequenceState& state, int64_t greedy_n) {
  if (greedy_n != -1) check_greedy_n(greedy_n);  // -1: the logits step
  enqueue_step(step_tensors(), state, greedy_n);
}

Executor::StepTensors Executor::run_steps(int32_t token, SequenceState& state, int64_t greedy_n,
                                           int steps) {
  Backend& be = backend_;
  const StepTensors t = step_tensors();  // before any recording: nothing grows while recording
  // A greedy step leaves its pick in t.ids: the next step of a greedy loop needs no upload
  // (token -1, for a greedy step only: the pick itself, whatever it is).
  if (token == -1 && greedy_n > 0) {
    if (!ids_hold_pick_)
      fail("[greedy_enqueue] token -1 (the previous pick) but the step before was not greedy");
  } else {
    check_tokens({token}, config_.padded_vocab);
    if (ids_hold_ != token) be.upload(*t.ids.buf, t.ids.offset, &token, sizeof(token));
  }
  ids_hold_ = greedy_n > 0 ? -1 : token;  // a greedy step overwrites it with its pick
  ids_hold_pick_ = greedy_n > 0;

  Recording* rec = nullptr;
  if (step_replay_) {
    auto& recs = w_->step_recordings;
    const auto key = std::make_tuple(static_cast<const SequenceState*>(&state), greedy_n, steps);
    auto it = recs.find(key);
    if (it != recs.end() && !it->second->valid()) {
      recs.erase(it);  // a buffer it used is gone (this state was freed and its address reused,
      it = recs.end();  // or a step buffer was reallocated)
    }
    if (it == recs.end()) {
      for (auto j = recs.begin(); j != recs.end();) j = j->second->valid() ? std::next(j) : recs.erase(j);
      std::unique_ptr<Recording> r = be.record([&] { enqueue_steps(t, state, greedy_n, steps); });
      if (r) {  // nullptr: this backend does not record (the CPU), or not now (profiling)
        ++step_stats_.recorded;
        it = recs.emplace(key, std::move(r)).first;
      }
    }
    if (it != recs.end()) rec = it->second.get();
  }
  if (rec) {
    be.replay(*rec);
    step_stats_.replayed += steps;
  } else {
    enqueue_steps(t, state, greedy_n, steps);
    step_stats_.eager += steps;
  }
  state.tokens_seen += steps;
  return t;
}

void Executor::step(int32_t token, SequenceState& state, std::vector<float>& logits) {
  const StepTensors t = run_steps(token, state, -1, 1);
  logits.resize(static_cast<size_t>(config_.padded_vocab));  // no reallocation once sized
  backend_.download(*t.logits.buf, t.logits.offset, logits.data(), logits.size() * sizeof(float));
}

std::vector<float> Executor::step(int32_t token, SequenceState& state) {
  std::vector<float> out;
  step(token, state, out);
  return out;
}

int32_t Executor::step_greedy(int32_t token, SequenceState& state, int64_t n_usable) {
  if (const int64_t n = greedy_outstanding(); n > 0)
    fail("[step_greedy] ", n, " greedy picks enqueued and not taken");
  greedy_enqueue(token, state, n_usable);
  return greedy_take();
}

void Executor::check_greedy_n(int64_t n_usable) const {
  if (n_usable < 1 || n_usable > config_.padded_vocab)
    fail("[greedy] n_usable = ", n_usable, " must lie in [1, padded vocab = ",
         config_.padded_vocab, "]");
}

void Executor::set_greedy_unroll(int steps) {
  if (steps < 1 || steps > kGreedyUnrollMax)
    fail("[greedy] unroll ", steps, ": want 1 to ", kGreedyUnrollMax, " steps a recording");
  greedy_unroll_ = steps;
}

void Executor::greedy_enqueue(int32_t token, SequenceState& state, int64_t n_usable, int steps) {
  check_greedy_n(n_usable);
  if (steps < 1) fail("[greedy_enqueue] steps = ", steps, ": want at least 1");
  if (const int64_t n = greedy_outstanding(); n + steps > kGreedyAhead)
    fail("[greedy_enqueue] ", n, " picks outstanding and ", steps,
         " more would pass ", kGreedyAhead, ": take some first");
  while (steps > 0) {
    const int n = std::min(steps, greedy_unroll_);
    const StepTensors t = run_steps(token, state, n_usable, n);
    const Tensor picks = t.picks.row_slice(kGreedyUnrollMax - n, n);  // (n) in step order
    pending_picks_.push_back({backend_.download_start(*picks.buf, picks.offset,
                                                      size_t(n) * sizeof(int32_t)),
                              n});
    steps -= n;
    token = -1;  // the rest: fed the pick before
  }
}

int64_t Executor::greedy_outstanding() const {
  int64_t n = int64_t(taken_picks_.size());
  for (const PendingPicks& p : pending_picks_) n += p.count;
  return n;
}

int32_t Executor::greedy_take() {
  if (greedy_outstanding() == 0) fail("[greedy_take] no greedy step enqueued");
  if (taken_picks_.empty()) {
    const PendingPicks p = pending_picks_.front();
    pending_picks_.pop_front();
    int32_t ids[kGreedyUnrollMax];
    backend_.download_wait(p.ticket, ids);
    taken_picks_.insert(taken_picks_.end(), ids, ids + p.count);
  }
  const int32_t id = taken_picks_.front();
  taken_picks_.pop_front();
  if (ids_hold_pick_ && greedy_outstanding() == 0) ids_hold_ = id;  // the last pick: now known
  return id;
}

}  // namespace dm
