// A model held in memory at a real model's shapes without its weights, for whole-model speed
// measurements (`elutq bench --synthetic ARCH --full`) where no checkpoint of that size is at hand.
// The token embedding is random F16 (what the runtime reads row by row), norms are ones and
// biases zero. The projections and the output head are declared (name, shape) but carry no bytes:
// a Model must be built over it with a LinearFactory that makes their weights itself (the bench's
// makes random packed matrices), never by reading them.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tensor/model_source.h"

namespace elutq {

class SyntheticSource final : public ModelSource {
 public:
  // Throws Error if cfg is not a valid config (validate_config).
  SyntheticSource(const ModelConfig& cfg, uint64_t seed);

  const ModelConfig& config() const override { return cfg_; }
  const TokenizerSpec& tokenizer() const override { return tok_; }
  std::vector<std::string> tensor_names() const override { return names_; }
  const TensorInfo* find(const std::string& name) const override;
  std::string format_name() const override { return "synthetic"; }

  // True for the tensors declared without bytes (projections, output head).
  static bool weightless(const TensorInfo& t) { return t.data == nullptr && t.numel() > 0; }

 private:
  void add(const std::string& name, std::vector<int64_t> shape, DType dtype,
           std::vector<uint8_t> bytes);

  ModelConfig cfg_;
  TokenizerSpec tok_;
  std::vector<std::string> names_;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::vector<uint8_t>> bytes_;
};

}  // namespace elutq
