// NEON kernels of block32_gemm.h, equal to the scalar reference bit for bit: each block's 32 codes
// widened to int16 once per row and block, multiplied into int32 lanes with the int16 activations
// of up to four tokens (SMLAL), the per-block sums then taking the scalar reference's fp32 steps.
#include <arm_neon.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "kernels/block32_gemm.h"
#include "kernels/token_groups.h"

namespace elutq::kern {
namespace {

constexpr int kGroup = 4;

float half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_f32(h);
}

template <int kBits, bool kMin>
struct Format {
  static constexpr int64_t kBytes = 2 + (kMin ? 2 : 0) + (kBits == 5 ? 4 : 0) + 16;
  static constexpr int kOffset = kMin ? 0 : (kBits == 5 ? 16 : 8);
  static constexpr bool kHasMin = kMin;
  // The block's codes as int16, weights 8i .. 8i+7 in c[i].
  static void codes(const uint8_t* b, int16x8_t c[4]) {
    const uint8x16_t v = vld1q_u8(b + kBytes - 16);
    uint8x16_t lo = vandq_u8(v, vdupq_n_u8(0x0F)), hi = vshrq_n_u8(v, 4);
    if constexpr (kBits == 5) {
      uint32_t qh;
      std::memcpy(&qh, b + (kMin ? 4 : 2), 4);
      // Byte l of lo takes bit l of qh, byte l of hi bit l + 16: qh's bytes spread eight-fold,
      // then each byte's own bit tested.
      static const uint8_t kBit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
      const uint8x16_t bit = vld1q_u8(kBit), sixteen = vdupq_n_u8(16);
      const uint8x16_t spread_lo = vcombine_u8(vdup_n_u8(uint8_t(qh)), vdup_n_u8(uint8_t(qh >> 8)));
      const uint8x16_t spread_hi =
          vcombine_u8(vdup_n_u8(uint8_t(qh >> 16)), vdup_n_u8(uint8_t(qh >> 24)));
      lo = vorrq_u8(lo, vandq_u8(vtstq_u8(spread_lo, bit), sixteen));
      hi = vorrq_u8(hi, vandq_u8(vtstq_u8(spread_hi, bit), sixteen));
    }
    c[0] = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(lo)));
    c[1] = vreinterpretq_s16_u16(vmovl_u8(vget_high_u8(lo)));
    c[2] = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(hi)));
    c[3] = vreinterpretq_s16_u16(vmovl_u8(vget_high_u8(hi)));
  }
};

// IQ4_NL: the nibbles index kIq4nlLevels (signed), looked up 16 at a time (TBL).
struct Iq4nlFormat {
  static constexpr int64_t kBytes = kIq4nlBlockBytes;
  static constexpr int kOffset = 0;
  static constexpr bool kHasMin = false;
  static void codes(const uint8_t* b, int16x8_t c[4]) {
    const int8x16_t levels = vld1q_s8(kIq4nlLevels);
    const uint8x16_t v = vld1q_u8(b + 2);
    const int8x16_t lo = vqtbl1q_s8(levels, vandq_u8(v, vdupq_n_u8(0x0F)));
    const int8x16_t hi = vqtbl1q_s8(levels, vshrq_n_u8(v, 4));
    c[0] = vmovl_s8(vget_low_s8(lo));
    c[1] = vmovl_s8(vget_high_s8(lo));
    c[2] = vmovl_s8(vget_low_s8(hi));
    c[3] = vmovl_s8(vget_high_s8(hi));
  }
};

template <class F, int T>
void tile(const uint8_t* W, const BlockActivations16& x, int t0, int64_t r, float* y,
          int64_t y_stride) {
  const int64_t nb = x.n / 32;
  float acc[T] = {};
  int16x8_t c[4];
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = W + (r * nb + b) * F::kBytes;
    F::codes(blk, c);
    const float d = half(blk), m = F::kHasMin ? half(blk + 2) : 0.0f;
    for (int t = 0; t < T; ++t) {
      const int16_t* xq = x.q + (t0 + t) * x.n + b * 32;
      int32x4_t sum = vdupq_n_s32(0);
      for (int i = 0; i < 4; ++i) {
        const int16x8_t xv = vld1q_s16(xq + 8 * i);
        sum = vmlal_s16(sum, vget_low_s16(c[i]), vget_low_s16(xv));
        sum = vmlal_high_s16(sum, c[i], xv);
      }
      const int32_t S = vaddvq_s32(sum), s = x.s[(t0 + t) * nb + b];
      const float dx = x.d[(t0 + t) * nb + b];
      if constexpr (F::kOffset != 0) {
        acc[t] = std::fma(dx * d, float(S - F::kOffset * s), acc[t]);
      } else {
        acc[t] = std::fma(dx * d, float(S), acc[t]);
        if constexpr (F::kHasMin) acc[t] = std::fma(dx * m, float(s), acc[t]);
      }
    }
  }
  for (int t = 0; t < T; ++t) y[(t0 + t) * y_stride + r] = acc[t];
}

template <class F>
void gemm_rows(const uint8_t* W, const BlockActivations16& x, int64_t r0, int64_t r1, float* y,
               int64_t y_stride) {
  for (int64_t r = r0; r < r1; ++r)
    for_token_groups<kGroup>(0, x.tokens,
                             [&](auto T, int t0) { tile<F, T>(W, x, t0, r, y, y_stride); });
}

}  // namespace

void gemm_rows_q4_0_neon(const uint8_t* W, const BlockActivations16& x, int64_t r0, int64_t r1,
                         float* y, int64_t y_stride) {
  gemm_rows<Format<4, false>>(W, x, r0, r1, y, y_stride);
}
void gemm_rows_q4_1_neon(const uint8_t* W, const BlockActivations16& x, int64_t r0, int64_t r1,
                         float* y, int64_t y_stride) {
  gemm_rows<Format<4, true>>(W, x, r0, r1, y, y_stride);
}
void gemm_rows_q5_0_neon(const uint8_t* W, const BlockActivations16& x, int64_t r0, int64_t r1,
                         float* y, int64_t y_stride) {
  gemm_rows<Format<5, false>>(W, x, r0, r1, y, y_stride);
}
void gemm_rows_q5_1_neon(const uint8_t* W, const BlockActivations16& x, int64_t r0, int64_t r1,
                         float* y, int64_t y_stride) {
  gemm_rows<Format<5, true>>(W, x, r0, r1, y, y_stride);
}
void gemm_rows_iq4_nl_neon(const uint8_t* W, const BlockActivations16& x, int64_t r0, int64_t r1,
                           float* y, int64_t y_stride) {
  gemm_rows<Iq4nlFormat>(W, x, r0, r1, y, y_stride);
}

}  // namespace elutq::kern
