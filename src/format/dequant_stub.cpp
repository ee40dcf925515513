// Placeholder until the GGML block dequantizers land; replaced by dequant.cpp.
#include "core/error.h"
#include "format/tensor_info.h"
namespace elutq {
void tensor_to_f32(const TensorInfo& t, float*) { fail("dequantization not built yet: ", t.name); }
void tensor_rows_to_f32(const TensorInfo& t, int64_t, int64_t, float*) { fail("dequantization not built yet: ", t.name); }
}  // namespace elutq
