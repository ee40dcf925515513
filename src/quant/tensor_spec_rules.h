// Per-tensor bit widths: rules that give some block projections other bits (and group) than the
// rest, e.g. "ffn_down=w3" or "blk\.(0|1|27)\.=w4g128", as llama.cpp's mixes keep some tensors at
// higher precision. A rule's pattern is a regular expression searched in the tensor's name
// ("blk.12.ffn_down.weight"); the first rule whose pattern matches decides; a tensor no rule
// matches keeps the run's bits and group. The method (and so the format kind) is the run's.
#pragma once

#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "quant/quantize_layer.h"

namespace elutq {

struct TensorSpecRule {
  std::string text;           // as given: "PATTERN=wB" or "PATTERN=wBgG"
  std::regex pattern;
  int bits = 2;
  std::optional<int> group;   // unset: the run's group
};

// Parses "PATTERN=wB" / "PATTERN=wBgG" (G = 0: a whole row). Throws Error saying what is wrong
// (no '=', an empty or invalid pattern, a bad width).
TensorSpecRule parse_tensor_spec_rule(const std::string& text);

// The index of the first rule whose pattern is found in `name`, or -1.
int matching_rule(const std::vector<TensorSpecRule>& rules, const std::string& name);
// base with the rule's bits and group.
LayerQuantOptions with_rule(const LayerQuantOptions& base, const TensorSpecRule& rule);
// The options tensor `name` is quantized with: base, with the first matching rule's bits and group.
LayerQuantOptions layer_options_for(const LayerQuantOptions& base,
                                    const std::vector<TensorSpecRule>& rules,
                                    const std::string& name);

// The rules' texts joined with ';' (what a resume manifest records).
std::string tensor_spec_rules_text(const std::vector<TensorSpecRule>& rules);

}  // namespace elutq
