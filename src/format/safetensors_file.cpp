// Safetensors reader and sharded-index reader (see safetensors_file.h). Every number in the header
// is checked before it is used, so a corrupt or hostile file gives an Error, never a bad read.
#include "format/safetensors_file.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/input_file.h"

namespace elutq {
namespace {

using json = nlohmann::json;

// The safetensors format caps its header at 100 MB; anything larger is corrupt.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

// Element types of the safetensors format that elutq does not load, for a clearer message.
bool is_other_safetensors_dtype(const std::string& s) {
  static const char* kOther[] = {"BOOL", "U8",  "I8",  "I16",     "U16",     "I32", "U32",
                                 "I64",  "U64", "F64", "F8_E4M3", "F8_E5M2", "F4",  "F6_E2M3"};
  for (const char* o : kOther)
    if (s == o) return true;
  return false;
}

DType parse_dtype(const json& v, const std::string& where) {
  require(v.is_string(), where, ": \"dtype\" must be a string");
  const std::string s = v.get<std::string>();
  if (s == "F32") return DType::F32;
  if (s == "F16") return DType::F16;
  if (s == "BF16") return DType::BF16;
  if (is_other_safetensors_dtype(s)) {
    fail(where, " has dtype ", s, ", which elutq cannot load (supported: F32, F16, BF16)");
  }
  fail(where, " has unknown dtype '", s, "' (supported: F32, F16, BF16)");
}

// A JSON value that must be a non-negative integer.
uint64_t parse_count(const json& v, const std::string& where, const char* what) {
  require(v.is_number_unsigned(), where, ": ", what, " must be non-negative integers, got ",
          v.dump());
  return v.get<uint64_t>();
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path)
    : file_(std::make_unique<MappedFile>(path)) {
  const uint8_t* base = file_->data();
  const uint64_t size = file_->size();
  require(size >= 8, "'", path, "' is ", size,
          " bytes, too small for a safetensors file (it starts with an 8-byte header length); "
          "the file is truncated or not safetensors");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | base[i];  // little-endian
  require(header_len <= size - 8, "'", path, "': the header length ", header_len,
          " runs past the end of the ", size,
          "-byte file; the file is truncated or not safetensors");
  require(header_len >= 2 && header_len <= kMaxHeaderBytes, "'", path, "': header length ",
          header_len, " is not plausible (2..", kMaxHeaderBytes, "); the file is not safetensors");

  const char* text = reinterpret_cast<const char*>(base + 8);
  json header;
  try {
    header = json::parse(text, text + header_len);
  } catch (const json::exception& e) {
    fail("'", path, "': the header is not valid JSON (", e.what(),
         "); the file is corrupt or not safetensors");
  }
  require(header.is_object(), "'", path, "': the header must be a JSON object, got ",
          header.type_name());

  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = size - data_start;
  struct Span {
    uint64_t begin, end;
    size_t tensor;
  };
  std::vector<Span> spans;
  try {
    for (const auto& [name, entry] : header.items()) {
      if (name == "__metadata__") continue;  // free-form strings; nothing we need
      const std::string where = "'" + path + "': tensor '" + name + "'";
      require(entry.is_object(), where, " must be described by a JSON object");
      require(entry.contains("dtype") && entry.contains("shape") && entry.contains("data_offsets"),
              where, " lacks one of \"dtype\", \"shape\", \"data_offsets\"");
      TensorInfo t;
      t.name = name;
      t.dtype = parse_dtype(entry["dtype"], where);

      const json& shape = entry["shape"];
      require(shape.is_array() && shape.size() <= 8, where,
              ": \"shape\" must be a list of at most 8 ", "dimensions");
      uint64_t numel = 1;
      for (const json& d : shape) {
        const uint64_t n = parse_count(d, where, "shape dimensions");
        require(n <= (uint64_t(1) << 48) && (n == 0 || numel <= (uint64_t(1) << 60) / n), where,
                ": shape ", shape.dump(), " is too large");
        numel *= n;
        t.shape.push_back(static_cast<int64_t>(n));
      }

      const json& offs = entry["data_offsets"];
      require(offs.is_array() && offs.size() == 2, where,
              ": \"data_offsets\" must be a list [begin, end]");
      const uint64_t begin = parse_count(offs[0], where, "data_offsets");
      const uint64_t end = parse_count(offs[1], where, "data_offsets");
      require(begin <= end, where, ": data_offsets [", begin, ", ", end, ") end before they begin");
      require(end <= data_size, where, ": data_offsets [", begin, ", ", end,
              ") run past the end of the data area (", data_size,
              " bytes); the file is truncated or corrupt");
      const uint64_t elem = static_cast<uint64_t>(dtype_block_bytes(t.dtype));
      t.nbytes = numel * elem;
      require(end - begin == t.nbytes, where, " has shape ", shape_string(t.shape), " and dtype ",
              dtype_name(t.dtype), " (", t.nbytes, " bytes) but its data_offsets [", begin, ", ",
              end, ") hold ", end - begin, " bytes; shape, dtype and offsets disagree");
      t.data = base + data_start + begin;
      spans.push_back({begin, end, tensors_.size()});
      tensors_.push_back(std::move(t));
    }
  } catch (const json::exception& e) {  // a value of a type the checks above did not expect
    fail("'", path, "': unexpected value in the header (", e.what(), ")");
  }

  // Tensors must tile the data area exactly, as the format requires: no overlap, no hole.
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t covered = 0;
  std::vector<TensorInfo> ordered;
  ordered.reserve(spans.size());
  for (size_t i = 0; i < spans.size(); ++i) {
    const Span& s = spans[i];
    if (s.begin < covered) {
      fail("'", path, "': tensor '", tensors_[s.tensor].name, "' (bytes ", s.begin, "..", s.end,
           ") overlaps tensor '", ordered.back().name, "'; the file is corrupt");
    }
    require(s.begin == covered, "'", path, "': bytes ", covered, "..", s.begin,
            " of the data area belong to no tensor; the file is corrupt");
    covered = s.end;
    ordered.push_back(std::move(tensors_[s.tensor]));
  }
  require(covered == data_size, "'", path, "': the last ", data_size - covered,
          " bytes of the data area belong to no tensor; the file is corrupt");
  tensors_ = std::move(ordered);
}

SafetensorsIndex read_safetensors_index(const std::string& index_path) {
  const std::string text = read_input_file(index_path, "safetensors index");
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail("'", index_path, "' is not valid JSON (", e.what(), ")");
  }
  require(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(), "'", index_path,
          "' has no \"weight_map\" object; it is not a safetensors index");
  SafetensorsIndex index;
  std::set<std::string> seen;
  for (const auto& [name, file] : j["weight_map"].items()) {
    require(file.is_string(), "'", index_path, "': weight_map entry '", name, "' must name a file");
    const std::string f = file.get<std::string>();
    require(!f.empty() && f.find('/') == std::string::npos && f.find('\\') == std::string::npos &&
                f != "." && f != "..",
            "'", index_path, "': weight_map entry '", name, "' names '", f,
            "', which is not a plain file name in the model folder");
    index.weight_map[name] = f;
    if (seen.insert(f).second) index.shards.push_back(f);
  }
  require(!index.weight_map.empty(), "'", index_path, "': weight_map is empty");
  return index;
}

}  // namespace elutq
