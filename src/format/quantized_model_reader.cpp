// Validating and exposing the quantized tensors of an elutq model file (see
// quantized_model_reader.h).
#include "format/quantized_model_reader.h"

#include <cstdint>
#include <vector>

#include "core/error.h"
#include "tensor/qformat.h"
#include "tensor/quantized_matrix_codec.h"
#include "tensor/tensor_names.h"

namespace elutq {
namespace {

// Current layout version; kept equal to kQuantizedFileVersion (quantized_model_writer.h).
constexpr uint32_t kReadableVersion = 1;

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

// The {rows, cols} the config implies for a canonical linear weight; empty for other names.
std::vector<int64_t> expected_linear_shape(const ModelConfig& c, const std::string& name) {
  if (name == kOutputName || name == kTokenEmbdName) return {c.vocab_size, c.dim};
  const std::optional<LinearSlot> slot = linear_slot_of(name);
  if (!slot) return {};
  const auto [rows, cols] = linear_shape(c, *slot);
  return {rows, cols};
}

}  // namespace

bool is_elutq_model_file(const GgufFile& g) { return g.has("elutq.format_version"); }

std::map<std::string, TensorInfo> read_elutq_quantized_tensors(const GgufFile& g,
                                                               const ModelConfig& c) {
  const std::string& path = g.path();
  const uint32_t version = g.get_u32("elutq.format_version");
  require(version == kReadableVersion, "'", path, "' is an elutq model file of format version ",
          version, "; this build reads version ", kReadableVersion,
          " (re-quantize the model or use a matching elutq)");

  // Every format key must name a tensor of the file.
  const std::string prefix = "elutq.tensor.";
  for (const std::string& key : g.keys()) {
    if (key.rfind(prefix, 0) != 0 || !ends_with(key, ".format")) continue;
    const std::string name = key.substr(prefix.size(), key.size() - prefix.size() - 7);
    require(g.find_tensor(name) != nullptr, "'", path, "': ", key, " describes tensor '", name,
            "', which the file does not hold");
  }

  std::map<std::string, TensorInfo> out;
  for (const TensorInfo& t : g.tensors()) {
    const std::string key = prefix + t.name + ".";
    const std::string where = "'" + path + "': tensor '" + t.name + "'";
    if (!g.has(key + "format")) {
      // A raw byte vector standing for a weight matrix without its description is a broken file.
      require(!(t.dtype == DType::I8 && !expected_linear_shape(c, t.name).empty()), where,
              " is stored as raw bytes but has no ", key, "format key; the file is corrupt");
      continue;
    }
    require(t.dtype == DType::I8 && t.shape.size() == 1, where,
            " should be a 1-D I8 blob for its quantized format, but is ", dtype_name(t.dtype), " ",
            shape_string(t.shape));
    // The kernels read headers and fp16 parameters in place; the writer aligns to 64.
    require(reinterpret_cast<uintptr_t>(t.data) % 64 == 0, where,
            " is not 64-byte aligned in the file; the file is corrupt");
    QuantSpec spec;
    try {
      spec = parse_quant_spec(g.get_string(key + "format"));
    } catch (const Error& e) {
      fail(where, ": ", e.what());
    }
    const std::vector<int64_t> shape = g.get_int_array(key + "shape");
    require(shape.size() == 2 && shape[0] > 0 && shape[1] > 0, where, ": ", key,
            "shape must be two positive sizes, is ", shape_string(shape));
    QuantizedBlobInfo info;
    try {
      info = inspect_quantized_blob(t.data, t.nbytes);
    } catch (const Error& e) {
      fail(where, ": ", e.what());
    }
    require(info.spec.name() == spec.name(), where, ": its data holds ", info.spec.name(), " but ",
            key, "format says ", spec.name(), "; the file is corrupt");
    require(info.rows == shape[0] && info.cols == shape[1], where, ": its data holds a ", info.rows,
            "x", info.cols, " matrix but ", key, "shape says ", shape_string(shape),
            "; the file is corrupt");
    const std::vector<int64_t> want = expected_linear_shape(c, t.name);
    require(want.empty() || want == shape, where, " is ", shape_string(shape),
            " but the model config implies ", shape_string(want), "; the file is corrupt");
    TensorInfo q;
    q.name = t.name;
    q.shape = shape;
    q.dtype = DType::ELUTQ;
    q.data = t.data;
    q.nbytes = t.nbytes;
    out[t.name] = q;
  }
  return out;
}

}  // namespace elutq
