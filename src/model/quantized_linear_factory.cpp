// The runtime's LinearFactory for quantized files (see quantized_linear_factory.h).
#include "model/quantized_linear_factory.h"

#include "core/error.h"
#include "format/quantized_blob.h"
#include "format/tensor_info.h"
#include "kernels/lut_linear.h"
#include "model/model_source.h"
#include "model/q8_0_linear.h"

namespace elutq {

KernelChoice parse_kernel_choice(const std::string& name) {
  if (name == "lut") return KernelChoice::Lut;
  if (name == "dequant") return KernelChoice::Dequant;
  fail("unknown kernel '", name, "'; expected lut or dequant");
}

LinearFactory make_linear_factory(KernelChoice kernel, LutTables tables) {
  return [kernel, tables](const ModelSource& src, const TensorInfo& w) -> std::unique_ptr<Linear> {
    if (kernel == KernelChoice::Lut && w.dtype == DType::ELUTQ &&
        inspect_quantized_blob(w.data, w.nbytes).lut) {
      // The blob is the kernels' layout: view it in the mapping, which outlives the model's use.
      return std::make_unique<LutLinear>(PackedMatrix::view(w.data, size_t(w.nbytes)), active_isa(),
                                         tables);
    }
    if (kernel == KernelChoice::Lut && w.dtype == DType::Q8_0 && w.shape.size() == 2 &&
        w.shape[1] % 32 == 0) {
      // A kept Q8_0 tensor (the output head of GGUF sources): run on its blocks in the mapping.
      return std::make_unique<Q8_0Linear>(w.data, w.nbytes, w.shape[0], w.shape[1]);
    }
    return make_dense_linear(src, w);  // dequantizes ELUTQ blobs exactly, widens the rest
  };
}

LinearFactory linear_factory_for(const ModelSource& src, KernelChoice kernel, LutTables tables) {
  for (const std::string& name : src.tensor_names()) {
    const TensorInfo* t = src.find(name);
    if (t != nullptr && t->dtype == DType::ELUTQ) return make_linear_factory(kernel, tables);
  }
  return {};
}

}  // namespace elutq
