// Widening a stored tensor of any DType (GGML block types, F16/BF16, elutq quantized blobs) to
// fp32 (dequant.cpp).
#pragma once

#include <cstdint>

#include "tensor/tensor_info.h"

namespace elutq {

// Dequantizes / widens the whole tensor to fp32 into dst (numel() floats).
void tensor_to_f32(const TensorInfo& t, float* dst);
// Same for rows [row_begin, row_end) of the tensor viewed as rows() x cols().
void tensor_rows_to_f32(const TensorInfo& t, int64_t row_begin, int64_t row_end, float* dst);

}  // namespace elutq
