// A Linear (model/linear.h) whose weights are a PackedMatrix run by the LUT kernels: what every
// quantized projection of the runtime uses. Weights are packed once at load (from a
// QuantizedMatrix) or viewed in place from a model file's mmap; where the kernels read another
// unit order than the file's (AVX2), a re-laid copy is made once here (lut_matrix_for).
#pragma once

#include <memory>
#include <string>

#include "core/cpu_features.h"
#include "kernels/lut_matmul.h"
#include "kernels/packed_matrix.h"
#include "model/linear.h"
#include "tensor/qformat.h"

namespace elutq {

class LutLinear final : public Linear {
 public:
  // isa: the kernel path (default: active_isa(), which honours ELUTQ_ISA); tables: the precision
  // of the activation tables (lut_matmul.h).
  explicit LutLinear(PackedMatrix w, Isa isa = active_isa(), LutTables tables = LutTables::Int8);
  static std::unique_ptr<LutLinear> from_quantized(const QuantizedMatrix& q,
                                                   LutTables tables = LutTables::Int8);

  int64_t in_features() const override { return w_.cols(); }
  int64_t out_features() const override { return w_.rows(); }
  void forward(const float* x, int64_t n, float* y, ThreadPool& pool) const override;
  // Together where every layer is a LutLinear on the same ISA whose matrix shares this one's
  // activation tables (lut_tables_shareable): one lut_gemm_same_input_isa.
  bool forward_together(std::span<const Linear* const> layers, const float* x, int64_t n,
                        std::span<float* const> ys, ThreadPool& pool) const override;
  std::string describe() const override;
  uint64_t weight_bytes() const override { return w_.size_bytes(); }
  const PackedMatrix& packed() const { return w_; }

 private:
  PackedMatrix w_;
  Isa isa_;
  LutTables tables_;
};

}  // namespace elutq
