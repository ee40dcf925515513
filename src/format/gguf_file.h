// GGUF v2/v3 files, memory-mapped and validated: the key/value metadata, the tensor directory
// and the aligned data area. Layout (all little-endian): "GGUF", u32 version, u64 tensor count,
// u64 kv count, the kv pairs (string key, u32 value type, value), the tensor infos (string name,
// u32 n_dims, u64 dims innermost first, u32 ggml type, u64 offset into the data area), padding to
// general.alignment, then the tensor data. A string is a u64 length and that many bytes.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/mapped_file.h"
#include "tensor/tensor_info.h"

namespace elutq {

// GGUF metadata value types, with their numbers in the specification.
enum class GgufType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};

// "u32", "string", "array", ...; "unknown(N)" otherwise.
std::string gguf_type_name(GgufType t);
// Bytes of one scalar of type t (0 for STRING and ARRAY, whose size varies).
uint64_t gguf_scalar_size(GgufType t);

// One metadata value as it lies in the mapping (validated, so decoding it cannot run off the end).
struct GgufValue {
  GgufType type = GgufType::U8;
  GgufType elem_type = GgufType::U8;  // ARRAY only
  uint64_t count = 0;                 // ARRAY: elements; STRING: bytes
  const uint8_t* data = nullptr;      // the scalar, the string bytes or the first array element
};

class GgufFile {
 public:
  // Maps and validates the whole file. Throws Error naming the file and the offending field on
  // anything malformed: magic, version (2 or 3), counts, lengths, value types, alignment, tensor
  // dims (1..4, positive), unknown tensor types, misaligned or out-of-file data, duplicate names.
  explicit GgufFile(const std::string& path);

  const std::string& path() const { return file_->path(); }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // start of the data area
  uint64_t file_size() const { return file_->size(); }
  const MappedFile& mapping() const { return *file_; }

  // Tensors in file order; shapes outermost first, data pointing into the mapping.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(const std::string& name) const;

  // Metadata keys in file order.
  const std::vector<std::string>& keys() const { return keys_; }
  bool has(const std::string& key) const { return find(key) != nullptr; }
  const GgufValue* find(const std::string& key) const;

  // Typed accessors. Integers convert between integer types when the value fits; floats accept
  // F32/F64. Each throws Error naming the key and the file when the key is missing or its type
  // does not fit; the *_or forms return the default when the key is absent (but still throw on a
  // wrong type).
  uint64_t get_u64(const std::string& key) const;
  int64_t get_i64(const std::string& key) const;
  uint32_t get_u32(const std::string& key) const;
  int32_t get_i32(const std::string& key) const;
  float get_f32(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  std::string get_string(const std::string& key) const;
  uint32_t get_u32_or(const std::string& key, uint32_t def) const;
  int64_t get_i64_or(const std::string& key, int64_t def) const;
  float get_f32_or(const std::string& key, float def) const;
  bool get_bool_or(const std::string& key, bool def) const;
  std::string get_string_or(const std::string& key, const std::string& def) const;

  // Arrays. Strings are views into the mapping (valid while this object lives).
  std::vector<std::string_view> get_string_array(const std::string& key) const;
  std::vector<float> get_f32_array(const std::string& key) const;
  std::vector<int64_t> get_int_array(const std::string& key) const;  // any integer element type
  uint64_t array_length(const std::string& key) const;

 private:
  const GgufValue& need(const std::string& key) const;

  std::unique_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::string> keys_;
  std::unordered_map<std::string, GgufValue> kv_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
};

// Decodes a scalar of an integer type as int64 / a float type as double (no range checks).
int64_t gguf_int_at(GgufType t, const uint8_t* p);
double gguf_float_at(GgufType t, const uint8_t* p);
bool gguf_is_int(GgufType t);

}  // namespace elutq
