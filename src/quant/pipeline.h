// The calibration-free model loop (rtn, hlq): every decoder linear layer of an opened model, one
// tensor in memory at a time, results handed to a sink (the model-file writer plugs in there).
// Calibrated methods (gptq, hlq-gptq, ganq, awq) run block by block in BlockwiseQuantizer
// (blockwise_quantizer.h), which without calibration reproduces this loop's output.
//
// Quantized: blk.N.{attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down}.weight, and
// output.weight only if asked (the paper keeps lm_head at higher precision). Everything else
// (embeddings, norms, biases) is passed through unchanged.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "quant/quant_report.h"
#include "quant/quantize_layer.h"
#include "tensor/model_source.h"
#include "tensor/qformat.h"
#include "tensor/tensor_info.h"

namespace elutq {

class ThreadPool;

// Receives every tensor of the output model, in quantized_file_tensor_order (embeddings, blocks
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

struct PipelineOptions {
  LayerQuantOptions layer;
  bool quantize_output = false;  // also quantize output.weight (lm_head)
};

// True for the canonical names this pipeline quantizes (see above).
bool is_quantizable_linear(const std::string& name, bool quantize_output);

// progress(done, total, name) is called after each tensor.
QuantReport quantize_model_data_free(
    const ModelSource& src, const PipelineOptions& opt, QuantizedTensorSink& sink,
    ThreadPool* pool = nullptr,
    const std::function<void(int64_t, int64_t, const std::string&)>& progress = {});

}  // namespace elutq
