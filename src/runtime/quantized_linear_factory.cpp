// The runtime's LinearFactory for quantized files (see quantized_linear_factory.h).
#include "runtime/quantized_linear_factory.h"

#include "core/error.h"
#include "kernels/gemv.h"
#include "model/lut_linear.h"
#include "model/stored_linear.h"
#include "tensor/model_source.h"
#include "tensor/quantized_matrix_codec.h"
#include "tensor/tensor_info.h"
#include "tensor/tensor_names.h"

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
    if (kernel == KernelChoice::Lut && StoredLinear::supports(w)) {
      // A tensor kept as it was (Q8_0 / F16 / BF16; above all a tied output head) or a GGUF
      // file's K-quant or 32-weight block tensor: run on its stored bytes in the mapping rather
      // than on a widened fp32 copy. Where a block projection was re-laid into a copy of its own
      // (Q8_0), the mapped pages it read are let go (not the output head's: it may be the tied
      // embedding, whose rows are read from the mapping every token).
      auto l = std::make_unique<StoredLinear>(w);
      if (l->holds_copy() && block_index(w.name) >= 0) src.release_pages(w);
      return l;
    }
    return make_dense_linear(src, w);  // dequantizes ELUTQ blobs exactly, widens the rest
  };
}

LinearFactory linear_factory_for(const ModelSource& src, KernelChoice kernel, LutTables tables) {
  for (const std::string& name : src.tensor_names()) {
    const TensorInfo* t = src.find(name);
    if (t == nullptr) continue;
    if (t->dtype == DType::ELUTQ) return make_linear_factory(kernel, tables);
    // A llama.cpp file's K-quant, 32-weight block or Q8_0 projections run in place (StoredLinear)
    // where this CPU has an integer kernel for them.
    const bool integer_kernel = active_kquant_kernel(t->dtype) || active_block32_kernel(t->dtype) ||
                                (t->dtype == DType::Q8_0 && active_q8_rows16_kernel());
    if (kernel == KernelChoice::Lut && block_index(name) >= 0 && integer_kernel &&
        StoredLinear::supports(*t))
      return make_linear_factory(kernel, tables);
  }
  return {};
}

}  // namespace elutq
