// The one place that picks kernels by instruction set. Per ISA one table of function pointers --
// the LUT matmul kernels, the fp32 and stored-type dot/GEMV kernels, the bandwidth probe's read
// loop -- filled once; every caller goes through a table, the active ISA's (active_isa(), which
// ELUTQ_ISA can cap) unless a test or benchmark asks for another. Each ISA's kernels live in files
// named *_<isa>.cpp, compiled with that ISA's flags (CMakeLists.txt).
#pragma once

#include <cstdint>

#include "core/cpu_features.h"
#include "kernels/block32_gemm.h"
#include "kernels/kquant_gemm.h"
#include "kernels/q8_rows16.h"
#include "tensor/dtype.h"

namespace elutq {

struct LutIsaKernels;  // kernels/lut_isa.h

struct IsaKernels {
  Isa isa = Isa::Scalar;
  const LutIsaKernels* lut = nullptr;  // bit-serial LUT matmul (lut_matmul.cpp drives it)
  // fp32: dot product, y[r] = W[r, :] . x for rows [r0, r1) of W (rows, n), and the same for two
  // tokens in one pass over the rows (each bit-identical to gemv_rows_f32 alone).
  float (*dot_f32)(const float* a, const float* b, int64_t n) = nullptr;
  void (*gemv_rows_f32)(const float* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                        float* y) = nullptr;
  void (*gemv2_rows_f32)(const float* W, const float* x0, const float* x1, int64_t n, int64_t r0,
                         int64_t r1, float* y0, float* y1) = nullptr;
  // Rows of a matrix in a stored type (Q8_0, F16, BF16), widened exactly in registers.
  using StoredGemv = void (*)(const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                              float* y);
  StoredGemv gemv_rows_q8_0 = nullptr;
  StoredGemv gemv_rows_f16 = nullptr;
  StoredGemv gemv_rows_bf16 = nullptr;
  // Q8_0 rows for several tokens, x (tokens, n), token t's rows at y + t * y_stride: each row
  // widened once for all of them; each token's result bit-identical to gemv_rows_q8_0.
  void (*gemv_rows_q8_0_tokens)(const uint8_t* W, const float* x, int64_t n, int tokens,
                                int64_t r0, int64_t r1, float* y, int64_t y_stride) = nullptr;
  // Q8_0 re-laid in 16-row groups against int16 activations (q8_rows16.h): where the ISA has
  // integer multiply-adds that pay (AVX2 vpmaddwd, AVX-512 VNNI, NEON SMLAL); null for the scalar
  // table, and callers keep the GEMV above.
  kern::Rows16Fn q8_rows16_i16 = nullptr;
  // GGML K-quant rows as stored (Q4_K, Q5_K, Q6_K) against int8 activations (kquant_gemm.h).
  kern::KQuantGemmFn gemm_rows_q4_k = nullptr;
  kern::KQuantGemmFn gemm_rows_q5_k = nullptr;
  kern::KQuantGemmFn gemm_rows_iq4_xs = nullptr;
  kern::KQuantGemmFn gemm_rows_q6_k = nullptr;
  kern::QuantizeQ8KFn quantize_activations_q8k = nullptr;  // their activations, same bytes on every ISA
  // GGML's 32-weight block types (Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL) against int16 activations per 32
  // columns (block32_gemm.h).
  kern::Block32GemmFn gemm_rows_q4_0 = nullptr;
  kern::Block32GemmFn gemm_rows_q4_1 = nullptr;
  kern::Block32GemmFn gemm_rows_q5_0 = nullptr;
  kern::Block32GemmFn gemm_rows_q5_1 = nullptr;
  kern::Block32GemmFn gemm_rows_iq4_nl = nullptr;
  // Attention over cached rows (attention_kernels.h): scores out[j] = scale * q . k_j, and
  // out += sum_j w[j] v_j in row order, for rows j < count at the given stride.
  void (*attention_scores)(const float* q, const float* k, int64_t stride, int64_t count, int hd,
                           float scale, float* out) = nullptr;
  void (*attention_weighted_sum_add)(const float* w, const float* v, int64_t stride,
                                     int64_t count, int hd, float* out) = nullptr;
  // y[j] = y[j] - a * x[j] for j < n, the product rounded before the subtraction (no fused
  // multiply-add), so every ISA gives the scalar loop's result: GPTQ's error propagation.
  void (*sub_scaled_f32)(float* y, const float* x, float a, int64_t n) = nullptr;
  // y[j] += a * x[j] in double, the product rounded first (the same bits on every ISA): the group
  // fits' code-column products, updated a changed code at a time.
  void (*add_scaled_f32_f64)(double* y, const float* x, double a, int64_t n) = nullptr;
  // out (n, m) = H (n, n, float) V (n, m, double), sums in double: the group fits' products.
  void (*block_product_f32_f64)(const float* H, int64_t n, const double* V, int m,
                                double* out) = nullptr;
  // The bandwidth probe's read loop: the wrapping sum of words[0..n).
  uint64_t (*stream_read)(const uint64_t* words, int64_t n) = nullptr;
};

// The kernels of isa. Throws Error if the CPU lacks it or it is not compiled into this build.
const IsaKernels& isa_kernels(Isa isa);
// The kernels of active_isa(), looked up once.
const IsaKernels& active_kernels();

// k's integer kernel for rows of stored type t: K-quants (Q4_K, Q5_K, Q6_K, IQ4_XS; kquant_gemm.h) or
// 32-weight block types (Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL; block32_gemm.h); null for other types.
kern::KQuantGemmFn kquant_kernel(const IsaKernels& k, DType t);
kern::Block32GemmFn block32_kernel(const IsaKernels& k, DType t);

}  // namespace elutq
