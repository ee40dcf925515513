// Per-ISA dot/GEMV kernels, fp32 and the stored types Q8_0, F16, BF16: one file per ISA
// (gemv_kernels_<isa>.cpp), picked by the tables of dispatch.h; callers use gemv.h. The scalar
// versions are the reference. Internal to src/kernels (and the tests that compare the ISAs).
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "core/fp16.h"

namespace elutq::kern {

// s plus the 16-bit weights of `row` from k0 to n, widened exactly (F16, or BF16 if kBf16), times
// x, added in k order: the scalar reference's row loop, which the SIMD kernels also run for the
// weights their vectors leave over. Internal linkage on purpose: each ISA's file, compiled with its
// own flags, keeps its own copy instead of sharing one the linker might take from another.
namespace {
template <bool kBf16>
inline float half_row_dot(const uint8_t* row, const float* x, int64_t k0, int64_t n, float s) {
  for (int64_t k = k0; k < n; ++k) {
    uint16_t v;
    std::memcpy(&v, row + k * 2, 2);
    s += (kBf16 ? bf16_to_f32(v) : fp16_to_f32(v)) * x[k];
  }
  return s;
}

// V (n, m) row-major -> Vt (m, n) in this thread's buffer, each column contiguous for the vector
// loads of block_product_f32_f64.
inline const double* columns_of(const double* V, int64_t n, int m) {
  thread_local std::vector<double> vt;
  vt.resize(size_t(n) * size_t(m));
  for (int64_t j = 0; j < n; ++j)
    for (int c = 0; c < m; ++c) vt[size_t(c * n + j)] = V[j * m + c];
  return vt.data();
}
}  // namespace

float dot_f32_scalar(const float* a, const float* b, int64_t n);
void attention_scores_scalar(const float* q, const float* k, int64_t stride, int64_t count, int hd,
                             float scale, float* out);
void attention_weighted_sum_add_scalar(const float* w, const float* v, int64_t stride,
                                       int64_t count, int hd, float* out);
// out (n, m) = H V for H (n, n) of floats and V (n, m) of doubles, both row-major, m = 1..6, each
// sum in double (the group fits' products with a Hessian block). The SIMD versions add in another
// order: equal to the scalar sums within double rounding, and each column's sums independent of m.
void block_product_f32_f64_scalar(const float* H, int64_t n, const double* V, int m, double* out);
void sub_scaled_f32_scalar(float* y, const float* x, float a, int64_t n);
// y[j] += a * x[j] in double for j < n, the product rounded before the addition (no fused
// multiply-add): every ISA gives the scalar loop's bits (exact sums for small-integer a).
void add_scaled_f32_f64_scalar(double* y, const float* x, double a, int64_t n);
void gemv_rows_f32_scalar(const float* W, const float* x, int64_t n, int64_t r0, int64_t r1, float* y);
// Two tokens over the same rows: y0 = W x0 and y1 = W x1 for rows [r0, r1), each equal bit for bit
// to gemv_rows_f32 of the same ISA (one pass over the rows for both).
void gemv2_rows_f32_scalar(const float* W, const float* x0, const float* x1, int64_t n, int64_t r0,
                           int64_t r1, float* y0, float* y1);
// GGML Q8_0 rows (34-byte blocks of fp16 d + 32 int8 q; n % 32 == 0): y[r] = sum_k d q_k x_k, each
// weight formed as the fp32 product d * q (exact) before it meets x.
void gemv_rows_q8_0_scalar(const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                           float* y);
// The same for `tokens` tokens at once, x (tokens, n) and token t's outputs at y + t * y_stride:
// each row's blocks are widened once for all tokens, and every token's result equals
// gemv_rows_q8_0 of that token alone bit for bit (the same sums in the same order).
void gemv_rows_q8_0_tokens_scalar(const uint8_t* W, const float* x, int64_t n, int tokens,
                                  int64_t r0, int64_t r1, float* y, int64_t y_stride);
// IEEE fp16 and bfloat16 rows, widened exactly to fp32.
void gemv_rows_f16_scalar(const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                          float* y);
void gemv_rows_bf16_scalar(const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                           float* y);
#if defined(ELUTQ_X86)
void gemv_rows_q8_0_avx2(const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                         float* y);
void gemv_rows_f16_avx2(const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                        float* y);
void gemv_rows_bf16_avx2(const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                         float* y);
void gemv_rows_q8_0_avx512(const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                           float* y);
void gemv_rows_q8_0_tokens_avx2(const uint8_t* W, const float* x, int64_t n, int tokens,
                                int64_t r0, int64_t r1, float* y, int64_t y_stride);
void gemv_rows_q8_0_tokens_avx512(const uint8_t* W, const float* x, int64_t n, int tokens,
                                  int64_t r0, int64_t r1, float* y, int64_t y_stride);
void gemv_rows_f16_avx512(const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                          float* y);
void gemv_rows_bf16_avx512(const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                           float* y);
float dot_f32_avx2(const float* a, const float* b, int64_t n);
void attention_scores_avx2(const float* q, const float* k, int64_t stride, int64_t count, int hd,
                           float scale, float* out);
void attention_weighted_sum_add_avx2(const float* w, const float* v, int64_t stride,
                                     int64_t count, int hd, float* out);
void block_product_f32_f64_avx2(const float* H, int64_t n, const double* V, int m, double* out);
void sub_scaled_f32_avx2(float* y, const float* x, float a, int64_t n);
void add_scaled_f32_f64_avx2(double* y, const float* x, double a, int64_t n);
void block_product_f32_f64_avx512(const float* H, int64_t n, const double* V, int m, double* out);
void sub_scaled_f32_avx512(float* y, const float* x, float a, int64_t n);
void add_scaled_f32_f64_avx512(double* y, const float* x, double a, int64_t n);
// Attention at twice AVX2's width (head dimensions a multiple of 16; others go to the AVX2
// kernels): scores in groups of four rows from the first, like every version.
void attention_scores_avx512(const float* q, const float* k, int64_t stride, int64_t count, int hd,
                             float scale, float* out);
void attention_weighted_sum_add_avx512(const float* w, const float* v, int64_t stride,
                                       int64_t count, int hd, float* out);
void gemv_rows_f32_avx2(const float* W, const float* x, int64_t n, int64_t r0, int64_t r1, float* y);
void gemv2_rows_f32_avx2(const float* W, const float* x0, const float* x1, int64_t n, int64_t r0,
                         int64_t r1, float* y0, float* y1);
#endif

}  // namespace elutq::kern
