// Memory-mapped safetensors files. The tensors are views into the mapping, never copies.
// Every structural problem is a dm::Error "[safetensors] <path>: <what>": truncated file, header
// length past the end, bad JSON, unknown dtype, size ≠ shape × dtype, offsets out of range or
// overlapping.
//
// Alignment: a tensor's bytes start at 8 + header length + begin. Current safetensors writers
// pad the header to 8 bytes and order tensors by dtype size, so every tensor is aligned for its
// dtype (save_pretrained output is). Older or hand-written files can be unaligned; such a
// tensor is copied once into an aligned buffer owned by the file, so typed loads (load_as_f32)
// stay well defined under UBSan and on strict-alignment CPUs. Aligned tensors stay views into
// the mapping.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace dm {

struct HostTensor {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // inside the mapping (or an aligned copy, see above)
  size_t bytes = 0;
  std::string file;  // for error messages

  int64_t numel() const;
  std::string shape_str() const;  // "[1536, 768]"
};

class SafeTensorsFile {
 public:
  static std::unique_ptr<SafeTensorsFile> open(const std::string& path);
  ~SafeTensorsFile();
  const std::string& path() const { return path_; }
  const std::map<std::string, HostTensor>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafeTensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  std::map<std::string, HostTensor> tensors_;
  std::map<std::string, std::string> metadata_;
  std::vector<std::unique_ptr<uint64_t[]>> aligned_copies_;  // only for unaligned tensors
};

// One model.safetensors, or model.safetensors.index.json and its shards, as one name → tensor map.
class WeightFiles {
 public:
  static std::unique_ptr<WeightFiles> open_dir(const std::string& model_dir);
  // nullptr when absent.
  const HostTensor* find(const std::string& name) const;
  const std::map<std::string, const HostTensor*>& all() const { return index_; }
  // model.safetensors or model.safetensors.index.json: named by errors about absent tensors.
  const std::string& source() const { return source_; }

 private:
  std::string source_;
  std::vector<std::unique_ptr<SafeTensorsFile>> files_;
  std::map<std::string, const HostTensor*> index_;
};

}  // namespace dm
