// The fp32 dense Linear: a (out, in) row-major weight. Up to 8 tokens go through our own threaded
// GEMV (rows split across the pool, the active ISA's kernel from kernels/gemv.h; several tokens
// take turns on each block of rows while it is in L1, each getting the one-token result bit for
// bit); more tokens through OpenBLAS sgemm, each pool thread taking a slice of the output features
// with OpenBLAS itself single-threaded: on par with OpenBLAS's own threading (see docs/RESULTS.md,
// section "fp32 throughput"; ELUTQ_BLAS_THREADS=1 selects that) while keeping one thread pool.
#pragma once

#include <memory>
#include <vector>

#include "model/linear.h"

namespace elutq {

class DenseLinear : public Linear {
 public:
  // Takes the weights, (out, in) row-major. The buffer may be shared (tied embeddings).
  DenseLinear(std::shared_ptr<const std::vector<float>> weight, int64_t out, int64_t in);

  int64_t in_features() const override { return in_; }
  int64_t out_features() const override { return out_; }
  void forward(const float* x, int64_t n, float* y, ThreadPool& pool) const override;
  std::string describe() const override;
  uint64_t weight_bytes() const override { return uint64_t(out_) * uint64_t(in_) * 4; }

  // The weights, (out, in) row-major: for calibration and quantization.
  const float* weight() const { return w_->data(); }

 private:
  std::shared_ptr<const std::vector<float>> w_;  // (out, in)
  int64_t out_, in_;
};

}  // namespace elutq
