// decimamba info: what a model directory holds and which backends this binary can use.
#include <cstdio>
#include <memory>

#include "backend/backend.h"
#include "backend/vulkan/vulkan_backend.h"
#include "commands.h"
#include "common_options.h"
#include "core/error.h"
#include "model/weights.h"
#include "text/tokenizer.h"

namespace dmcli {
namespace {

struct InfoCli {
  CommonOptions common;
};

std::string with_commas(int64_t n) {
  std::string s = std::to_string(n);
  for (int i = int(s.size()) - 3; i > 0; i -= 3) s.insert(size_t(i), ",");
  return s;
}

int run(InfoCli& c) {
  require_model_dir(c.common.model_dir);
  const auto model = dm::load_model(c.common.model_dir);
  const dm::ModelConfig& m = model->config;
  std::printf("model      %s\n", model->dir.c_str());
  std::printf("config     %s dialect\n", m.dialect.c_str());
  std::printf(
      "shapes     d_model %lld, n_layer %lld, d_inner %lld, d_state %lld, d_conv %lld, "
      "dt_rank %lld\n",
      (long long)m.d_model, (long long)m.n_layer, (long long)m.d_inner, (long long)m.d_state,
      (long long)m.d_conv, (long long)m.dt_rank);
  std::printf("vocab      %lld (padded to %lld)\n", (long long)m.vocab_size,
              (long long)m.padded_vocab);
  std::printf("parameters %s\n", with_commas(model->parameter_count()).c_str());
  std::printf("weights    %s, lm_head %s\n",
              std::string(dm::dtype_name(model->weights.dtype)).c_str(),
              model->weights.tied ? "tied to the embedding" : "untied");
  // A model whose tokenizer does not load is still worth describing.
  try {
    const auto tok = dm::load_tokenizer(c.common.model_dir);
    std::printf("tokenizer  %s, vocab %lld, bos %d, eos %d\n", tok->kind().c_str(),
                (long long)tok->vocab_size(), tok->bos_id(), tok->eos_id());
  } catch (const dm::Error& e) {
    std::printf("tokenizer  none usable: %s\n", e.what());
  }
  std::printf("backends\n");
  for (const dm::BackendInfo& b : dm::list_backends()) {
    std::printf("  %-8s %-13s %s%s\n", b.name.c_str(), b.available ? "available" : "unavailable",
                b.detail.c_str(), b.software ? " [emulated on the CPU: auto skips it]" : "");
  }
  std::string why;
  const auto vk_devices = dm::list_vulkan_devices(&why);
  if (!vk_devices.empty()) std::printf("vulkan devices (--device N)\n");
  for (const auto& d : vk_devices)
    std::printf("  %d  %s\n", d.index, d.caps.c_str());
  // What --backend / --device resolve to; an unavailable choice is the error it would be anywhere.
  const auto backend = dm::create_backend(c.common.backend, c.common.device);
  std::printf("selected   %s (--backend %s): %s\n", backend->name().c_str(),
              c.common.backend.c_str(), backend->device_name().c_str());
  return 0;
}

}  // namespace

RunFn add_info(CLI::App& app) {
  auto c = std::make_shared<InfoCli>();
  CLI::App* cmd = app.add_subcommand("info", "Model shapes, parameters, tokenizer and backends");
  add_common_options(*cmd, c->common);
  return [c] { return run(*c); };
}

}  // namespace dmcli
