// The default add_f32 of a QuantizedTensorSink (see quantized_tensor_sink.h).
#include "tensor/quantized_tensor_sink.h"

#include <vector>

#include "core/fp16.h"

namespace elutq {

void QuantizedTensorSink::add_f32(const TensorInfo& like, const float* data) {
  const int64_t n = like.numel();
  TensorInfo t = like;
  std::vector<uint16_t> half;  // (n) when the source stores 16-bit floats
  if (like.dtype == DType::F16 || like.dtype == DType::BF16) {
    half.resize(size_t(n));
    for (int64_t i = 0; i < n; ++i)
      half[size_t(i)] = like.dtype == DType::F16 ? f32_to_fp16(data[i]) : f32_to_bf16(data[i]);
    t.data = reinterpret_cast<const uint8_t*>(half.data());
    t.nbytes = uint64_t(n) * 2;
  } else {
    t.dtype = DType::F32;
    t.data = reinterpret_cast<const uint8_t*>(data);
    t.nbytes = uint64_t(n) * 4;
  }
  add_unchanged(t);
}

}  // namespace elutq
