// fp32 and stored-type dot products and GEMV rows on the active ISA's kernels (dispatch.h); the
// kern::*_scalar functions in gemv_kernels.h are the reference every ISA is tested against.
#pragma once

#include <cstdint>

#include "kernels/block32_gemm.h"
#include "kernels/kquant_gemm.h"
#include "kernels/q8_rows16.h"
#include "tensor/dtype.h"

namespace elutq {

// y[r] = dot(W[r, :], x) for rows [r0, r1) of a (rows, n) fp32 matrix.
void gemv_rows_f32(const float* W, const float* x, int64_t n, int64_t r0, int64_t r1, float* y);
// Two tokens over the same rows, each bit-identical to gemv_rows_f32 of that token alone.
void gemv2_rows_f32(const float* W, const float* x0, const float* x1, int64_t n, int64_t r0,
                    int64_t r1, float* y0, float* y1);
// out (n, m) = H V for H (n, n) of floats and V (n, m) of doubles, row-major, m = 1..6, sums in
// double; each column's sums independent of the others (the same for any m).
void block_product_f32_f64(const float* H, int64_t n, const double* V, int m, double* out);
// y[j] -= a * x[j] for j < n, the product rounded first (the same result on every ISA).
void sub_scaled_f32(float* y, const float* x, float a, int64_t n);
// y[j] += a * x[j] in double for j < n, the product rounded first (the same result on every ISA).
void add_scaled_f32_f64(double* y, const float* x, double a, int64_t n);
// Dot product of two length-n vectors.
float dot_f32(const float* a, const float* b, int64_t n);
// y[r] = sum_k w[r, k] * x[k] for rows [r0, r1) of a stored (rows, n) matrix of type t (Q8_0
// with n % 32 == 0, F16 or BF16); throws Error for other types.
void gemv_rows_stored(DType t, const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                      float* y);
// The same for `tokens` tokens, x (tokens, n), token t's rows at y + t * y_stride, each equal bit
// for bit to gemv_rows_stored of that token alone; Q8_0 widens each row once for all of them.
void gemv_rows_stored_tokens(DType t, const uint8_t* W, const float* x, int64_t n, int tokens,
                             int64_t r0, int64_t r1, float* y, int64_t y_stride);
// The active ISA's kernel for Q8_0 re-laid in 16-row groups against int16 activations
// (q8_rows16.h), or null where the ISA has none worth using (then the Q8_0 GEMV above).
kern::Rows16Fn active_q8_rows16_kernel();
// The active ISA's integer kernel for rows of K-quant type t (Q4_K, Q5_K, Q6_K; kquant_gemm.h), or
// null for any other type.
kern::KQuantGemmFn active_kquant_kernel(DType t);
// The same for GGML's 32-weight block types (Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL; block32_gemm.h).
kern::Block32GemmFn active_block32_kernel(DType t);

}  // namespace elutq
