// Where block-wise quantization keeps its calibration activations: for each calibration sequence
// i, the (tokens, dim) hidden states entering the block being quantized. The quantizer reads a
// sequence with get(), runs the block on it and, once the block is final, writes the block's output
// back with put() (the store is updated in place, block after block).
//
// MemoryCalibActivations keeps everything in RAM. A store that spills to a scratch file past a
// memory budget (and survives for resume) implements the same interface.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/error.h"

namespace elutq {

class CalibActivations {
 public:
  virtual ~CalibActivations() = default;
  virtual int64_t count() const = 0;   // sequences
  virtual int64_t tokens() const = 0;  // tokens per sequence
  virtual int64_t dim() const = 0;     // hidden size
  // x (tokens, dim) = sequence i.
  virtual void get(int64_t i, float* x) = 0;
  // sequence i = x (tokens, dim).
  virtual void put(int64_t i, const float* x) = 0;
};

class MemoryCalibActivations : public CalibActivations {
 public:
  MemoryCalibActivations(int64_t count, int64_t tokens, int64_t dim)
      : count_(count), tokens_(tokens), dim_(dim), data_(size_t(count * tokens * dim)) {}
  int64_t count() const override { return count_; }
  int64_t tokens() const override { return tokens_; }
  int64_t dim() const override { return dim_; }
  void get(int64_t i, float* x) override {
    require(i >= 0 && i < count_, "calibration sequence ", i, " out of range");
    const float* p = data_.data() + i * tokens_ * dim_;
    std::copy(p, p + tokens_ * dim_, x);
  }
  void put(int64_t i, const float* x) override {
    require(i >= 0 && i < count_, "calibration sequence ", i, " out of range");
    std::copy(x, x + tokens_ * dim_, data_.data() + i * tokens_ * dim_);
  }

 private:
  int64_t count_, tokens_, dim_;
  std::vector<float> data_;  // (count, tokens, dim)
};

}  // namespace elutq
