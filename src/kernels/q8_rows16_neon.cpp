// The rows16 Q8_0 kernel on NEON (q8_rows16.h): per column pair, the 16 rows' two codes split into
// even and odd vectors by one de-interleaving load and widened to int16, then multiplied into
// int32 lanes (4 rows each) with each token's activation pair (SMLAL by element), up to two tokens
// a pass; each token's block sums then scaled into its fp32 row sums. Equal to the scalar
// reference bit for bit: integer sums are exact, the float steps are the same operations (the
// fused multiply-add included) in the same order.
#include <arm_neon.h>

#include <algorithm>
#include <cstring>

#include "core/fp16.h"
#include "kernels/q8_rows16.h"
#include "kernels/token_groups.h"

namespace elutq::kern {

namespace {

// Rows of one group against T tokens (T <= 2: 8 sums and 8 row sums per token fill the registers).
template <int T>
void rows16_group(const uint8_t* G, int64_t nb, int64_t n, const int16_t* xq, const float* dx,
                  float* y, int64_t y_stride, int live) {
  float32x4_t acc[T][4];
  for (int t = 0; t < T; ++t)
    for (int k = 0; k < 4; ++k) acc[t][k] = vdupq_n_f32(0.0f);
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = G + b * kRows16BlockBytes;
    float d[kRows16];
    for (int r = 0; r < kRows16; ++r) {
      uint16_t h;
      std::memcpy(&h, blk + 2 * r, 2);
      d[r] = fp16_to_f32(h);
    }
    int32x4_t s[T][4];
    for (int t = 0; t < T; ++t)
      for (int k = 0; k < 4; ++k) s[t][k] = vdupq_n_s32(0);
    for (int p = 0; p < 16; ++p) {
      // val[0]: q[r][2p] for rows 0..15, val[1]: q[r][2p + 1].
      const int8x16x2_t q = vld2q_s8(reinterpret_cast<const int8_t*>(blk + 32 + p * 32));
      const int16x8_t e_lo = vmovl_s8(vget_low_s8(q.val[0])), e_hi = vmovl_high_s8(q.val[0]);
      const int16x8_t o_lo = vmovl_s8(vget_low_s8(q.val[1])), o_hi = vmovl_high_s8(q.val[1]);
      for (int t = 0; t < T; ++t) {
        const int16_t x0 = xq[t * n + b * 32 + 2 * p], x1 = xq[t * n + b * 32 + 2 * p + 1];
        s[t][0] = vmlal_n_s16(s[t][0], vget_low_s16(e_lo), x0);
        s[t][1] = vmlal_high_n_s16(s[t][1], e_lo, x0);
        s[t][2] = vmlal_n_s16(s[t][2], vget_low_s16(e_hi), x0);
        s[t][3] = vmlal_high_n_s16(s[t][3], e_hi, x0);
        s[t][0] = vmlal_n_s16(s[t][0], vget_low_s16(o_lo), x1);
        s[t][1] = vmlal_high_n_s16(s[t][1], o_lo, x1);
        s[t][2] = vmlal_n_s16(s[t][2], vget_low_s16(o_hi), x1);
        s[t][3] = vmlal_high_n_s16(s[t][3], o_hi, x1);
      }
    }
    for (int t = 0; t < T; ++t) {
      const float32x4_t vdx = vdupq_n_f32(dx[t * nb + b]);
      for (int k = 0; k < 4; ++k) {
        const float32x4_t scale = vmulq_f32(vld1q_f32(d + 4 * k), vdx);
        acc[t][k] = vfmaq_f32(acc[t][k], vcvtq_f32_s32(s[t][k]), scale);
      }
    }
  }
  for (int t = 0; t < T; ++t) {
    float out[kRows16];
    for (int k = 0; k < 4; ++k) vst1q_f32(out + 4 * k, acc[t][k]);
    std::copy(out, out + live, y + t * y_stride);
  }
}

}  // namespace

void q8_rows16_i16_neon(const uint8_t* W, int64_t rows, int64_t n, const int16_t* xq,
                        const float* dx, int tokens, int64_t g0, int64_t g1, float* y,
                        int64_t y_stride) {
  const int64_t nb = n / 32;
  for (int64_t g = g0; g < g1; ++g) {
    const uint8_t* G = W + g * nb * kRows16BlockBytes;
    const int live = int(std::min<int64_t>(kRows16, rows - g * kRows16));
    float* yg = y + g * kRows16;
    for_token_groups<2>(0, tokens, [&](auto T, int t) {
      rows16_group<T>(G, nb, n, xq + t * n, dx + t * nb, yg + t * y_stride, y_stride, live);
    });
  }
}

}  // namespace elutq::kern
