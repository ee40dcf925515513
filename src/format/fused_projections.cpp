// Splitting fused projections into row-range views (see fused_projections.h).
#include "format/fused_projections.h"

#include <set>
#include <utility>

#include "core/error.h"
#include "tensor/tensor_names.h"

namespace elutq {
namespace {

// The projections a "blk.N.<fused suffix>" tensor holds, top rows first; none for other names.
std::vector<LinearSlot> fused_slots(const std::string& name) {
  if (block_index(name) < 0) return {};
  if (name.ends_with(std::string(".") + kFusedQkvSuffix))
    return {LinearSlot::Q, LinearSlot::K, LinearSlot::V};
  if (name.ends_with(std::string(".") + kFusedGateUpSuffix))
    return {LinearSlot::Gate, LinearSlot::Up};
  return {};
}

}  // namespace

const char* fused_suffix_of(LinearSlot s) {
  switch (s) {
    case LinearSlot::Q:
    case LinearSlot::K:
    case LinearSlot::V: return kFusedQkvSuffix;
    case LinearSlot::Gate:
    case LinearSlot::Up: return kFusedGateUpSuffix;
    default: return nullptr;
  }
}

TensorInfo tensor_row_view(const TensorInfo& t, const std::string& name, int64_t row_begin,
                           int64_t rows) {
  require(t.shape.size() == 2 && row_begin >= 0 && rows > 0 && row_begin + rows <= t.shape[0],
          "tensor '", t.name, "' ", shape_string(t.shape), " has no rows [", row_begin, ", ",
          row_begin + rows, ")");
  const uint64_t row_bytes = dtype_row_bytes(t.dtype, t.shape[1]);
  require(t.nbytes >= row_bytes * uint64_t(t.shape[0]), "tensor '", t.name, "' holds ", t.nbytes,
          " bytes, less than its shape needs");
  TensorInfo v = t;
  v.name = name;
  v.shape = {rows, t.shape[1]};
  v.data = t.data + row_bytes * uint64_t(row_begin);
  v.nbytes = row_bytes * uint64_t(rows);
  return v;
}

std::map<std::string, FusedOrigin> split_fused_projections(
    std::vector<TensorInfo>& tensors, const ModelConfig& c, const std::string& where,
    const std::map<std::string, std::string>& stored_as) {
  std::set<std::string> stored;
  for (const TensorInfo& t : tensors) stored.insert(t.name);
  std::map<std::string, FusedOrigin> origins;
  std::vector<TensorInfo> out;
  out.reserve(tensors.size() + tensors.size() / 2);
  for (TensorInfo& t : tensors) {
    const std::vector<LinearSlot> slots = fused_slots(t.name);
    if (slots.empty()) {
      out.push_back(std::move(t));
      continue;
    }
    const int layer = block_index(t.name);
    int64_t rows = 0;
    std::string layout;
    for (LinearSlot s : slots) {
      const int64_t part_rows = linear_shape(c, s).first;
      rows += part_rows;
      layout += std::string(layout.empty() ? "" : " then ") + std::to_string(part_rows) + " " +
                linear_slot_name(s) + " rows";
    }
    const auto as = stored_as.find(t.name);
    const std::string shown = as == stored_as.end() ? t.name : as->second;
    const std::vector<int64_t> want = {rows, c.dim};
    require(t.shape == want, where, ": fused tensor ", shown, " has shape ", shape_string(t.shape),
            " but a ", c.arch, " model with this config stores it as ", shape_string(want), " (",
            layout, ")");
    int64_t begin = 0;
    for (LinearSlot s : slots) {
      const std::string name = linear_weight_name(layer, s);
      const int64_t part_rows = linear_shape(c, s).first;
      require(!stored.count(name), where, ": tensor ", name, " is stored both on its own and as ",
              "part of the fused ", shown);
      out.push_back(tensor_row_view(t, name, begin, part_rows));
      origins[name] = {t.name, begin, begin + part_rows};
      begin += part_rows;
    }
  }
  tensors = std::move(out);
  return origins;
}

}  // namespace elutq
