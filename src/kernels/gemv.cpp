// The GEMV and attention entry points: the active ISA's kernels (gemv.h, attention_kernels.h).
#include "kernels/gemv.h"

#include "core/error.h"
#include "kernels/attention_kernels.h"
#include "kernels/dispatch.h"

namespace elutq {

void gemv_rows_f32(const float* W, const float* x, int64_t n, int64_t r0, int64_t r1, float* y) {
  active_kernels().gemv_rows_f32(W, x, n, r0, r1, y);
}

void gemv2_rows_f32(const float* W, const float* x0, const float* x1, int64_t n, int64_t r0,
                    int64_t r1, float* y0, float* y1) {
  active_kernels().gemv2_rows_f32(W, x0, x1, n, r0, r1, y0, y1);
}

void block_product_f32_f64(const float* H, int64_t n, const double* V, int m, double* out) {
  active_kernels().block_product_f32_f64(H, n, V, m, out);
}

void sub_scaled_f32(float* y, const float* x, float a, int64_t n) {
  active_kernels().sub_scaled_f32(y, x, a, n);
}

void add_scaled_f32_f64(double* y, const float* x, double a, int64_t n) {
  active_kernels().add_scaled_f32_f64(y, x, a, n);
}

float dot_f32(const float* a, const float* b, int64_t n) {
  return active_kernels().dot_f32(a, b, n);
}

void attention_scores(const float* q, const float* k, int64_t stride, int64_t count, int hd,
                      float scale, float* out) {
  active_kernels().attention_scores(q, k, stride, count, hd, scale, out);
}

void attention_weighted_sum_add(const float* w, const float* v, int64_t stride, int64_t count,
                                int hd, float* out) {
  active_kernels().attention_weighted_sum_add(w, v, stride, count, hd, out);
}

void gemv_rows_stored(DType t, const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                      float* y) {
  const IsaKernels& k = active_kernels();
  switch (t) {
    case DType::Q8_0: return k.gemv_rows_q8_0(W, x, n, r0, r1, y);
    case DType::F16: return k.gemv_rows_f16(W, x, n, r0, r1, y);
    case DType::BF16: return k.gemv_rows_bf16(W, x, n, r0, r1, y);
    default: fail("no stored-type GEMV for ", dtype_name(t));
  }
}

void gemv_rows_stored_tokens(DType t, const uint8_t* W, const float* x, int64_t n, int tokens,
                             int64_t r0, int64_t r1, float* y, int64_t y_stride) {
  if (t == DType::Q8_0) return active_kernels().gemv_rows_q8_0_tokens(W, x, n, tokens, r0, r1, y, y_stride);
  for (int k = 0; k < tokens; ++k) gemv_rows_stored(t, W, x + k * n, n, r0, r1, y + k * y_stride);
}

kern::Rows16Fn active_q8_rows16_kernel() { return active_kernels().q8_rows16_i16; }

kern::KQuantGemmFn active_kquant_kernel(DType t) { return kquant_kernel(active_kernels(), t); }

kern::Block32GemmFn active_block32_kernel(DType t) { return block32_kernel(active_kernels(), t); }

}  // namespace elutq
