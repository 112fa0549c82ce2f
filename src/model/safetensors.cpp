// safetensors: u64 little-endian header length N, N bytes of JSON header, then the data section.
// The header maps names to {dtype, shape, data_offsets: [begin, end)} relative to the data
// section, plus an optional "__metadata__" string map. Everything the header claims is checked
// against the file before any tensor is handed out, so a bad file fails here with one line
// instead of crashing a kernel later.
#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/error.h"

namespace dm {
namespace {

using nlohmann::json;

// The reference implementation refuses headers above 100 MB; a larger claim is corruption.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

// The dtypes the safetensors format names that this runtime does not store; listed so an
// unsupported-but-valid dtype and a garbage string get the same clear message.
bool parse_dtype(const std::string& s, DType& out) {
  if (s == "F32")
    out = DType::F32;
  else if (s == "F16")
    out = DType::F16;
  else if (s == "BF16")
    out = DType::BF16;
  else if (s == "I32")
    out = DType::I32;  // index / token-id fixtures
  else
    return false;
  return true;
}

std::string json_error(const json::exception& e) {
  std::string why = e.what();
  if (const size_t p = why.find("] "); p != std::string::npos) why = why.substr(p + 2);
  return why;
}

bool read_u64(const json& v, uint64_t& out) {
  if (!v.is_number_unsigned()) return false;  // refuses negatives and 4.0 alike
  out = v.get<uint64_t>();
  return true;
}

struct Span {
  uint64_t begin, end;
  const std::string* name;
};

}  // namespace

int64_t HostTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string HostTensor::shape_str() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

SafeTensorsFile::~SafeTensorsFile() {
  if (map_) munmap(map_, map_bytes_);
}

std::unique_ptr<SafeTensorsFile> SafeTensorsFile::open(const std::string& path) {
  std::unique_ptr<SafeTensorsFile> f(new SafeTensorsFile());
  f->path_ = path;

  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("[safetensors] ", path, ": cannot open: ", std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("[safetensors] ", path, ": not a regular file");
  }
  const uint64_t size = uint64_t(st.st_size);
  if (size < 8) {
    ::close(fd);
    fail("[safetensors] ", path, ": truncated: file is ", size,
         " bytes, shorter than the 8-byte header length");
  }
  // Read-only private mapping: pages come from the page cache on first touch, nothing is copied.
  void* map = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (map == MAP_FAILED) fail("[safetensors] ", path, ": mmap failed: ", std::strerror(map_errno));
  f->map_ = map;
  f->map_bytes_ = size;
  const auto* base = static_cast<const uint8_t*>(map);

  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | base[i];
  if (header_len > size - 8)
    fail("[safetensors] ", path, ": header length ", header_len, " runs past the end of the file (",
         size, " bytes)");
  if (header_len > kMaxHeaderBytes)
    fail("[safetensors] ", path, ": header length ", header_len, " is implausibly large (limit ",
         kMaxHeaderBytes, ")");
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_bytes = size - data_start;

  // A repeated tensor name would silently keep only the last entry; catch it while parsing.
  std::string duplicate;
  std::set<std::string> names;
  auto on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth == 1 && event == json::parse_event_t::key && parsed.is_string() &&
        !names.insert(parsed.get<std::string>()).second && duplicate.empty())
      duplicate = parsed.get<std::string>();
    return true;
  };
  json header;
  try {
    header = json::parse(reinterpret_cast<const char*>(base + 8),
                         reinterpret_cast<const char*>(base + data_start), on_event);
  } catch (const json::parse_error& e) {
    fail("[safetensors] ", path, ": invalid JSON header: ", json_error(e));
  }
  if (!duplicate.empty())
    fail("[safetensors] ", path, ": tensor ", duplicate, " appears twice in the header");
  if (!header.is_object()) fail("[safetensors] ", path, ": header is not a JSON object");

  std::vector<Span> spans;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) fail("[safetensors] ", path, ": __metadata__ is not an object");
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string())
          fail("[safetensors] ", path, ": __metadata__ value for \"", k, "\" is not a string");
        f->metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") ||
        !entry.contains("data_offsets"))
      fail("[safetensors] ", path, ": tensor ", name,
           ": entry needs dtype, shape and data_offsets");

    HostTensor t;
    t.name = name;
    t.file = path;
    const json& dt = entry["dtype"];
    if (!dt.is_string()) fail("[safetensors] ", path, ": tensor ", name, ": dtype is not a string");
    if (!parse_dtype(dt.get<std::string>(), t.dtype))
      fail("[safetensors] ", path, ": unsupported dtype ", dt.get<std::string>(), " for tensor ",
           name, " (supported: F32, F16, BF16, I32)");

    const json& shape = entry["shape"];
    if (!shape.is_array())
      fail("[safetensors] ", path, ": tensor ", name, ": shape is not an array");
    uint64_t numel = 1;
    for (const json& d : shape) {
      uint64_t dim = 0;
      if (!read_u64(d, dim) || dim > uint64_t(INT64_MAX))
        fail("[safetensors] ", path, ": tensor ", name, ": shape ", shape.dump(),
             " has an entry that is not a non-negative integer");
      if (__builtin_mul_overflow(numel, dim, &numel))
        fail("[safetensors] ", path, ": tensor ", name, ": shape ", shape.dump(), " overflows");
      t.shape.push_back(int64_t(dim));
    }

    const json& off = entry["data_offsets"];
    uint64_t begin = 0, end = 0;
    if (!off.is_array() || off.size() != 2 || !read_u64(off[0], begin) || !read_u64(off[1], end))
      fail("[safetensors] ", path, ": tensor ", name, ": data_offsets ", off.dump(),
           " is not [begin, end] with non-negative integers");
    if (begin > end)
      fail("[safetensors] ", path, ": tensor ", name, ": data_offsets [", begin, ", ", end,
           "] has begin > end");
    if (end > data_bytes)
      fail("[safetensors] ", path, ": tensor ", name, ": data_offsets [", begin, ", ", end,
           "] run past the end of the data section (", data_bytes,
           " bytes; file truncated or offsets out of range)");
    uint64_t want = 0;
    if (__builtin_mul_overflow(numel, uint64_t(dtype_size(t.dtype)), &want) || want != end - begin)
      fail("[safetensors] ", path, ": tensor ", name, ": size mismatch: data_offsets span ",
           end - begin, " bytes but shape ", shape.dump(), " x ", dtype_name(t.dtype), " needs ",
           numel, " x ", dtype_size(t.dtype), " bytes");

    t.bytes = size_t(end - begin);
    t.data = base + data_start + begin;
    auto [it, inserted] = f->tensors_.emplace(name, std::move(t));
    DM_ASSERT(inserted);  // JSON object keys are unique after parsing
    if (end > begin) spans.push_back({begin, end, &it->first});
  }

  // Empty tensors occupy no bytes and cannot overlap anything.
  std::sort(spans.begin(), spans.end(),
            [](const Span& a, const Span& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < spans.size(); ++i)
    if (spans[i].begin < spans[i - 1].end)
      fail("[safetensors] ", path, ": tensors ", *spans[i - 1].name, " [", spans[i - 1].begin, ", ",
           spans[i - 1].end, ") and ", *spans[i].name, " [", spans[i].begin, ", ", spans[i].end,
           ") overlap");

  for (auto& [name, t] : f->tensors_) {
    if (reinterpret_cast<uintptr_t>(t.data) % dtype_size(t.dtype) == 0) continue;
    // See the header: unaligned typed loads are undefined behaviour, so this one tensor is copied.
    auto copy = std::make_unique<uint64_t[]>((t.bytes + 7) / 8);
    std::memcpy(copy.get(), t.data, t.bytes);
    t.data = copy.get();
    f->aligned_copies_.push_back(std::move(copy));
  }
  return f;
}

const HostTensor* WeightFiles::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

std::unique_ptr<WeightFiles> WeightFiles::open_dir(const std::string& model_dir) {
  namespace fs = std::filesystem;
  auto w = std::make_unique<WeightFiles>();
  const fs::path dir(model_dir);
  const fs::path single = dir / "model.safetensors";
  const fs::path index_path = dir / "model.safetensors.index.json";

  // Like transformers: a single file wins over an index when both are present.
  std::error_code ec;
  if (fs::exists(single, ec)) {
    w->source_ = single.string();
    w->files_.push_back(SafeTensorsFile::open(w->source_));
    for (const auto& [name, t] : w->files_.back()->tensors()) w->index_[name] = &t;
    return w;
  }
  if (!fs::exists(index_path, ec))
    fail("[model] ", model_dir, ": no model.safetensors or model.safetensors.index.json");

  const std::string ipath = index_path.string();
  w->source_ = ipath;
  std::ifstream in(index_path, std::ios::binary);
  if (!in) fail("[safetensors] ", ipath, ": cannot open");
  std::ostringstream text;
  text << in.rdbuf();
  json index;
  try {
    index = json::parse(text.str());
  } catch (const json::parse_error& e) {
    fail("[safetensors] ", ipath, ": invalid JSON: ", json_error(e));
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    fail("[safetensors] ", ipath, ": no \"weight_map\" object");

  // Open each shard once, in name order so errors are deterministic.
  std::map<std::string, std::string> shard_of;  // tensor → shard file name
  std::map<std::string, SafeTensorsFile*> shards;
  for (const auto& [name, shard] : index["weight_map"].items()) {
    if (!shard.is_string())
      fail("[safetensors] ", ipath, ": weight_map entry for ", name, " is not a string");
    const std::string file = shard.get<std::string>();
    // A shard is a file next to the index; a path could reach outside the model directory.
    if (file.empty() || file.find('/') != std::string::npos || file == "." || file == "..")
      fail("[safetensors] ", ipath, ": shard name \"", file, "\" for tensor ", name,
           " is not a plain file name");
    shard_of[name] = file;
    shards.emplace(file, nullptr);
  }
  for (auto& [file, ptr] : shards) {
    const fs::path p = dir / file;
    if (!fs::exists(p, ec)) {
      const auto user = std::find_if(shard_of.begin(), shard_of.end(),
                                     [&](const auto& kv) { return kv.second == file; });
      fail("[safetensors] ", ipath, ": shard ", file, " (listed for tensor ", user->first,
           ") does not exist");
    }
    w->files_.push_back(SafeTensorsFile::open(p.string()));
    ptr = w->files_.back().get();
  }

  std::map<std::string, std::string> found_in;  // tensor → shard that holds it
  for (const auto& [file, st] : shards)
    for (const auto& [name, t] : st->tensors()) {
      if (auto prev = found_in.find(name); prev != found_in.end())
        fail("[safetensors] ", ipath, ": tensor ", name, " is in two shards: ", prev->second,
             " and ", file);
      found_in[name] = file;
      w->index_[name] = &t;
    }
  for (const auto& [name, file] : shard_of) {
    auto it = found_in.find(name);
    if (it == found_in.end())
      fail("[safetensors] ", (dir / file).string(), ": tensor ", name,
           " is listed in the index for this shard but absent from it");
    if (it->second != file)
      fail("[safetensors] ", ipath, ": tensor ", name, " is listed for shard ", file,
           " but found in ", it->second);
  }
  for (const auto& [name, file] : found_in)
    if (!shard_of.count(name))
      fail("[safetensors] ", (dir / file).string(), ": tensor ", name,
           " is not listed in the index's weight_map");
  return w;
}

}  // namespace dm
