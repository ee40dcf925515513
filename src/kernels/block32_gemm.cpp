// The activations' block sums and the scalar reference kernels of block32_gemm.h, written from the
// types' definitions one weight at a time.
#include "kernels/block32_gemm.h"

#include <cmath>
#include <cstring>

#include "core/fp16.h"

namespace elutq {

void block_sums_i16(const int16_t* q, int64_t n, int32_t* s) {
  for (int64_t b = 0; b < n / 32; ++b) {
    int32_t sum = 0;
    for (int k = 0; k < 32; ++k) sum += q[b * 32 + k];
    s[b] = sum;
  }
}

namespace kern {

namespace {

float half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_f32(h);
}

// kBits 4 or 5, kMin: the _1 types (an fp16 minimum after d). Weight l of a block is the low
// (l < 16) or high nibble of qs[l % 16], plus 16 times bit l of the 32-bit qh for 5 bits.
template <int kBits, bool kMin>
void gemm_rows_scalar(const uint8_t* W, const BlockActivations16& x, int64_t r0, int64_t r1,
                      float* y, int64_t y_stride) {
  constexpr int64_t kBytes = 2 + (kMin ? 2 : 0) + (kBits == 5 ? 4 : 0) + 16;
  constexpr int kOffset = kMin ? 0 : (kBits == 5 ? 16 : 8);
  const int64_t nb = x.n / 32;
  for (int64_t r = r0; r < r1; ++r)
    for (int t = 0; t < x.tokens; ++t) {
      float acc = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* blk = W + (r * nb + b) * kBytes;
        const uint8_t* qs = blk + kBytes - 16;
        uint32_t qh = 0;
        if (kBits == 5) std::memcpy(&qh, blk + (kMin ? 4 : 2), 4);
        const int16_t* xq = x.q + t * x.n + b * 32;
        int32_t S = 0;
        for (int l = 0; l < 32; ++l) {
          int c = l < 16 ? qs[l] & 0xF : qs[l - 16] >> 4;
          if (kBits == 5) c |= int((qh >> l) & 1) << 4;
          S += c * xq[l];
        }
        const float dx = x.d[t * nb + b];
        const int32_t s = x.s[t * nb + b];
        if (kMin) {
          acc = std::fma(dx * half(blk), float(S), acc);
          acc = std::fma(dx * half(blk + 2), float(s), acc);
        } else {
          acc = std::fma(dx * half(blk), float(S - kOffset * s), acc);
        }
      }
      y[t * y_stride + r] = acc;
    }
}

}  // namespace

void gemm_rows_q4_0_scalar(const uint8_t* W, const BlockActivations16& x, int64_t r0, int64_t r1,
                           float* y, int64_t y_stride) {
  gemm_rows_scalar<4, false>(W, x, r0, r1, y, y_stride);
}
void gemm_rows_q4_1_scalar(const uint8_t* W, const BlockActivations16& x, int64_t r0, int64_t r1,
                           float* y, int64_t y_stride) {
  gemm_rows_scalar<4, true>(W, x, r0, r1, y, y_stride);
}
void gemm_rows_q5_0_scalar(const uint8_t* W, const BlockActivations16& x, int64_t r0, int64_t r1,
                           float* y, int64_t y_stride) {
  gemm_rows_scalar<5, false>(W, x, r0, r1, y, y_stride);
}
void gemm_rows_q5_1_scalar(const uint8_t* W, const BlockActivations16& x, int64_t r0, int64_t r1,
                           float* y, int64_t y_stride) {
  gemm_rows_scalar<5, true>(W, x, r0, r1, y, y_stride);
}

// IQ4_NL: weight l is level kIq4nlLevels[c] with c the low (l < 16) or high nibble of qs[l % 16].
void gemm_rows_iq4_nl_scalar(const uint8_t* W, const BlockActivations16& x, int64_t r0, int64_t r1,
                             float* y, int64_t y_stride) {
  const int64_t nb = x.n / 32;
  for (int64_t r = r0; r < r1; ++r)
    for (int t = 0; t < x.tokens; ++t) {
      float acc = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* blk = W + (r * nb + b) * kIq4nlBlockBytes;
        const int16_t* xq = x.q + t * x.n + b * 32;
        int32_t S = 0;
        for (int l = 0; l < 32; ++l) {
          const int c = l < 16 ? blk[2 + l] & 0xF : blk[2 + l - 16] >> 4;
          S += kIq4nlLevels[c] * xq[l];
        }
        acc = std::fma(x.d[t * nb + b] * half(blk), float(S), acc);
      }
      y[t * y_stride + r] = acc;
    }
}

}  // namespace kern
}  // namespace elutq
