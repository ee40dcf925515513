// Per-ISA fp32 dot/GEMV kernels behind dense_linear. The scalar versions are the reference.
#pragma once

#include <cstdint>

namespace elutq::kern {

float dot_f32_scalar(const float* a, const float* b, int64_t n);
void gemv_rows_f32_scalar(const float* W, const float* x, int64_t n, int64_t r0, int64_t r1, float* y);
#if defined(ELUTQ_X86)
float dot_f32_avx2(const float* a, const float* b, int64_t n);
void gemv_rows_f32_avx2(const float* W, const float* x, int64_t n, int64_t r0, int64_t r1, float* y);
#endif

}  // namespace elutq::kern
