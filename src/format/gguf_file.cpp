// GGUF reader: walks the header once with a bounds-checked cursor, records where each value lies
// in the mapping, and validates the tensor directory against the file size.
#include "format/gguf_file.h"

#include <cstring>
#include <limits>
#include <type_traits>

#include "core/error.h"

namespace elutq {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr int kMaxDims = 4;

// What a read is for, as its error names it: a string, or a callable that builds one only when
// the read fails (a vocabulary array has one string per token; labelling each up front was most
// of the cost of reading the header).
template <typename What>
std::string describe(const What& what) {
  if constexpr (std::is_invocable_v<const What&>)
    return what();
  else
    return std::string(what);
}

// Reads little-endian fields from the mapping; every read is checked against the file size.
class Cursor {
 public:
  Cursor(const MappedFile& f) : f_(f) {}
  uint64_t pos() const { return pos_; }
  uint64_t left() const { return f_.size() - pos_; }

  template <typename What>
  void need(uint64_t n, const What& what) const {
    if (n > left())
      fail("'", f_.path(), "': truncated GGUF file: ", describe(what), " needs ", n,
           " bytes at offset ", pos_, " but only ", left(), " remain");
  }
  template <typename What>
  const uint8_t* take(uint64_t n, const What& what) {
    need(n, what);
    const uint8_t* p = f_.data() + pos_;
    pos_ += n;
    return p;
  }
  template <typename T, typename What>
  T read(const What& what) {
    T v;
    std::memcpy(&v, take(sizeof(T), what), sizeof(T));
    return v;
  }
  template <typename What>
  std::string_view string(const What& what) {
    const uint64_t n = read<uint64_t>([&] { return describe(what) + " length"; });
    const uint8_t* p = take(n, what);
    return {reinterpret_cast<const char*>(p), n};
  }

 private:
  const MappedFile& f_;
  uint64_t pos_ = 0;
};

bool type_known(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::F64); }

}  // namespace

std::string gguf_type_name(GgufType t) {
  static const char* names[] = {"u8",  "i8",    "u16",   "i16", "u32", "i32", "f32",
                                "bool", "string", "array", "u64", "i64", "f64"};
  const auto i = static_cast<uint32_t>(t);
  return type_known(i) ? names[i] : "unknown(" + std::to_string(i) + ")";
}

uint64_t gguf_scalar_size(GgufType t) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::BOOL: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
    default: return 0;
  }
}

bool gguf_is_int(GgufType t) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::U16: case GgufType::I16:
    case GgufType::U32: case GgufType::I32: case GgufType::U64: case GgufType::I64: return true;
    default: return false;
  }
}

int64_t gguf_int_at(GgufType t, const uint8_t* p) {
  auto rd = [p](auto v) {
    std::memcpy(&v, p, sizeof(v));
    return static_cast<int64_t>(v);
  };
  switch (t) {
    case GgufType::U8: return rd(uint8_t{});
    case GgufType::I8: return rd(int8_t{});
    case GgufType::U16: return rd(uint16_t{});
    case GgufType::I16: return rd(int16_t{});
    case GgufType::U32: return rd(uint32_t{});
    case GgufType::I32: return rd(int32_t{});
    case GgufType::U64: return rd(uint64_t{});  // callers range-check U64 themselves
    case GgufType::I64: return rd(int64_t{});
    case GgufType::BOOL: return p[0] != 0;
    default: return 0;
  }
}

double gguf_float_at(GgufType t, const uint8_t* p) {
  if (t == GgufType::F32) {
    float v;
    std::memcpy(&v, p, 4);
    return v;
  }
  double v;
  std::memcpy(&v, p, 8);
  return v;
}

GgufFile::GgufFile(const std::string& path) : file_(std::make_unique<MappedFile>(path)) {
  const MappedFile& f = *file_;
  Cursor c(f);
  const uint32_t magic = c.read<uint32_t>("the magic");
  require(magic == kGgufMagic, "'", path, "' is not a GGUF file (it does not start with \"GGUF\")");
  version_ = c.read<uint32_t>("the version");
  require(version_ == 2 || version_ == 3, "'", path, "': unsupported GGUF version ", version_,
          "; only versions 2 and 3 are supported (re-convert the model with a current converter)");
  const uint64_t n_tensors = c.read<uint64_t>("the tensor count");
  const uint64_t n_kv = c.read<uint64_t>("the metadata count");
  // Each kv takes at least 12 bytes (key length + type) and each tensor info at least 24.
  require(n_kv <= c.left() / 12, "'", path, "': metadata count ", n_kv,
          " cannot fit in the file; it is corrupt");
  require(n_tensors <= c.left() / 24, "'", path, "': tensor count ", n_tensors,
          " cannot fit in the file; it is corrupt");

  // ---- metadata ----
  keys_.reserve(n_kv);
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key(c.string([i] { return "metadata entry " + std::to_string(i) + " key"; }));
    const std::string kw = "metadata '" + key + "'";
    GgufValue v;
    const uint32_t type = c.read<uint32_t>([&] { return kw + " type"; });
    require(type_known(type), "'", path, "': ", kw, " has unknown value type ", type);
    v.type = static_cast<GgufType>(type);
    if (v.type == GgufType::STRING) {
      const std::string_view s = c.string(kw);
      v.count = s.size();
      v.data = reinterpret_cast<const uint8_t*>(s.data());
    } else if (v.type == GgufType::ARRAY) {
      const uint32_t et = c.read<uint32_t>([&] { return kw + " element type"; });
      require(type_known(et), "'", path, "': ", kw, " is an array of unknown value type ", et);
      v.elem_type = static_cast<GgufType>(et);
      require(v.elem_type != GgufType::ARRAY, "'", path, "': ", kw,
              " is an array of arrays, which elutq does not read");
      v.count = c.read<uint64_t>([&] { return kw + " array length"; });
      v.data = f.data() + c.pos();
      if (v.elem_type == GgufType::STRING) {
        require(v.count <= c.left() / 8, "'", path, "': ", kw, " array length ", v.count,
                " cannot fit in the file; it is corrupt");
        for (uint64_t j = 0; j < v.count; ++j)
          c.string([&] { return kw + " element " + std::to_string(j); });
      } else {
        const uint64_t es = gguf_scalar_size(v.elem_type);
        require(v.count <= c.left() / es, "'", path, "': truncated GGUF file: ", kw, " array of ",
                v.count, " elements runs past the end of the file");
        c.take(v.count * es, kw);
      }
    } else {
      v.data = c.take(gguf_scalar_size(v.type), kw);
      v.count = 1;
    }
    require(kv_.emplace(key, v).second, "'", path, "': metadata key '", key, "' appears twice");
    keys_.push_back(std::move(key));
  }
  if (const GgufValue* a = find("general.alignment")) {
    require(gguf_is_int(a->type), "'", path, "': general.alignment must be an integer, not ",
            gguf_type_name(a->type));
    const int64_t al_signed = a->type == GgufType::U64 ? 0 : gguf_int_at(a->type, a->data);
    const uint64_t al = a->type == GgufType::U64 ? get_u64("general.alignment")
                                                 : static_cast<uint64_t>(al_signed < 0 ? 0 : al_signed);
    require(al > 0 && al <= (1u << 20) && (al & (al - 1)) == 0, "'", path,
            "': general.alignment ", static_cast<int64_t>(al),
            " is not a power of two between 1 and 1 MiB");
    alignment_ = al;
  }

  // ---- tensor directory ----
  std::vector<uint64_t> offsets;
  tensors_.reserve(n_tensors);
  offsets.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    TensorInfo t;
    t.name = std::string(c.string([i] { return "tensor " + std::to_string(i) + " name"; }));
    const std::string tw = "tensor '" + t.name + "'";
    const uint32_t n_dims = c.read<uint32_t>([&] { return tw + " dimension count"; });
    require(n_dims >= 1 && n_dims <= kMaxDims, "'", path, "': ", tw, " has ", n_dims,
            " dimensions; expected 1 to ", kMaxDims);
    std::vector<uint64_t> dims(n_dims);  // innermost first, as stored
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      dims[d] = c.read<uint64_t>([&] { return tw + " dimensions"; });
      require(dims[d] > 0 && dims[d] <= (uint64_t{1} << 40), "'", path, "': ", tw, " dimension ",
              d, " is ", static_cast<int64_t>(dims[d]), "; expected a positive size");
      require(numel <= (uint64_t{1} << 50) / dims[d], "'", path, "': ", tw,
              " has too many elements; the file is corrupt");
      numel *= dims[d];
    }
    const uint32_t type = c.read<uint32_t>([&] { return tw + " type"; });
    if (!dtype_known(type))
      fail("'", path, "': ", tw, " has tensor type ", type,
           ", which elutq does not support (supported: ", dtype_known_names(), ")");
    t.dtype = static_cast<DType>(type);
    const int64_t bs = dtype_block_elems(t.dtype);
    require(static_cast<int64_t>(dims[0]) % bs == 0, "'", path, "': ", tw, " rows of ", dims[0],
            " elements are not a whole number of ", dtype_name(t.dtype), " blocks (", bs, ")");
    t.nbytes = dtype_row_bytes(t.dtype, static_cast<int64_t>(dims[0])) * (numel / dims[0]);
    for (uint32_t d = n_dims; d-- > 0;) t.shape.push_back(static_cast<int64_t>(dims[d]));
    const uint64_t off = c.read<uint64_t>([&] { return tw + " offset"; });
    require(off % alignment_ == 0, "'", path, "': ", tw, " data offset ", off,
            " is not a multiple of the alignment ", alignment_);
    require(tensor_index_.emplace(t.name, tensors_.size()).second, "'", path, "': tensor '", t.name,
            "' appears twice");
    tensors_.push_back(std::move(t));
    offsets.push_back(off);
  }
  data_offset_ = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    TensorInfo& t = tensors_[i];
    const uint64_t off = offsets[i];
    require(off <= f.size() && data_offset_ <= f.size() - off &&
                t.nbytes <= f.size() - off - data_offset_,
            "'", path, "': tensor '", t.name, "' data (", t.nbytes, " bytes at offset ",
            data_offset_ + off, ") lies past the end of the ", f.size(),
            "-byte file; the file is truncated or corrupt");
    t.data = f.data() + data_offset_ + off;
  }
}

const TensorInfo* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

const GgufValue& GgufFile::need(const std::string& key) const {
  const GgufValue* v = find(key);
  require(v != nullptr, "'", path(), "': required GGUF metadata key '", key,
          "' is missing; the file was not made for this kind of model or is incomplete");
  return *v;
}

namespace {

[[noreturn]] void type_error(const std::string& path, const std::string& key, const GgufValue& v,
                const char* want) {
  fail("'", path, "': GGUF metadata '", key, "' is ", gguf_type_name(v.type), ", expected ", want);
}

}  // namespace

int64_t GgufFile::get_i64(const std::string& key) const {
  const GgufValue& v = need(key);
  if (!gguf_is_int(v.type)) type_error(path(), key, v, "an integer");
  if (v.type == GgufType::U64) {
    uint64_t u;
    std::memcpy(&u, v.data, 8);
    require(u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), "'", path(),
            "': GGUF metadata '", key, "' value is too large");
  }
  return gguf_int_at(v.type, v.data);
}

uint64_t GgufFile::get_u64(const std::string& key) const {
  const GgufValue& v = need(key);
  if (v.type == GgufType::U64) {
    uint64_t u;
    std::memcpy(&u, v.data, 8);
    return u;
  }
  const int64_t i = get_i64(key);
  require(i >= 0, "'", path(), "': GGUF metadata '", key, "' is negative (", i, ")");
  return static_cast<uint64_t>(i);
}

uint32_t GgufFile::get_u32(const std::string& key) const {
  const uint64_t u = get_u64(key);
  require(u <= std::numeric_limits<uint32_t>::max(), "'", path(), "': GGUF metadata '", key,
          "' value ", u, " does not fit in 32 bits");
  return static_cast<uint32_t>(u);
}

int32_t GgufFile::get_i32(const std::string& key) const {
  const int64_t i = get_i64(key);
  require(i >= std::numeric_limits<int32_t>::min() && i <= std::numeric_limits<int32_t>::max(),
          "'", path(), "': GGUF metadata '", key, "' value ", i, " does not fit in 32 bits");
  return static_cast<int32_t>(i);
}

float GgufFile::get_f32(const std::string& key) const {
  const GgufValue& v = need(key);
  if (v.type == GgufType::F32 || v.type == GgufType::F64)
    return static_cast<float>(gguf_float_at(v.type, v.data));
  if (gguf_is_int(v.type)) return static_cast<float>(get_i64(key));
  type_error(path(), key, v, "a number");
}

bool GgufFile::get_bool(const std::string& key) const {
  const GgufValue& v = need(key);
  if (v.type != GgufType::BOOL) type_error(path(), key, v, "bool");
  return v.data[0] != 0;
}

std::string GgufFile::get_string(const std::string& key) const {
  const GgufValue& v = need(key);
  if (v.type != GgufType::STRING) type_error(path(), key, v, "string");
  return std::string(reinterpret_cast<const char*>(v.data), v.count);
}

uint32_t GgufFile::get_u32_or(const std::string& key, uint32_t def) const {
  return has(key) ? get_u32(key) : def;
}
int64_t GgufFile::get_i64_or(const std::string& key, int64_t def) const {
  return has(key) ? get_i64(key) : def;
}
float GgufFile::get_f32_or(const std::string& key, float def) const {
  return has(key) ? get_f32(key) : def;
}
bool GgufFile::get_bool_or(const std::string& key, bool def) const {
  return has(key) ? get_bool(key) : def;
}
std::string GgufFile::get_string_or(const std::string& key, const std::string& def) const {
  return has(key) ? get_string(key) : def;
}

uint64_t GgufFile::array_length(const std::string& key) const {
  const GgufValue& v = need(key);
  if (v.type != GgufType::ARRAY) type_error(path(), key, v, "an array");
  return v.count;
}

std::vector<std::string_view> GgufFile::get_string_array(const std::string& key) const {
  const GgufValue& v = need(key);
  if (v.type != GgufType::ARRAY || v.elem_type != GgufType::STRING)
    type_error(path(), key, v, "an array of strings");
  std::vector<std::string_view> out;
  out.reserve(v.count);
  const uint8_t* p = v.data;  // validated at open: every length lies within the file
  for (uint64_t i = 0; i < v.count; ++i) {
    uint64_t n;
    std::memcpy(&n, p, 8);
    out.emplace_back(reinterpret_cast<const char*>(p + 8), n);
    p += 8 + n;
  }
  return out;
}

std::vector<float> GgufFile::get_f32_array(const std::string& key) const {
  const GgufValue& v = need(key);
  if (v.type != GgufType::ARRAY || (v.elem_type != GgufType::F32 && v.elem_type != GgufType::F64))
    type_error(path(), key, v, "an array of floats");
  std::vector<float> out(v.count);
  const uint64_t es = gguf_scalar_size(v.elem_type);
  for (uint64_t i = 0; i < v.count; ++i)
    out[i] = static_cast<float>(gguf_float_at(v.elem_type, v.data + i * es));
  return out;
}

std::vector<int64_t> GgufFile::get_int_array(const std::string& key) const {
  const GgufValue& v = need(key);
  if (v.type != GgufType::ARRAY || !gguf_is_int(v.elem_type))
    type_error(path(), key, v, "an array of integers");
  std::vector<int64_t> out(v.count);
  const uint64_t es = gguf_scalar_size(v.elem_type);
  for (uint64_t i = 0; i < v.count; ++i) out[i] = gguf_int_at(v.elem_type, v.data + i * es);
  return out;
}

}  // namespace elutq
