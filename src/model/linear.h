// A linear layer y = x W^T as the forward pass sees it. Every projection of a block (and the
// output head) is one Linear, so a block can mix implementations: dense fp32 today, dequantized or
// LUT-kernel quantized layers later, chosen per tensor by a LinearFactory.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "core/thread_pool.h"

namespace elutq {

class ModelSource;
struct TensorInfo;

class Linear {
 public:
  virtual ~Linear() = default;
  virtual int64_t in_features() const = 0;
  virtual int64_t out_features() const = 0;
  // y (n, out_features) = x (n, in_features) W^T. x and y do not overlap. Must not allocate.
  virtual void forward(const float* x, int64_t n, float* y, ThreadPool& pool) const = 0;
  // Short description for logs and `inspect`, e.g. "f32 dense 576x576".
  virtual std::string describe() const = 0;
  // Bytes the weights occupy in memory.
  virtual uint64_t weight_bytes() const = 0;
  // Runs layers (layers[0] == this), which all read x, as one job where this implementation can
  // share work between them: ys[i] (n, out_features of layers[i]) = x W_i^T. Returns false, having
  // written nothing, where it cannot (forward_same_input then runs them one by one).
  virtual bool forward_together(std::span<const Linear* const> layers, const float* x, int64_t n,
                                std::span<float* const> ys, ThreadPool& pool) const {
    return false;
  }
};

// ys[i] = x W_i^T for layers that read the same x (a block's Q/K/V, its gate/up): together where
// the first layer's implementation can (LUT layers share their activation tables and one thread
// dispatch), else one forward after another. The outputs are the same either way.
void forward_same_input(std::span<const Linear* const> layers, const float* x, int64_t n,
                        std::span<float* const> ys, ThreadPool& pool);

// Builds the Linear for one stored weight tensor (shape {out, in}). The model calls it once per
// projection at load time; quantized runtimes supply their own to pick a kernel per tensor.
using LinearFactory =
    std::function<std::unique_ptr<Linear>(const ModelSource& source, const TensorInfo& weight)>;

// The default factory: every tensor, whatever its stored type, dequantized to a DenseLinear.
std::unique_ptr<Linear> make_dense_linear(const ModelSource& source, const TensorInfo& weight);

// Converts any stored tensor to fp32 (a plain copy for F32; tensor_to_f32 otherwise).
void load_tensor_f32(const TensorInfo& t, float* dst);

}  // namespace elutq
