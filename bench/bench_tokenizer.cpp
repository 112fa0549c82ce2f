// Tokenizer throughput, and the C++ side of the oracle tooling in tools/tokenizer/.
//   bench_tokenizer bench TOKENIZER_JSON TEXTS.bin [REPEAT]   MB/s encoding TEXTS (one thread)
//   bench_tokenizer corpus N SEED OUT.bin                     the seeded test corpus
//   bench_tokenizer encode TOKENIZER_JSON IN.bin OUT.bin [--parse-special]
// Texts files: u32 count, then per text u32 length + bytes. Ids files: u32 count, then per text
// u32 n + n u32 ids. All little-endian.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "../tests/test_hf_tokenizer_corpus.h"
#include "core/error.h"
#include "text/hf_tokenizer.h"

namespace {

void put_u32(std::ofstream& o, uint32_t v) { o.write(reinterpret_cast<const char*>(&v), 4); }
uint32_t get_u32(std::ifstream& in) {
  uint32_t v = 0;
  in.read(reinterpret_cast<char*>(&v), 4);
  if (!in) dm::fail("[bench_tokenizer] truncated file");
  return v;
}

std::vector<std::string> read_texts(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) dm::fail("[bench_tokenizer] cannot open ", path);
  const uint32_t n = get_u32(in);
  std::vector<std::string> texts(n);
  for (auto& t : texts) {
    t.resize(get_u32(in));
    in.read(t.data(), std::streamsize(t.size()));
  }
  return texts;
}

int usage() {
  std::fprintf(stderr,
               "usage: bench_tokenizer bench TOKENIZER_JSON TEXTS.bin [REPEAT]\n"
               "       bench_tokenizer corpus N SEED OUT.bin\n"
               "       bench_tokenizer encode TOKENIZER_JSON IN.bin OUT.bin [--parse-special]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 2) return usage();
    const std::string mode = argv[1];
    if (mode == "corpus" && argc == 5) {
      const auto texts = dm::test::corpus(std::stoull(argv[3]), std::stoull(argv[2]));
      std::ofstream o(argv[4], std::ios::binary);
      put_u32(o, uint32_t(texts.size()));
      for (const auto& t : texts) {
        put_u32(o, uint32_t(t.size()));
        o.write(t.data(), std::streamsize(t.size()));
      }
      return o ? 0 : 1;
    }
    if (mode == "encode" && (argc == 5 || argc == 6)) {
      const bool parse_special = argc == 6 && std::strcmp(argv[5], "--parse-special") == 0;
      dm::HfTokenizer tok(argv[2]);
      const auto texts = read_texts(argv[3]);
      std::ofstream o(argv[4], std::ios::binary);
      put_u32(o, uint32_t(texts.size()));
      for (const auto& t : texts) {
        const auto ids = tok.encode(t, parse_special);
        put_u32(o, uint32_t(ids.size()));
        for (int32_t id : ids) put_u32(o, uint32_t(id));
      }
      return o ? 0 : 1;
    }
    if (mode == "bench" && (argc == 4 || argc == 5)) {
      const int repeat = argc == 5 ? std::stoi(argv[4]) : 5;
      const auto t0 = std::chrono::steady_clock::now();
      dm::HfTokenizer tok(argv[2]);
      const double load_s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const auto texts = read_texts(argv[3]);
      size_t bytes = 0;
      for (const auto& t : texts) bytes += t.size();
      double best = 1e30, first = 0;
      size_t n_ids = 0;
      for (int r = 0; r < repeat; ++r) {
        const auto a = std::chrono::steady_clock::now();
        size_t ids = 0;
        for (const auto& t : texts) ids += tok.encode(t).size();
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
        if (r == 0) first = s;
        best = std::min(best, s);
        n_ids = ids;
      }
      std::printf("decimamba  load %.3f s  %zu texts, %.2f MB, %zu ids  first pass %.1f MB/s  "
                  "best of %d %.1f MB/s\n",
                  load_s, texts.size(), bytes / 1e6, n_ids, bytes / 1e6 / first, repeat,
                  bytes / 1e6 / best);
      return 0;
    }
    return usage();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_tokenizer: %s\n", e.what());
    return 1;
  }
}
