// Per-tensor bits and group; see tensor_spec_rules.h.
#include "quant/tensor_spec_rules.h"

#include <charconv>

#include "core/error.h"

namespace elutq {

namespace {

// "B" digits at s[i..]; advances i. Throws Error naming the rule otherwise.
int parse_count(const std::string& s, size_t& i, const std::string& rule, const char* what) {
  int v = 0;
  const auto [end, ec] = std::from_chars(s.data() + i, s.data() + s.size(), v);
  require(ec == std::errc() && end != s.data() + i, "--tensor-spec '", rule, "': expected the ",
          what, " after '", s.substr(0, i), "'");
  i = size_t(end - s.data());
  return v;
}

}  // namespace

TensorSpecRule parse_tensor_spec_rule(const std::string& text) {
  const size_t eq = text.rfind('=');
  require(eq != std::string::npos && eq > 0,
          "--tensor-spec '", text, "': expected PATTERN=wBITS or PATTERN=wBITSgGROUP, e.g. "
          "'ffn_down=w3' or 'attn_v=w4g128'");
  TensorSpecRule r;
  r.text = text;
  try {
    r.pattern = std::regex(text.substr(0, eq), std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    throw Error("--tensor-spec '" + text + "': the pattern '" + text.substr(0, eq) +
                "' is not a valid regular expression (" + e.what() + ")");
  }
  const std::string w = text.substr(eq + 1);
  require(!w.empty() && w[0] == 'w', "--tensor-spec '", text,
          "': the width must read wBITS or wBITSgGROUP (e.g. w3, w4g128), not '", w, "'");
  size_t i = 1;
  r.bits = parse_count(w, i, text, "bits");
  if (i < w.size()) {
    require(w[i] == 'g', "--tensor-spec '", text, "': unexpected '", w.substr(i),
            "' (wBITSgGROUP, e.g. w4g128)");
    ++i;
    r.group = parse_count(w, i, text, "group");
    require(i == w.size(), "--tensor-spec '", text, "': unexpected '", w.substr(i), "' at the end");
  }
  return r;
}

int matching_rule(const std::vector<TensorSpecRule>& rules, const std::string& name) {
  for (size_t r = 0; r < rules.size(); ++r)
    if (std::regex_search(name, rules[r].pattern)) return int(r);
  return -1;
}

LayerQuantOptions with_rule(const LayerQuantOptions& base, const TensorSpecRule& rule) {
  LayerQuantOptions o = base;
  o.bits = rule.bits;
  if (rule.group) o.group = *rule.group;
  return o;
}

LayerQuantOptions layer_options_for(const LayerQuantOptions& base,
                                    const std::vector<TensorSpecRule>& rules,
                                    const std::string& name) {
  const int r = matching_rule(rules, name);
  return r < 0 ? base : with_rule(base, rules[size_t(r)]);
}

std::string tensor_spec_rules_text(const std::vector<TensorSpecRule>& rules) {
  std::string s;
  for (const TensorSpecRule& r : rules) s += (s.empty() ? "" : ";") + r.text;
  return s;
}

}  // namespace elutq
