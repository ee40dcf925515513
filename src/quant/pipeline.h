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
#include "tensor/quantized_tensor_sink.h"
#include "tensor/tensor_names.h"
#include "tensor/tensor_info.h"

namespace elutq {

class ThreadPool;

struct PipelineOptions {
  LayerQuantOptions layer;
  bool quantize_output = false;  // also quantize output.weight (lm_head)
};

// progress(done, total, name) is called after each tensor.
QuantReport quantize_model_data_free(
    const ModelSource& src, const PipelineOptions& opt, QuantizedTensorSink& sink,
    ThreadPool* pool = nullptr,
    const std::function<void(int64_t, int64_t, const std::string&)>& progress = {});

}  // namespace elutq
