// Calibration-free model quantization loop (see pipeline.h).
#include "quant/pipeline.h"

#include <cstring>
#include <utility>
#include <vector>

#include "core/error.h"
#include "format/dequant.h"
#include "format/quantized_model_writer.h"

namespace elutq {

QuantReport quantize_model_data_free(
    const ModelSource& src, const PipelineOptions& opt, QuantizedTensorSink& sink,
    ThreadPool* pool, const std::function<void(int64_t, int64_t, const std::string&)>& progress) {
  require(!method_needs_calibration(opt.layer.method), "method '",
          quant_method_name(opt.layer.method),
          "' needs calibration inputs, which this build cannot collect yet (the per-block forward "
          "is not wired into quantization); use --method rtn or hlq");
  method_spec(opt.layer);  // validates bits / group before any work
  QuantReport rep;
  // The order the model file stores tensors in (embeddings, blocks ascending, the rest).
  const std::vector<std::string> names = model_file_order(src.tensor_names());
  std::vector<float> W;  // (rows, cols) the one tensor in memory
  int64_t done = 0;
  for (const std::string& name : names) {
    const TensorInfo* t = src.find(name);
    require(t != nullptr, "model lists tensor '", name, "' but does not provide it");
    if (!is_quantizable_linear(name, opt.quantize_output)) {
      sink.add_unchanged(*t);
    } else {
      require(t->shape.size() == 2, "tensor '", name, "' should be a matrix, has ",
              t->shape.size(), " dimensions");
      const int64_t rows = t->shape[0], cols = t->shape[1];
      W.resize(size_t(rows * cols));
      // fp32 sources (llama2.c checkpoints) are read as they are; others go through the shared
      // dequantizer.
      if (t->dtype == DType::F32 && t->nbytes == uint64_t(rows * cols) * 4)
        std::memcpy(W.data(), t->data, size_t(t->nbytes));
      else
        tensor_to_f32(*t, W.data());
      LayerQuantResult r = quantize_layer(W.data(), rows, cols, opt.layer, nullptr, nullptr, pool);
      sink.add_quantized(name, r.q);
      LayerReport line;
      line.name = name;
      line.rows = rows;
      line.cols = cols;
      line.rel_weight_error = r.rel_weight_error;
      line.bits_per_weight = r.bits_per_weight;
      line.log = r.log;
      rep.layers.push_back(std::move(line));
      rep.quantized_weights += rows * cols;
      rep.quantized_bits += r.bits_per_weight * double(rows * cols);
    }
    ++done;
    if (progress) progress(done, int64_t(names.size()), name);
  }
  return rep;
}

}  // namespace elutq
