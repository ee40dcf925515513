// Canonical tensor-name predicates (see tensor_names.h).
#include "tensor/tensor_names.h"

namespace elutq {

bool is_quantizable_linear(const std::string& name, bool quantize_output) {
  if (name == "output.weight") return quantize_output;
  if (name.rfind("blk.", 0) != 0) return false;
  static const char* kSuffixes[] = {".attn_q.weight",   ".attn_k.weight",   ".attn_v.weight",
                                    ".attn_output.weight", ".ffn_gate.weight", ".ffn_up.weight",
                                    ".ffn_down.weight"};
  for (const char* s : kSuffixes) {
    std::string suf(s);
    if (name.size() > suf.size() && name.compare(name.size() - suf.size(), suf.size(), suf) == 0)
      return true;
  }
  return false;
}

}  // namespace elutq
