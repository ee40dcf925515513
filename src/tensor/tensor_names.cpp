// Canonical tensor names (see tensor_names.h).
#include "tensor/tensor_names.h"

#include <algorithm>
#include <cstdlib>

namespace elutq {

const char* linear_slot_name(LinearSlot s) {
  static const char* names[kLinearSlots] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                            "ffn_gate", "ffn_up", "ffn_down"};
  return names[int(s)];
}

std::string block_prefix(int layer) { return "blk." + std::to_string(layer) + "."; }

std::string block_tensor_name(int layer, std::string_view what) {
  return block_prefix(layer) + std::string(what);
}

std::string linear_weight_name(int layer, LinearSlot s) {
  return block_prefix(layer) + linear_slot_name(s) + ".weight";
}

int block_index(std::string_view name) {
  if (name.substr(0, 4) != "blk.") return -1;
  int64_t v = 0;
  size_t i = 4;
  for (; i < name.size() && name[i] >= '0' && name[i] <= '9'; ++i) {
    v = v * 10 + (name[i] - '0');
    if (v > 1000000000) return -1;
  }
  if (i == 4 || i >= name.size() || name[i] != '.') return -1;
  return int(v);
}

std::optional<LinearSlot> linear_slot_of(std::string_view name) {
  const int l = block_index(name);
  if (l < 0) return std::nullopt;
  const std::string_view rest = name.substr(block_prefix(l).size());
  for (LinearSlot s : kAllLinearSlots)
    if (rest == std::string(linear_slot_name(s)) + ".weight") return s;
  return std::nullopt;
}

bool is_quantizable_linear(std::string_view name, bool quantize_output) {
  if (name == kOutputName) return quantize_output;
  return linear_slot_of(name).has_value();
}

std::vector<std::string> model_file_order(const std::vector<std::string>& names) {
  std::vector<std::string> order;
  order.reserve(names.size());
  for (const std::string& n : names)
    if (n == kTokenEmbdName) order.push_back(n);
  std::vector<std::pair<int, size_t>> blocks;  // (block index, position in names)
  for (size_t i = 0; i < names.size(); ++i)
    if (const int b = block_index(names[i]); b >= 0) blocks.push_back({b, i});
  std::stable_sort(blocks.begin(), blocks.end(),
                   [](const auto& x, const auto& y) { return x.first < y.first; });
  for (const auto& [b, i] : blocks) order.push_back(names[i]);
  for (const std::string& n : names)
    if (n != kTokenEmbdName && block_index(n) < 0) order.push_back(n);
  return order;
}

}  // namespace elutq
