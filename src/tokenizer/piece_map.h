// A hash map from token text to id that can be queried with a string_view (no allocation per
// lookup), shared by both BPE variants.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace elutq {

struct PieceHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

using PieceMap = std::unordered_map<std::string, int, PieceHash, std::equal_to<>>;

}  // namespace elutq
