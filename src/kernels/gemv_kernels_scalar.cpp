// The scalar dot/GEMV kernels: the reference every ISA's version is tested against (gemv_kernels.h),
// and what runs where no SIMD version exists.
#include <cstring>

#include "core/fp16.h"
#include "kernels/gemv_kernels.h"

namespace elutq::kern {
namespace {

constexpr int64_t kQ8Block = 34;  // fp16 d + 32 int8

uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

}  // namespace

float dot_f32_scalar(const float* a, const float* b, int64_t n) {
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}
void attention_scores_scalar(const float* q, const float* k, int64_t stride, int64_t count, int hd,
                             float scale, float* out) {
  for (int64_t j = 0; j < count; ++j) out[j] = dot_f32_scalar(q, k + j * stride, hd) * scale;
}

void attention_weighted_sum_add_scalar(const float* w, const float* v, int64_t stride,
                                       int64_t count, int hd, float* out) {
  for (int64_t j = 0; j < count; ++j)
    for (int d = 0; d < hd; ++d) out[d] += w[j] * v[j * stride + d];
}

void sub_scaled_f32_scalar(float* y, const float* x, float a, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const float t = a * x[j];
    y[j] -= t;
  }
}

void add_scaled_f32_f64_scalar(double* y, const float* x, double a, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const double t = a * double(x[j]);
    y[j] += t;
  }
}

void gemv_rows_f32_scalar(const float* W, const float* x, int64_t n, int64_t r0, int64_t r1, float* y) {
  for (int64_t r = r0; r < r1; ++r) y[r] = dot_f32_scalar(W + r * n, x, n);
}
void gemv2_rows_f32_scalar(const float* W, const float* x0, const float* x1, int64_t n, int64_t r0,
                           int64_t r1, float* y0, float* y1) {
  gemv_rows_f32_scalar(W, x0, n, r0, r1, y0);
  gemv_rows_f32_scalar(W, x1, n, r0, r1, y1);
}
void gemv_rows_q8_0_scalar(const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                           float* y) {
  const int64_t nb = n / 32;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = W + r * nb * kQ8Block;
    float s = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = row + b * kQ8Block;
      const float d = fp16_to_f32(load_u16(blk));
      const int8_t* q = reinterpret_cast<const int8_t*>(blk + 2);
      for (int j = 0; j < 32; ++j) s += (d * float(q[j])) * x[b * 32 + j];
    }
    y[r] = s;
  }
}

void gemv_rows_q8_0_tokens_scalar(const uint8_t* W, const float* x, int64_t n, int tokens,
                                  int64_t r0, int64_t r1, float* y, int64_t y_stride) {
  for (int t = 0; t < tokens; ++t) gemv_rows_q8_0_scalar(W, x + t * n, n, r0, r1, y + t * y_stride);
}
void gemv_rows_f16_scalar(const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                          float* y) {
  for (int64_t r = r0; r < r1; ++r) y[r] = half_row_dot<false>(W + r * n * 2, x, 0, n, 0.0f);
}
void gemv_rows_bf16_scalar(const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                           float* y) {
  for (int64_t r = r0; r < r1; ++r) y[r] = half_row_dot<true>(W + r * n * 2, x, 0, n, 0.0f);
}

void block_product_f32_f64_scalar(const float* H, int64_t n, const double* V, int m, double* out) {
  for (int64_t i = 0; i < n; ++i)
    for (int c = 0; c < m; ++c) {
      double s = 0;
      for (int64_t j = 0; j < n; ++j) s += double(H[i * n + j]) * V[j * m + c];
      out[i * m + c] = s;
    }
}

}  // namespace elutq::kern
