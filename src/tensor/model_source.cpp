// The shape-checked tensor lookup shared by every ModelSource.
#include "tensor/model_source.h"

#include "core/error.h"

namespace elutq {

const TensorInfo& ModelSource::get(const std::string& name,
                                   const std::vector<int64_t>& shape) const {
  const TensorInfo* t = find(name);
  require(t != nullptr, "tensor '", name, "' is missing from the ", format_name(), " model");
  if (t->shape != shape) {
    auto str = [](const std::vector<int64_t>& s) {
      std::string r = "[";
      for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
      return r + "]";
    };
    fail("tensor '", name, "' has shape ", str(t->shape), " but the config implies ", str(shape));
  }
  return *t;
}

}  // namespace elutq
