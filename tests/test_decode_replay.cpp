// Decode as one recorded unit (Backend::record / replay, Executor::step): N steps replayed give
// bit-identical logits and states to the same steps enqueued kernel by kernel, on every backend
// present (CUDA graphs, Vulkan command buffers; the CPU backend does not record and runs eager),
// on every fixture model; recordings follow their sequence state and are made again when a
// buffer they use is freed. Vulkan also with its decode layer's other forms: "vulkan:block=4"
// and "vulkan:block=0" set DM_VULKAN_BLOCK_STEP (the default is three dispatches per layer; the
// composed layer moves each norm into the out_proj before it), "vulkan:block=0:tail=0" also
// DM_VULKAN_NORM_TAIL (the norm in front); "vulkan:copies=1:fold=1" records every step once
// (the default twice, replayed in turn: DM_VULKAN_REPLAY_COPIES) and submits a replay with the
// download after it (DM_VULKAN_REPLAY_FOLD).
// CUDA also with "cuda:form=3" (DM_CUDA_DECODE_FORM: x_proj folded into the kernels around it
// where that applies; the default keeps it a GEMV of its own) and "cuda:form=4" (the norm a
// kernel of its own; the default folds it into in_proj).
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "backend/backend.h"
#include "backend_cache.h"
#include "fixture_util.h"
#include "model/executor.h"
#include "model/greedy_stream.h"
#include "text/sampler.h"

namespace dm {
namespace {

using test::as_ints;

std::vector<std::string> backends() {
  std::vector<std::string> out;
  for (const BackendInfo& b : list_backends())
    if (b.available) out.push_back(b.name);
  return out;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

using Param = std::tuple<std::string, std::string>;  // backend, fixture dir

class DecodeReplay : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    const auto& [entry, dir] = GetParam();
    if (dir.empty()) GTEST_SKIP() << "no fixtures under " << test::data_dir() << "/models";
    const std::string be = test::apply_entry_env(entry);  // block=, tail=, form= settings
    model = load_model(dir);
    ref = SafeTensorsFile::open(dir + "/reference.safetensors");
    backend = be == "cpu" ? (own = create_backend("cpu")).get() : &test::cached_backend(be);
    what = entry + " (" + backend->device_name() + ") " + std::filesystem::path(dir).filename().string();
    prompt = as_ints(ref->tensors().at("prompt_ids"));
    records = be != "cpu";
  }
  void TearDown() override {
    test::clear_entry_env();
  }
  // Greedy: n steps from the prompt's last logits; the logits of every step.
  std::vector<std::vector<float>> run(Executor& ex, SequenceState& st, int n,
                                      const std::vector<int32_t>& p) {
    std::vector<std::vector<float>> out;
    auto lg = ex.prefill(p, st);
    const int64_t V = model->config.padded_vocab;
    for (int i = 0; i < n; ++i) {
      lg = ex.step(argmax(lg.data(), V), st);
      out.push_back(lg);
    }
    return out;
  }
  std::unique_ptr<Model> model;
  std::unique_ptr<SafeTensorsFile> ref;
  std::unique_ptr<Backend> own;
  Backend* backend = nullptr;
  std::string what;
  std::vector<int32_t> prompt;
  bool records = false;
};

TEST_P(DecodeReplay, ReplayedStepsAreBitIdenticalToEager) {
  constexpr int kSteps = 12;
  Executor replayed(*backend, *model), eager(*backend, *model);
  eager.set_step_replay(false);
  ASSERT_TRUE(replayed.step_replay());
  auto s1 = replayed.new_state(), s2 = eager.new_state();
  const auto a = run(replayed, *s1, kSteps, prompt);
  const auto b = run(eager, *s2, kSteps, prompt);
  for (int i = 0; i < kSteps; ++i) ASSERT_TRUE(same_bits(a[i], b[i])) << what << " step " << i;
  EXPECT_TRUE(same_bits(s1->save(), s2->save())) << what << ": states after decode";
  EXPECT_EQ(eager.step_stats().eager, kSteps);
  EXPECT_EQ(eager.step_stats().replayed, 0);
  if (records) {
    EXPECT_EQ(replayed.step_stats().recorded, 1) << what;
    EXPECT_EQ(replayed.step_stats().replayed, kSteps) << what;
  } else {
    EXPECT_EQ(replayed.step_stats().recorded, 0) << what;
    EXPECT_EQ(replayed.step_stats().eager, kSteps) << what;
  }
}

TEST_P(DecodeReplay, RecordingPerStateAndRemadeWhenStateIsFreed) {
  constexpr int kSteps = 5;
  Executor replayed(*backend, *model), eager(*backend, *model);
  eager.set_step_replay(false);
  const std::vector<int32_t> p2(prompt.begin(), prompt.begin() + std::max<size_t>(1, prompt.size() / 2));
  const int64_t V = model->config.padded_vocab;
  // Two sequences interleaved on one executor: each replays its own recording.
  auto ra = replayed.new_state(), rb = replayed.new_state();
  auto ea = eager.new_state(), eb = eager.new_state();
  auto la = replayed.prefill(prompt, *ra), lb = replayed.prefill(p2, *rb);
  auto ma = eager.prefill(prompt, *ea), mb = eager.prefill(p2, *eb);
  for (int i = 0; i < kSteps; ++i) {
    la = replayed.step(argmax(la.data(), V), *ra);
    lb = replayed.step(argmax(lb.data(), V), *rb);
    ma = eager.step(argmax(ma.data(), V), *ea);
    mb = eager.step(argmax(mb.data(), V), *eb);
    ASSERT_TRUE(same_bits(la, ma)) << what << " sequence a, step " << i;
    ASSERT_TRUE(same_bits(lb, mb)) << what << " sequence b, step " << i;
  }
  if (records) {
    EXPECT_EQ(replayed.step_stats().recorded, 2) << what;
  }
  // A state freed and a new one made (often at the same address, with buffers at the same
  // addresses): the old recording is dropped, a new one made, the results still exact.
  for (int round = 0; round < 2; ++round) {
    ra.reset();
    ra = replayed.new_state();
    ea = eager.new_state();
    const auto x = run(replayed, *ra, kSteps, prompt);
    const auto y = run(eager, *ea, kSteps, prompt);
    for (int i = 0; i < kSteps; ++i)
      ASSERT_TRUE(same_bits(x[i], y[i])) << what << " new state, round " << round << ", step " << i;
  }
  if (records) {
    EXPECT_EQ(replayed.step_stats().recorded, 4) << what;
  }
  // reset() keeps the buffers, so the recording too; a long prefill in between (which grows
  // the prefill buffers) does not touch the step's.
  ra->reset();
  ea->reset();
  std::vector<int32_t> longer = prompt;
  for (int k = 0; k < 3; ++k) longer.insert(longer.end(), prompt.begin(), prompt.end());
  const auto x = run(replayed, *ra, kSteps, longer);
  const auto y = run(eager, *ea, kSteps, longer);
  for (int i = 0; i < kSteps; ++i) ASSERT_TRUE(same_bits(x[i], y[i])) << what << " after reset, step " << i;
  if (records) {
    EXPECT_EQ(replayed.step_stats().recorded, 4) << what;
  }
  // Replay off: eager from now on, still the same numbers.
  replayed.set_step_replay(false);
  const int64_t before = replayed.step_stats().eager;
  const auto x2 = run(replayed, *ra, 2, prompt);
  const auto y2 = run(eager, *ea, 2, prompt);
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(same_bits(x2[i], y2[i])) << what << " replay off, step " << i;
  EXPECT_EQ(replayed.step_stats().eager, before + 2);
}

// Greedy steps (Executor::step_greedy: Backend::argmax on the device, only the id downloaded)
// pick what the host's argmax picks from the same step's logits, over the first n_usable
// logits only; a step fed the previous pick skips its upload, one fed another id uploads it.
// The states end bit-identical to the logits path's.
TEST_P(DecodeReplay, GreedyStepsPickOnTheDevice) {
  constexpr int kSteps = 9;
  Executor g(*backend, *model), l(*backend, *model);
  auto sg = g.new_state(), sl = l.new_state();
  const int64_t V = model->config.padded_vocab, n_usable = std::max<int64_t>(1, V * 3 / 4);
  const auto lg = g.prefill(prompt, *sg), ll = l.prefill(prompt, *sl);
  ASSERT_TRUE(same_bits(lg, ll)) << what;
  int32_t pick = argmax(lg.data(), n_usable);
  std::vector<float> logits;
  for (int i = 0; i < kSteps; ++i) {
    // Every third step is fed an id of the test's choosing instead of the previous pick.
    const int32_t feed = i % 3 == 2 ? int32_t((7919 * (i + 1)) % n_usable) : pick;
    pick = g.step_greedy(feed, *sg, n_usable);
    l.step(feed, *sl, logits);
    ASSERT_EQ(pick, argmax(logits.data(), n_usable)) << what << " step " << i;
    ASSERT_LT(pick, n_usable) << what;
  }
  EXPECT_TRUE(same_bits(sg->save(), sl->save())) << what << ": states after decode";
  EXPECT_EQ(sg->tokens_seen, sl->tokens_seen);
  if (records) {
    EXPECT_EQ(g.step_stats().recorded, 1) << what;
    EXPECT_EQ(g.step_stats().replayed, kSteps) << what;
  }
  // Both kinds of step on one state: each has its own recording, the picks still agree.
  for (int i = 0; i < 2; ++i) {
    l.step(pick, *sl, logits);
    const int32_t host = argmax(logits.data(), n_usable);
    const int32_t dev = l.step_greedy(host, *sl, n_usable);
    g.step(pick, *sg, logits);
    ASSERT_EQ(g.step_greedy(argmax(logits.data(), n_usable), *sg, n_usable), dev) << what;
    pick = dev;
  }
  if (records) {
    EXPECT_EQ(l.step_stats().recorded, 2) << what;
  }
  EXPECT_THROW(g.step_greedy(pick, *sg, 0), Error);
  EXPECT_THROW(g.step_greedy(pick, *sg, V + 1), Error);
}

// Greedy steps run ahead (greedy_enqueue with token -1: fed the previous pick on the device,
// up to kGreedyAhead outstanding): the same picks, in order, as step_greedy one at a time, and
// the same state. Token -1 after a step that was not greedy is refused.
TEST_P(DecodeReplay, GreedyStepsRunAhead) {
  constexpr int kSteps = 10;
  Executor a(*backend, *model), b(*backend, *model);
  auto sa = a.new_state(), sb = b.new_state();
  const int64_t V = model->config.padded_vocab;
  const int32_t first = argmax(a.prefill(prompt, *sa).data(), V);
  b.prefill(prompt, *sb);
  std::vector<int32_t> one_by_one{first}, ahead;
  for (int i = 0; i < kSteps; ++i) one_by_one.push_back(a.step_greedy(one_by_one.back(), *sa, V));
  b.greedy_enqueue(first, *sb, V);
  for (int enqueued = 1; enqueued < kSteps;) {
    b.greedy_enqueue(-1, *sb, V);
    ++enqueued;
    if (enqueued % 3 == 0 && enqueued < kSteps) {  // at times two ahead of the host
      b.greedy_enqueue(-1, *sb, V);
      ++enqueued;
    }
    while (b.greedy_outstanding() > 1) ahead.push_back(b.greedy_take());
  }
  while (b.greedy_outstanding() > 0) ahead.push_back(b.greedy_take());
  ASSERT_EQ(ahead.size(), size_t(kSteps)) << what;
  for (int i = 0; i < kSteps; ++i) ASSERT_EQ(ahead[i], one_by_one[i + 1]) << what << " step " << i;
  EXPECT_TRUE(same_bits(sa->save(), sb->save())) << what << ": states after decode";
  std::vector<float> logits;
  b.step(ahead.back(), *sb, logits);
  EXPECT_THROW(b.greedy_enqueue(-1, *sb, V), Error) << what;
  EXPECT_THROW(b.greedy_take(), Error) << what;
  for (int i = 0; i < Executor::kGreedyAhead; ++i) b.greedy_enqueue(0, *sb, V);
  EXPECT_THROW(b.greedy_enqueue(-1, *sb, V), Error) << what;
  while (b.greedy_outstanding() > 0) b.greedy_take();
  // An executor destroyed with picks outstanding leaves none behind on the backend: the next
  // executor's picks are its own.
  {
    Executor c(*backend, *model);
    auto sc = c.new_state();
    c.prefill(prompt, *sc);
    c.greedy_enqueue(first, *sc, V);
    c.greedy_enqueue(-1, *sc, V);
  }
  Executor d(*backend, *model);
  auto sd = d.new_state();
  d.prefill(prompt, *sd);
  EXPECT_EQ(d.step_greedy(first, *sd, V), one_by_one[1]) << what;
}

// Greedy steps several to a recording (greedy_enqueue with steps > 1, greedy_unroll() steps a
// recording, the rest of a call in a shorter one): the same picks in order as step_greedy one at
// a time, and the same state, whatever the unroll and however the calls split the steps;
// GreedyStream (what generation runs) the same again, and its steps run ahead still advance the
// state when their picks are never taken.
TEST_P(DecodeReplay, GreedyStepsUnrolled) {
  constexpr int kSteps = 13;
  Executor a(*backend, *model);
  auto sa = a.new_state();
  const int64_t V = model->config.padded_vocab;
  const int32_t first = argmax(a.prefill(prompt, *sa).data(), V);
  std::vector<int32_t> one_by_one{first};
  for (int i = 0; i < kSteps; ++i) one_by_one.push_back(a.step_greedy(one_by_one.back(), *sa, V));
  const std::vector<float> state_after = sa->save();
  for (int unroll : {1, 2, 3, 4, Executor::kGreedyUnrollMax}) {
    const std::string at = what + " unroll " + std::to_string(unroll);
    Executor b(*backend, *model);
    b.set_greedy_unroll(unroll);
    auto sb = b.new_state();
    b.prefill(prompt, *sb);
    std::vector<int32_t> got;
    int enqueued = 0;
    for (int steps : {5, 1, 7}) {  // 13 in calls of 5, 1 and 7 steps
      b.greedy_enqueue(enqueued == 0 ? first : -1, *sb, V, steps);
      enqueued += steps;
      while (b.greedy_outstanding() > 2) got.push_back(b.greedy_take());
    }
    while (b.greedy_outstanding() > 0) got.push_back(b.greedy_take());
    ASSERT_EQ(got.size(), size_t(kSteps)) << at;
    for (int i = 0; i < kSteps; ++i) ASSERT_EQ(got[i], one_by_one[i + 1]) << at << " step " << i;
    EXPECT_TRUE(same_bits(sb->save(), state_after)) << at << ": state after decode";
    EXPECT_EQ(sb->tokens_seen, sa->tokens_seen) << at;
    if (records) {
      EXPECT_EQ(b.step_stats().replayed, kSteps) << at;
      EXPECT_EQ(b.step_stats().eager, 0) << at;
    }
    // The stream: 13 steps, all picks taken; then 13 more of which only 3 are taken.
    Executor c(*backend, *model);
    c.set_greedy_unroll(unroll);
    auto sc = c.new_state();
    c.prefill(prompt, *sc);
    {
      GreedyStream stream(c, *sc, V, first, kSteps);
      for (int i = 0; i < kSteps; ++i) ASSERT_EQ(stream.next(), one_by_one[i + 1]) << at << " stream " << i;
      EXPECT_THROW(stream.next(), Error) << at;
      EXPECT_EQ(stream.enqueued(), kSteps) << at;
    }
    EXPECT_TRUE(same_bits(sc->save(), state_after)) << at << ": state after the stream";
    {
      GreedyStream stream(c, *sc, V, one_by_one.back(), kSteps);
      for (int i = 0; i < 3; ++i) stream.next();
      EXPECT_GT(stream.enqueued(), 3) << at << ": nothing run ahead";
      EXPECT_LE(stream.enqueued(), 3 + 2 * unroll) << at;
    }
    EXPECT_EQ(c.greedy_outstanding(), 0) << at;
    EXPECT_EQ(sc->tokens_seen, sa->tokens_seen + (c.step_stats().replayed + c.step_stats().eager) - kSteps) << at;
  }
  Executor b(*backend, *model);
  auto sb = b.new_state();
  b.prefill(prompt, *sb);
  EXPECT_THROW(b.set_greedy_unroll(0), Error);
  EXPECT_THROW(b.set_greedy_unroll(Executor::kGreedyUnrollMax + 1), Error);
  EXPECT_THROW(b.greedy_enqueue(first, *sb, V, 0), Error);
  EXPECT_THROW(b.greedy_enqueue(first, *sb, V, Executor::kGreedyAhead + 1), Error);
  b.greedy_enqueue(first, *sb, V, 2);
  EXPECT_THROW(GreedyStream(b, *sb, V, first, 4), Error) << "picks outstanding";
  EXPECT_EQ(b.greedy_take(), one_by_one[1]);
  EXPECT_EQ(b.greedy_take(), one_by_one[2]);
}

// DM_GREEDY_UNROLL sets new executors' unroll (1 to kGreedyUnrollMax) and DM_DECODE_REPLAY their
// replay (1 or 0); any other value is refused with one line naming it.
TEST_P(DecodeReplay, ExecutorEnvSwitches) {
  setenv("DM_GREEDY_UNROLL", "2", 1);
  EXPECT_EQ(Executor(*backend, *model).greedy_unroll(), 2);
  unsetenv("DM_GREEDY_UNROLL");
  EXPECT_EQ(Executor(*backend, *model).greedy_unroll(), 4);
  setenv("DM_DECODE_REPLAY", "0", 1);
  EXPECT_FALSE(Executor(*backend, *model).step_replay());
  unsetenv("DM_DECODE_REPLAY");
  EXPECT_TRUE(Executor(*backend, *model).step_replay());
  const std::pair<const char*, const char*> bad[] = {{"DM_GREEDY_UNROLL", "0"},
                                                     {"DM_GREEDY_UNROLL", "9"},
                                                     {"DM_GREEDY_UNROLL", "2x"},
                                                     {"DM_GREEDY_UNROLL", "-1"},
                                                     {"DM_DECODE_REPLAY", "off"}};
  for (const auto& [var, value] : bad) {
    setenv(var, value, 1);
    const std::string want = std::string(var) + "=" + value;
    try {
      Executor e(*backend, *model);
      ADD_FAILURE() << want << " accepted";
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(want), std::string::npos) << m;
      EXPECT_EQ(m.find('\n'), std::string::npos) << "not one line: " << m;
    }
    unsetenv(var);
  }
}

std::vector<Param> params() {
  std::vector<Param> out;
  auto dirs = test::fixture_models();
  if (dirs.empty()) dirs.push_back("");
  for (const auto& be : backends())
    for (const auto& d : dirs) {
      out.emplace_back(be, d);
      if (be == "vulkan")
        for (const char* form : {":block=4", ":block=0", ":block=0:tail=0", ":copies=1:fold=1"})
          out.emplace_back(be + form, d);
      if (be == "cuda") {
        out.emplace_back(be + ":form=3", d);  // x_proj folded away
        out.emplace_back(be + ":form=4", d);  // the norm a kernel of its own
      }
    }
  return out;
}

INSTANTIATE_TEST_SUITE_P(All, DecodeReplay, ::testing::ValuesIn(params()),
                         [](const ::testing::TestParamInfo<Param>& i) {
                           std::string n = std::get<0>(i.param) + "_" +
                                            std::filesystem::path(std::get<1>(i.param)).filename().string();
                           for (char& c : n)
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

// The Backend API itself: what may not happen while recording, and recovery after it.
TEST(BackendRecord, CpuDoesNotRecord) {
  auto cpu = create_backend("cpu");
  bool ran = false;
  EXPECT_EQ(cpu->record([&] { ran = true; }), nullptr);
  auto buf = cpu->alloc(16);
  (void)buf;
}

TEST(BackendRecord, TransfersThrowWhileRecordingAndTheBackendRecovers) {
  for (const auto& name : backends()) {
    if (name == "cpu") continue;
    Backend& be = test::cached_backend(name);
    auto buf = be.alloc(64);
    const float one = 1.f;
    EXPECT_THROW(be.record([&] { be.upload(*buf, 0, &one, 4); }), Error) << name;
    float out = 0;
    EXPECT_THROW(be.record([&] { be.download(*buf, 0, &out, 4); }), Error) << name;
    // Still usable, eager and recorded: y = x / rms(x) · w over one row of 4.
    const float x[4] = {1, 2, 3, 4}, w[4] = {1, 1, 1, 1};
    be.upload(*buf, 0, x, 16);
    be.upload(*buf, 16, w, 16);
    const Tensor tx = make_tensor(*buf, DType::F32, 1, 4), tw = make_tensor(*buf, DType::F32, 1, 4, 16),
                 ty = make_tensor(*buf, DType::F32, 1, 4, 32);
    auto rec = be.record([&] { be.rms_norm(tx, nullptr, tw, ty, 1e-5f); });
    ASSERT_NE(rec, nullptr) << name;
    EXPECT_TRUE(rec->valid());
    float y[4] = {};
    be.replay(*rec);
    be.download(*buf, 32, y, 16);
    EXPECT_NEAR(y[3], 4.f / std::sqrt(7.5f + 1e-5f), 1e-5) << name;
    const float x2[4] = {2, 2, 2, 2};
    be.upload(*buf, 0, x2, 16);
    be.replay(*rec);
    be.download(*buf, 32, y, 16);
    EXPECT_NEAR(y[0], 1.f, 1e-5) << name;
    buf.reset();
    EXPECT_FALSE(rec->valid()) << name << ": the buffer it used was freed";
    EXPECT_THROW(be.replay(*rec), Error) << name;
  }
}

}  // namespace
}  // namespace dm
