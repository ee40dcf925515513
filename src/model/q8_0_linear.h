// A Linear that runs straight on GGML Q8_0 blocks (34 bytes per 32 weights: an fp16 scale d and 32
// int8 q, w = d * q), as elutq quantize keeps the token embedding / tied output head of GGUF
// sources. With `--kernel lut` the output head runs on this instead of a widened fp32 copy: it
// reads 8.5 bits per weight instead of 32 (SmolLM2-135M: 30 MB instead of 113 MB per decode token,
// most of what a token reads). Every weight is d * q computed in fp32, exactly the value the fp32
// path dequantizes to, so the two differ only in the order the products are summed.
//   one token   threaded GEMV over rows, dequantizing in registers (AVX2 where the CPU has it)
//   several     per thread, slabs of rows dequantized to fp32, then OpenBLAS sgemm on each slab
// The blocks are viewed, not copied: the ModelSource that maps them must outlive this.
#pragma once

#include <cstdint>
#include <string>

#include "model/linear.h"

namespace elutq {

class Q8_0Linear : public Linear {
 public:
  // `blocks`: out * in / 32 blocks, row-major; `nbytes` their size. Throws Error unless in is a
  // multiple of 32 and nbytes matches.
  Q8_0Linear(const uint8_t* blocks, uint64_t nbytes, int64_t out, int64_t in);

  int64_t in_features() const override { return in_; }
  int64_t out_features() const override { return out_; }
  void forward(const float* x, int64_t n, float* y, ThreadPool& pool) const override;
  std::string describe() const override;
  uint64_t weight_bytes() const override { return uint64_t(out_) * uint64_t(in_ / 32) * 34; }

 private:
  const uint8_t* blocks_;
  int64_t out_, in_;
};

// y[r] = sum_k (d * q)[r, k] * x[k] for rows [r0, r1) of a Q8_0 (rows, n) matrix, n % 32 == 0;
// picks the AVX2 kernel at run time (kern::gemv_rows_q8_0_scalar is the reference).
void gemv_rows_q8_0(const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1, float* y);
// Rows [r0, r1) of a Q8_0 (rows, n) matrix to fp32, (r1 - r0, n) row-major: bit-identical to
// tensor_rows_to_f32 on the same tensor.
void dequantize_rows_q8_0(const uint8_t* W, int64_t n, int64_t r0, int64_t r1, float* dst);

}  // namespace elutq
