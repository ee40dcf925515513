// The fp32 dense Linear: a (out, in) row-major weight. Up to 8 tokens go through our own threaded
// GEMV (rows split across the pool, AVX2/FMA where the CPU has it; several tokens take turns on
// each block of rows while it is in L1, each getting the one-token result bit for bit); more
// tokens through OpenBLAS sgemm, each pool thread taking a slice of the output features with
// OpenBLAS itself single-threaded: on par with OpenBLAS's own threading at 2 threads (SmolLM2
// prefill, 256 tokens: 148-151 vs 154 tok/s on a loaded 2-core machine; ELUTQ_BLAS_THREADS=1
// selects it) and it keeps one thread pool, no oversubscription.
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

// y[r] = dot(W[r, :], x) for rows [r0, r1) of a (rows, n) matrix; picks the AVX2 kernel at run time.
void gemv_rows_f32(const float* W, const float* x, int64_t n, int64_t r0, int64_t r1, float* y);
// Dot product of two length-n vectors (AVX2 where available).
float dot_f32(const float* a, const float* b, int64_t n);

}  // namespace elutq
