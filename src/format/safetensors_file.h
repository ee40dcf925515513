// Safetensors files, memory-mapped and validated: an 8-byte little-endian header length, a JSON
// header mapping tensor names to {dtype, shape, data_offsets}, then the data area. Also the index
// of a sharded checkpoint (model.safetensors.index.json).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "tensor/tensor_info.h"

namespace elutq {

class SafetensorsFile {
 public:
  // Maps and validates the whole file: header length within the file, header a JSON object, every
  // tensor's dtype F32/F16/BF16, shape non-negative, data_offsets inside the data area, matching
  // numel * element size, not overlapping and together covering the data area. __metadata__ is
  // ignored. Throws Error naming the file and the tensor on any violation.
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const { return file_->path(); }
  // Tensors with the names used in the file, in order of their data. Their data points into the
  // mapping and need not be aligned (the format pads the header only by convention): read it
  // with memcpy or unaligned loads.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }

 private:
  std::unique_ptr<MappedFile> file_;
  std::vector<TensorInfo> tensors_;
};

// model.safetensors.index.json: which shard file holds each tensor.
struct SafetensorsIndex {
  std::map<std::string, std::string> weight_map;  // tensor name -> shard file name
  std::vector<std::string> shards;                // distinct shard file names, first use first
};

// Reads and validates an index: a JSON object whose "weight_map" maps names to plain file names
// (no directories). Throws Error naming the index on anything else.
SafetensorsIndex read_safetensors_index(const std::string& index_path);

}  // namespace elutq
