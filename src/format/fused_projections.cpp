// Splitting fused projections into row-range views (see fused_projections.h).
#include "format/fused_projections.h"

#include <set>
#include <utility>

#include "core/error.h"

namespace elutq {
namespace {

struct Part {
  const char* suffix;
  int64_t rows;
};

// The canonical parts of a fused tensor, top rows first, and the fused name's suffix; no parts if
// name is not a fused tensor.
std::vector<Part> fused_parts(const std::string& name, const ModelConfig& c, std::string* suffix) {
  const int64_t q = int64_t(c.n_heads) * c.head_dim, kv = int64_t(c.n_kv_heads) * c.head_dim;
  *suffix = kFusedQkvSuffix;
  if (name.ends_with("." + *suffix))
    return {{"attn_q.weight", q}, {"attn_k.weight", kv}, {"attn_v.weight", kv}};
  *suffix = kFusedGateUpSuffix;
  if (name.ends_with("." + *suffix))
    return {{"ffn_gate.weight", c.hidden_dim}, {"ffn_up.weight", c.hidden_dim}};
  return {};
}

}  // namespace

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
    std::string suffix;
    const std::vector<Part> parts = fused_parts(t.name, c, &suffix);
    if (parts.empty()) {
      out.push_back(std::move(t));
      continue;
    }
    const std::string block = t.name.substr(0, t.name.size() - suffix.size());  // "blk.N."
    int64_t rows = 0;
    std::string layout;
    for (const Part& p : parts) {
      rows += p.rows;
      layout += std::string(layout.empty() ? "" : " then ") + std::to_string(p.rows) + " " +
                std::string(p.suffix).substr(0, std::string(p.suffix).find('.')) + " rows";
    }
    const auto as = stored_as.find(t.name);
    const std::string shown = as == stored_as.end() ? t.name : as->second;
    const std::vector<int64_t> want = {rows, c.dim};
    require(t.shape == want, where, ": fused tensor ", shown, " has shape ", shape_string(t.shape),
            " but a ", c.arch, " model with this config stores it as ", shape_string(want), " (",
            layout, ")");
    int64_t begin = 0;
    for (const Part& p : parts) {
      const std::string name = block + p.suffix;
      require(!stored.count(name), where, ": tensor ", name, " is stored both on its own and as ",
              "part of the fused ", shown);
      out.push_back(tensor_row_view(t, name, begin, p.rows));
      origins[name] = {t.name, begin, begin + p.rows};
      begin += p.rows;
    }
  }
  tensors = std::move(out);
  return origins;
}

}  // namespace elutq
