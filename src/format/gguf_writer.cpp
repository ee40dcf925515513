// GGUF writer: serialises metadata as it is set, lays out the data area when the header is
// written, then checks each tensor's bytes against its declaration as they stream in.
#include "format/gguf_writer.h"

#include <algorithm>

#include "core/error.h"

namespace elutq {
namespace {

void append(std::string& o, const void* p, size_t n) { o.append(static_cast<const char*>(p), n); }
template <typename T>
void append_le(std::string& o, T v) {
  append(o, &v, sizeof(T));  // all supported hosts are little-endian, as GGUF is
}
void append_str(std::string& o, const std::string& s) {
  append_le<uint64_t>(o, s.size());
  o += s;
}

}  // namespace

GgufWriter::GgufWriter(const std::string& path, uint64_t alignment)
    : path_(path), alignment_(alignment) {
  require(alignment > 0 && (alignment & (alignment - 1)) == 0, "GGUF alignment ", alignment,
          " is not a power of two");
  if (alignment != 32) set_u32("general.alignment", static_cast<uint32_t>(alignment));
}

GgufWriter::~GgufWriter() = default;

void GgufWriter::add_kv(const std::string& key, GgufType type, const std::string& value) {
  require(!header_written_, "GGUF writer: metadata '", key, "' set after the header was written");
  require(keys_.insert(key).second, "GGUF writer: metadata key '", key, "' set twice");
  append_str(kv_bytes_, key);
  append_le<uint32_t>(kv_bytes_, static_cast<uint32_t>(type));
  kv_bytes_ += value;
  ++n_kv_;
}

#define ELUTQ_GGUF_SCALAR_SETTER(fn, ctype, gtype)               \
  void GgufWriter::fn(const std::string& key, ctype v) {         \
    std::string s;                                               \
    append_le<ctype>(s, v);                                      \
    add_kv(key, GgufType::gtype, s);                             \
  }
ELUTQ_GGUF_SCALAR_SETTER(set_u8, uint8_t, U8)
ELUTQ_GGUF_SCALAR_SETTER(set_i8, int8_t, I8)
ELUTQ_GGUF_SCALAR_SETTER(set_u16, uint16_t, U16)
ELUTQ_GGUF_SCALAR_SETTER(set_i16, int16_t, I16)
ELUTQ_GGUF_SCALAR_SETTER(set_u32, uint32_t, U32)
ELUTQ_GGUF_SCALAR_SETTER(set_i32, int32_t, I32)
ELUTQ_GGUF_SCALAR_SETTER(set_u64, uint64_t, U64)
ELUTQ_GGUF_SCALAR_SETTER(set_i64, int64_t, I64)
ELUTQ_GGUF_SCALAR_SETTER(set_f32, float, F32)
ELUTQ_GGUF_SCALAR_SETTER(set_f64, double, F64)
#undef ELUTQ_GGUF_SCALAR_SETTER

void GgufWriter::set_bool(const std::string& key, bool v) {
  add_kv(key, GgufType::BOOL, std::string(1, v ? '\1' : '\0'));
}

void GgufWriter::set_string(const std::string& key, const std::string& v) {
  std::string s;
  append_str(s, v);
  add_kv(key, GgufType::STRING, s);
}

void GgufWriter::set_array(const std::string& key, GgufType elem, const void* data,
                           uint64_t count) {
  const uint64_t es = gguf_scalar_size(elem);
  require(es > 0, "GGUF writer: '", key, "': set_array takes scalar elements, not ",
          gguf_type_name(elem));
  std::string s;
  append_le<uint32_t>(s, static_cast<uint32_t>(elem));
  append_le<uint64_t>(s, count);
  append(s, data, count * es);
  add_kv(key, GgufType::ARRAY, s);
}

void GgufWriter::set_string_array(const std::string& key, const std::vector<std::string>& v) {
  std::string s;
  append_le<uint32_t>(s, static_cast<uint32_t>(GgufType::STRING));
  append_le<uint64_t>(s, v.size());
  for (const auto& x : v) append_str(s, x);
  add_kv(key, GgufType::ARRAY, s);
}

void GgufWriter::set_f32_array(const std::string& key, const std::vector<float>& v) {
  set_array(key, GgufType::F32, v.data(), v.size());
}

void GgufWriter::set_i32_array(const std::string& key, const std::vector<int32_t>& v) {
  set_array(key, GgufType::I32, v.data(), v.size());
}

uint64_t GgufWriter::add_tensor(const std::string& name, const std::vector<int64_t>& shape,
                                DType dtype) {
  require(!header_written_, "GGUF writer: tensor '", name, "' added after the header was written");
  require(dtype_known(static_cast<uint32_t>(dtype)), "GGUF writer: tensor '", name,
          "' has unknown type ", static_cast<uint32_t>(dtype));
  require(!shape.empty() && shape.size() <= 4, "GGUF writer: tensor '", name, "' has ",
          shape.size(), " dimensions; GGUF allows 1 to 4");
  uint64_t numel = 1;
  for (int64_t d : shape) {
    require(d > 0 && static_cast<uint64_t>(d) <= (uint64_t{1} << 50) / numel,
            "GGUF writer: tensor '", name, "' has a bad dimension ", d);
    numel *= static_cast<uint64_t>(d);
  }
  const uint64_t nbytes =
      dtype_row_bytes(dtype, shape.back()) * (numel / static_cast<uint64_t>(shape.back()));
  require(names_.insert(name).second, "GGUF writer: tensor '", name, "' added twice");
  tensors_.push_back({name, shape, dtype, nbytes, data_size_});
  data_size_ += (nbytes + alignment_ - 1) / alignment_ * alignment_;
  return nbytes;
}

void GgufWriter::put(const void* p, uint64_t n) {
  file_->write(p, n);
  pos_ += n;
}

void GgufWriter::pad_to_alignment() {
  static const char zeros[4096] = {};
  uint64_t pad = (alignment_ - pos_ % alignment_) % alignment_;
  while (pad > 0) {
    const uint64_t n = pad < sizeof(zeros) ? pad : sizeof(zeros);
    put(zeros, n);
    pad -= n;
  }
}

void GgufWriter::write_header() {
  require(!header_written_, "GGUF writer: header written twice");
  file_ = std::make_unique<AtomicFile>(path_);
  header_written_ = true;
  std::string h = "GGUF";
  append_le<uint32_t>(h, 3);
  append_le<uint64_t>(h, tensors_.size());
  append_le<uint64_t>(h, n_kv_);
  h += kv_bytes_;
  for (const Tensor& t : tensors_) {
    append_str(h, t.name);
    append_le<uint32_t>(h, static_cast<uint32_t>(t.shape.size()));
    for (size_t d = t.shape.size(); d-- > 0;) append_le<uint64_t>(h, t.shape[d]);  // innermost first
    append_le<uint32_t>(h, static_cast<uint32_t>(t.dtype));
    append_le<uint64_t>(h, t.offset);
  }
  put(h.data(), h.size());
  pad_to_alignment();
  data_start_ = pos_;
  kv_bytes_.clear();
  kv_bytes_.shrink_to_fit();
}

void GgufWriter::write_data(const void* data, uint64_t nbytes) {
  require(header_written_ && !finished_, "GGUF writer: tensor data written ",
          header_written_ ? "after finish()" : "before the header");
  const auto* p = static_cast<const uint8_t*>(data);
  while (nbytes > 0) {
    require(cur_ < tensors_.size(), "GGUF writer: ", nbytes,
            " bytes written past the last declared tensor");
    const Tensor& t = tensors_[cur_];
    const uint64_t n = std::min(nbytes, t.nbytes - cur_written_);
    put(p, n);
    p += n;
    nbytes -= n;
    cur_written_ += n;
    if (cur_written_ == t.nbytes) {
      pad_to_alignment();
      ++cur_;
      cur_written_ = 0;
    }
  }
}

void GgufWriter::write_tensor(const std::string& name, const void* data, uint64_t nbytes) {
  require(cur_ < tensors_.size() && cur_written_ == 0 && tensors_[cur_].name == name,
          "GGUF writer: tensor '", name, "' written out of the declared order (next is '",
          cur_ < tensors_.size() ? tensors_[cur_].name : std::string("none"), "')");
  require(nbytes == tensors_[cur_].nbytes, "GGUF writer: tensor '", name, "' given ", nbytes,
          " bytes; its shape and type need ", tensors_[cur_].nbytes);
  write_data(data, nbytes);
}

void GgufWriter::finish() {
  if (!header_written_) write_header();
  require(!finished_, "GGUF writer: finish() called twice");
  require(cur_ == tensors_.size(), "GGUF writer: '", path_, "' is incomplete: tensor '",
          cur_ < tensors_.size() ? tensors_[cur_].name : std::string(), "' and ",
          tensors_.size() - cur_ - 1, " more were declared but not written");
  file_->commit();
  file_.reset();
  finished_ = true;
}

}  // namespace elutq
