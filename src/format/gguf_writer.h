// Writes GGUF v3 files, streaming: metadata and the tensor directory (name, shape, type, size) are
// declared first, the header is written with precomputed aligned offsets, then each tensor's bytes
// are appended in declared order as they become available (a model larger than RAM can be written
// one block at a time). The file appears under its final name only after finish() (core/atomic_file.h:
// a temporary, fsync'd and renamed; removed if the writer is destroyed or the process signalled).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "core/atomic_file.h"
#include "format/gguf_file.h"
#include "tensor/dtype.h"

namespace elutq {

class GgufWriter {
 public:
  // alignment: data alignment (a power of two); stored as general.alignment unless it is 32.
  explicit GgufWriter(const std::string& path, uint64_t alignment = 32);
  ~GgufWriter();
  GgufWriter(const GgufWriter&) = delete;
  GgufWriter& operator=(const GgufWriter&) = delete;

  // ---- metadata (before write_header); a key may be set once ----
  void set_u8(const std::string& key, uint8_t v);
  void set_i8(const std::string& key, int8_t v);
  void set_u16(const std::string& key, uint16_t v);
  void set_i16(const std::string& key, int16_t v);
  void set_u32(const std::string& key, uint32_t v);
  void set_i32(const std::string& key, int32_t v);
  void set_u64(const std::string& key, uint64_t v);
  void set_i64(const std::string& key, int64_t v);
  void set_f32(const std::string& key, float v);
  void set_f64(const std::string& key, double v);
  void set_bool(const std::string& key, bool v);
  void set_string(const std::string& key, const std::string& v);
  // An array of count scalars of type elem (not STRING/ARRAY), little-endian, packed.
  void set_array(const std::string& key, GgufType elem, const void* data, uint64_t count);
  void set_string_array(const std::string& key, const std::vector<std::string>& v);
  void set_f32_array(const std::string& key, const std::vector<float>& v);
  void set_i32_array(const std::string& key, const std::vector<int32_t>& v);

  // ---- tensors (before write_header), in the order their data will be written ----
  // shape is outermost first (as TensorInfo); 1 to 4 positive dims; the innermost a whole number
  // of blocks of dtype. Returns the tensor's size in bytes.
  uint64_t add_tensor(const std::string& name, const std::vector<int64_t>& shape, DType dtype);

  // Writes magic, counts, metadata, tensor directory and padding. Afterwards only data follows.
  void write_header();

  // Appends bytes of the current tensor (any chunk size); moves to the next tensor once the
  // current one is complete. Throws Error if more bytes are given than were declared.
  void write_data(const void* data, uint64_t nbytes);
  // Writes the whole of the next tensor, which must be `name` and exactly nbytes long.
  void write_tensor(const std::string& name, const void* data, uint64_t nbytes);

  // Checks every tensor was written, flushes, fsyncs and renames the file into place.
  void finish();

  const std::string& path() const { return path_; }

 private:
  struct Tensor {
    std::string name;
    std::vector<int64_t> shape;
    DType dtype;
    uint64_t nbytes;
    uint64_t offset;  // within the data area
  };
  void add_kv(const std::string& key, GgufType type, const std::string& value);
  void put(const void* p, uint64_t n);
  void pad_to_alignment();

  std::string path_;
  uint64_t alignment_;
  std::unique_ptr<AtomicFile> file_;  // from write_header() on
  uint64_t pos_ = 0;  // bytes written so far
  std::string kv_bytes_;
  uint64_t n_kv_ = 0;
  std::unordered_set<std::string> keys_, names_;
  std::vector<Tensor> tensors_;
  uint64_t data_size_ = 0;
  bool header_written_ = false, finished_ = false;
  uint64_t data_start_ = 0;
  size_t cur_ = 0;           // index of the tensor being written
  uint64_t cur_written_ = 0;  // its bytes written so far
};

}  // namespace elutq
