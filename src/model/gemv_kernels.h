// Per-ISA dot/GEMV kernels behind dense_linear (fp32) and stored_linear (Q8_0, F16, BF16). The
// scalar versions are the reference.
#pragma once

#include <cstdint>

namespace elutq::kern {

float dot_f32_scalar(const float* a, const float* b, int64_t n);
void gemv_rows_f32_scalar(const float* W, const float* x, int64_t n, int64_t r0, int64_t r1, float* y);
// GGML Q8_0 rows (34-byte blocks of fp16 d + 32 int8 q; n % 32 == 0): y[r] = sum_k d q_k x_k, each
// weight formed as the fp32 product d * q (exact) before it meets x.
void gemv_rows_q8_0_scalar(const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                           float* y);
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
void gemv_rows_f16_avx512(const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                          float* y);
void gemv_rows_bf16_avx512(const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                           float* y);
float dot_f32_avx2(const float* a, const float* b, int64_t n);
void gemv_rows_f32_avx2(const float* W, const float* x, int64_t n, int64_t r0, int64_t r1, float* y);
#endif

}  // namespace elutq::kern
