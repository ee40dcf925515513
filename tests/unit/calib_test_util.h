// Helpers for the calibrated-quantization tests: a sink that rebuilds an fp32 model in memory from
// what the quantizer hands it (quantized tensors dequantized with the reference dequantizer), so
// the result can be run with the ordinary runtime and compared with the original.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "model/linear.h"
#include "tensor/model_source.h"
#include "tensor/qformat.h"
#include "tensor/quantized_tensor_sink.h"

namespace elutq::test {

class RebuiltModel : public ModelSource, public QuantizedTensorSink {
 public:
  explicit RebuiltModel(const ModelSource& like) : cfg_(like.config()), tok_(like.tokenizer()) {}

  // QuantizedTensorSink
  void add_quantized(const std::string& name, const QuantizedMatrix& q) override {
    order.push_back(name);
    quantized[name] = q;
    std::vector<float>& d = data_[name];
    d.resize(size_t(q.rows * q.cols));
    dequantize(q, d.data());
    add_info(name, {q.rows, q.cols});
  }
  void add_unchanged(const TensorInfo& t) override {
    order.push_back(t.name);
    std::vector<float>& d = data_[t.name];
    d.resize(size_t(t.numel()));
    load_tensor_f32(t, d.data());
    add_info(t.name, t.shape);
  }

  // ModelSource
  const ModelConfig& config() const override { return cfg_; }
  const TokenizerSpec& tokenizer() const override { return tok_; }
  std::vector<std::string> tensor_names() const override { return order; }
  const TensorInfo* find(const std::string& n) const override {
    auto it = info_.find(n);
    return it == info_.end() ? nullptr : &it->second;
  }
  std::string format_name() const override { return "rebuilt"; }
  std::vector<float>& w(const std::string& n) { return data_.at(n); }

  std::vector<std::string> order;                     // names in the order the sink saw them
  std::map<std::string, QuantizedMatrix> quantized;   // what add_quantized received

 private:
  void add_info(const std::string& name, std::vector<int64_t> shape) {
    TensorInfo t;
    t.name = name;
    t.shape = std::move(shape);
    t.dtype = DType::F32;
    t.data = reinterpret_cast<const uint8_t*>(data_[name].data());
    t.nbytes = uint64_t(data_[name].size()) * 4;
    info_[name] = t;
  }
  ModelConfig cfg_;
  TokenizerSpec tok_;
  std::map<std::string, std::vector<float>> data_;
  std::map<std::string, TensorInfo> info_;
};

}  // namespace elutq::test
