// A Linear that runs on a weight tensor in the type it is stored in, inside the model file's
// mapping: GGML Q8_0 (34 bytes per 32 weights: fp16 scale d, 32 int8 q; w = d * q), F16 or BF16.
// These are the tensors elutq quantize keeps as they were, above all the token embedding that a
// tied output head shares. With `--kernel lut` such a head runs on this instead of a widened fp32
// copy, reading 8.5 (Q8_0) or 16 bits per weight instead of 32: SmolLM2-135M's Q8_0 head is 30 MB
// per decode token instead of 113 MB, most of what a token reads. Every weight is formed in fp32
// exactly as the fp32 path dequantizes it (d * q is exact; F16/BF16 widen exactly), so the two
// paths differ only in the order the products are summed.
//   up to 64    threaded GEMV over rows per token, converting in registers (AVX-512 or AVX2)
//   more        per thread, slabs of rows converted to fp32 (tensor_rows_to_f32), then OpenBLAS
//               sgemm on each slab
// Except Q8_0 on AVX2, AVX-512 VNNI and NEON: the rows are re-laid once (kernels/q8_rows16.h,
// as many bytes as the tensor) and every forward, any token count, runs integer dot products against
// the activations rounded to int16 per 32 columns (a relative 1.5e-5 of each block's largest
// value), where the fp32 form widens every weight and spends an FMA per weight per token: with
// VNNI a server step of four tokens costs about what one token's does (bound by memory); on AVX2
// the head of SmolLM2 runs 1.8x faster for one token and 2.2x for four. Each token's outputs are
// the same whatever else shares its forward.
// GGML's K-quants (Q4_K, Q5_K, Q6_K, IQ4_XS: rows a multiple of 256 long) and 32-weight block
// types (Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL): a standard GGUF model's own tensors, run on integer
// kernels too (kernels/kquant_gemm.h, kernels/block32_gemm.h), in place in the mapping, against
// the activations rounded to int8 per 256 columns (K-quants) or int16 per 32 (the others); each
// token's outputs again independent of the others. (The 32-weight types do so up to 64 tokens; a
// longer prompt takes the fp32 slabs + sgemm path, the faster one there.)
// The tensor is viewed, not copied: the ModelSource that maps it must outlive this.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/block32_gemm.h"
#include "kernels/kquant_gemm.h"
#include "kernels/q8_rows16.h"
#include "model/linear.h"
#include "tensor/dtype.h"
#include "tensor/tensor_info.h"

namespace elutq {

class StoredLinear : public Linear {
 public:
  // True for the stored types this runs on (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL with rows a
  // multiple of 32 long, F16, BF16, and Q4_K, Q5_K, Q6_K, IQ4_XS with rows a multiple of 256 long).
  static bool supports(const TensorInfo& w);
  // Throws Error unless supports(w) and w holds the bytes its shape needs.
  explicit StoredLinear(const TensorInfo& w);
  // True where forward reads only its own re-laid copy (Q8_0 in the rows16 layout), so the
  // tensor's bytes in the source need not stay resident.
  bool holds_copy() const { return rows16_kernel_ != nullptr; }

  int64_t in_features() const override { return in_; }
  int64_t out_features() const override { return out_; }
  void forward(const float* x, int64_t n, float* y, ThreadPool& pool) const override;
  // Integer-kernel layers on one input (a block's Q/K/V, its gate/up): the activations quantized
  // once, every layer's rows in one dispatch. False for other types, or a mix of K-quants and
  // 32-weight block types (their activations differ).
  bool forward_together(std::span<const Linear* const> layers, const float* x, int64_t n,
                        std::span<float* const> ys, ThreadPool& pool) const override;
  std::string describe() const override;
  uint64_t weight_bytes() const override { return row_bytes_ * uint64_t(out_); }

 private:
  TensorInfo w_;  // a view: name, shape, type and the mapped bytes
  int64_t out_, in_;
  uint64_t row_bytes_;
  // Q8_0 on a CPU with an integer-dot kernel for it: the rows re-laid in 16-row groups
  // (kernels/q8_rows16.h), every token of every forward on it; empty otherwise.
  std::vector<uint8_t> rows16_;
  kern::Rows16Fn rows16_kernel_ = nullptr;
  // The integer kernel for this tensor's type (at most one is set); null for the other types.
  kern::KQuantGemmFn kquant_kernel_ = nullptr;
  kern::Block32GemmFn block32_kernel_ = nullptr;
};

}  // namespace elutq
