// Where a quantizer hands over the tensors of the model it produces. The model-file writer
// (format/quantized_model_writer.h) is one sink; tests record or rebuild models with others. It
// lives in tensor/ so the quantizers (quant/) and the writer (format/) both reach it downward.
#pragma once

#include <string>

#include "tensor/qformat.h"
#include "tensor/tensor_info.h"

namespace elutq {

// Receives every tensor of the output model, in model_file_order (tensor_names.h) (embeddings, blocks
// ascending, the rest; format/quantized_model_writer.h).
class QuantizedTensorSink {
 public:
  virtual ~QuantizedTensorSink() = default;
  virtual void add_quantized(const std::string& name, const QuantizedMatrix& q) = 0;
  virtual void add_unchanged(const TensorInfo& t) = 0;
  // A tensor whose values the quantizer changed but not its kind (AWQ-folded norm weights):
  // data holds like.numel() floats, valid only during the call. By default it is passed on
  // through add_unchanged in the source's type where that is F32, F16 or BF16 (rounded), else F32.
  virtual void add_f32(const TensorInfo& like, const float* data);
};

}  // namespace elutq
