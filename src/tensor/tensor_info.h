// A stored tensor as a loader sees it: a name, a shape, an element type and its bytes in a
// memory-mapped file. Shapes are row-major, outermost first: a linear layer's weight is
// {out_features, in_features} whatever the file format's own convention is.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tensor/dtype.h"

namespace elutq {

struct TensorInfo {
  std::string name;
  std::vector<int64_t> shape;  // row-major, outermost first
  DType dtype = DType::F32;
  const uint8_t* data = nullptr;  // points into a mapping owned by the ModelSource
  uint64_t nbytes = 0;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  // The product of every dimension but the last (1 for a scalar or a vector): as a product, not
  // numel() / cols(), which divides by zero for a shape like [0, 0].
  int64_t rows() const {
    int64_t n = 1;
    for (size_t i = 0; i + 1 < shape.size(); ++i) n *= shape[i];
    return n;
  }
  int64_t cols() const { return shape.empty() ? 1 : shape.back(); }
};

// "[rows, cols]": a shape for messages.
inline std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace elutq
