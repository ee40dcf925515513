// NEON K-quant matmuls (kquant_gemm.h) for CPUs with the dot-product extension (SDOT), equal to
// the scalar reference bit for bit: a row's super-block is decoded into 32-weight pieces of codes
// (0..63, so signed bytes too), each piece meets every token of a group of up to four with two
// SDOTs (one per 16-weight half, each with its own scale), and the per-super-block sums take the
// scalar reference's fp32 operations. CPUs without SDOT keep the scalar kernels (dispatch.cpp).
#include <arm_neon.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "kernels/block32_gemm.h"
#include "kernels/kquant_gemm.h"
#include "kernels/token_groups.h"

namespace elutq::kern {
namespace {

constexpr int kGroup = 4;

float half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_f32(h);
}

// A super-block decoded: piece c = weights 32c..32c+31 as two 16-byte halves, the scales of the
// halves, and the offsets' weights for the activations' 16-sums (see each format).
struct Decoded {
  int8x16_t codes[8][2];
  int32_t scale[8][2];
  int32_t offset[16];
  float d, dmin;
};

void scale_min_k4(int j, const uint8_t* s, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Q4_K / Q5_K: piece j is sub-block j (one scale); offset g = m_{g/2}, so sum_g offset_g bsum_g =
// M.
template <bool kFifthBit>
struct K4Format {
  static constexpr int64_t kBytes = kFifthBit ? kQ5KBlockBytes : kQ4KBlockBytes;
  static constexpr bool kHasMin = true;
  static void decode(const uint8_t* b, Decoded* u) {
    u->d = half(b);
    u->dmin = half(b + 2);
    const uint8_t* qs = b + (kFifthBit ? 48 : 16);
    const uint8x16_t low4 = vdupq_n_u8(0x0F);
    for (int p = 0; p < 4; ++p)
      for (int h = 0; h < 2; ++h) {
        const uint8x16_t v = vld1q_u8(qs + 32 * p + 16 * h);
        uint8x16_t lo = vandq_u8(v, low4), hi = vshrq_n_u8(v, 4);
        if (kFifthBit) {
          const uint8x16_t qh = vld1q_u8(b + 16 + 16 * h), sixteen = vdupq_n_u8(16);
          lo = vorrq_u8(lo, vandq_u8(vtstq_u8(qh, vdupq_n_u8(uint8_t(1 << (2 * p)))), sixteen));
          hi = vorrq_u8(hi, vandq_u8(vtstq_u8(qh, vdupq_n_u8(uint8_t(1 << (2 * p + 1)))), sixteen));
        }
        u->codes[2 * p][h] = vreinterpretq_s8_u8(lo);
        u->codes[2 * p + 1][h] = vreinterpretq_s8_u8(hi);
      }
    for (int j = 0; j < 8; ++j) {
      int sc, m;
      scale_min_k4(j, b + 4, &sc, &m);
      u->scale[j][0] = u->scale[j][1] = sc;
      u->offset[2 * j] = u->offset[2 * j + 1] = m;
    }
  }
};

// Q6_K: piece c = 4h + k; offset g = 32 sc_g, subtracted (the codes are stored plus 32).
struct Q6KFormat {
  static constexpr int64_t kBytes = kQ6KBlockBytes;
  static constexpr bool kHasMin = false;
  static void decode(const uint8_t* b, Decoded* u) {
    u->d = half(b + 208);
    u->dmin = 0.0f;
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
    const uint8x16_t low4 = vdupq_n_u8(0x0F), three = vdupq_n_u8(3);
    for (int h = 0; h < 2; ++h)
      for (int k = 0; k < 4; ++k)
        for (int e = 0; e < 2; ++e) {
          const uint8x16_t low = vld1q_u8(b + 64 * h + 32 * (k % 2) + 16 * e);
          const uint8x16_t qh = vld1q_u8(b + 128 + 32 * h + 16 * e);
          const uint8x16_t lo = k < 2 ? vandq_u8(low, low4) : vshrq_n_u8(low, 4);
          uint8x16_t hi;
          switch (k) {  // the shift must be a constant
            case 0:
              hi = vandq_u8(qh, three);
              break;
            case 1:
              hi = vandq_u8(vshrq_n_u8(qh, 2), three);
              break;
            case 2:
              hi = vandq_u8(vshrq_n_u8(qh, 4), three);
              break;
            default:
              hi = vshrq_n_u8(qh, 6);
              break;
          }
          u->codes[4 * h + k][e] = vreinterpretq_s8_u8(vorrq_u8(lo, vshlq_n_u8(hi, 4)));
        }
    for (int c = 0; c < 8; ++c) {
      u->scale[c][0] = sc[2 * c];
      u->scale[c][1] = sc[2 * c + 1];
    }
    for (int g = 0; g < 16; ++g) u->offset[g] = 32 * sc[g];
  }
};

// IQ4_XS: piece j is sub-block j, its nibbles looked up in kIq4nlLevels (TBL; signed codes, as SDOT
// takes them), one scale ls_j - 32 for both halves; no offsets.
struct Iq4XsFormat {
  static constexpr int64_t kBytes = kIq4XsBlockBytes;
  static constexpr bool kHasMin = false;
  static void decode(const uint8_t* b, Decoded* u) {
    u->d = half(b);
    u->dmin = 0.0f;
    const int8x16_t levels = vld1q_s8(kIq4nlLevels);
    const uint8x16_t low4 = vdupq_n_u8(0x0F);
    uint16_t scales_h;
    std::memcpy(&scales_h, b + 2, 2);
    for (int j = 0; j < 8; ++j) {
      const uint8x16_t v = vld1q_u8(b + 8 + 16 * j);
      u->codes[j][0] = vqtbl1q_s8(levels, vandq_u8(v, low4));
      u->codes[j][1] = vqtbl1q_s8(levels, vshrq_n_u8(v, 4));
      const int ls = ((b[4 + j / 2] >> (4 * (j % 2))) & 0xF) | (((scales_h >> (2 * j)) & 3) << 4);
      u->scale[j][0] = u->scale[j][1] = ls - 32;
    }
    for (int g = 0; g < 16; ++g) u->offset[g] = 0;
  }
};

template <class F, int T>
void tile(const uint8_t* W, const Q8KActivations& x, int t0, int64_t r, float* y,
          int64_t y_stride) {
  const int64_t nb = x.n / kQK;
  float acc[T] = {};
  Decoded u;
  for (int64_t i = 0; i < nb; ++i) {
    F::decode(W + (r * nb + i) * F::kBytes, &u);
    for (int t = 0; t < T; ++t) {
      const int8_t* xq = x.q + (t0 + t) * x.n + i * kQK;
      const int16_t* bs = x.bsum + (t0 + t) * (x.n / 16) + i * 16;
      int32x4_t sum = vdupq_n_s32(0);
      for (int c = 0; c < 8; ++c) {
        const int32x4_t lo = vdotq_s32(vdupq_n_s32(0), u.codes[c][0], vld1q_s8(xq + 32 * c));
        const int32x4_t hi = vdotq_s32(vdupq_n_s32(0), u.codes[c][1], vld1q_s8(xq + 32 * c + 16));
        sum = vmlaq_n_s32(sum, lo, u.scale[c][0]);
        sum = vmlaq_n_s32(sum, hi, u.scale[c][1]);
      }
      int32_t off = 0;
      for (int g = 0; g < 16; ++g) off += u.offset[g] * bs[g];
      const float dx = x.d[(t0 + t) * nb + i];
      const int32_t S = vaddvq_s32(sum);
      if constexpr (F::kHasMin) {
        acc[t] = std::fma(dx * u.d, float(S), acc[t]);
        acc[t] = std::fma(-(dx * u.dmin), float(off), acc[t]);
      } else {
        acc[t] = std::fma(dx * u.d, float(S - off), acc[t]);
      }
    }
  }
  for (int t = 0; t < T; ++t) y[(t0 + t) * y_stride + r] = acc[t];
}

template <class F>
void gemm_rows(const uint8_t* W, const Q8KActivations& x, int64_t r0, int64_t r1, float* y,
               int64_t y_stride) {
  for (int64_t r = r0; r < r1; ++r)
    for_token_groups<kGroup>(0, x.tokens,
                             [&](auto T, int t0) { tile<F, T>(W, x, t0, r, y, y_stride); });
}

}  // namespace

void gemm_rows_q4_k_neon(const uint8_t* W, const Q8KActivations& x, int64_t r0, int64_t r1,
                         float* y, int64_t y_stride) {
  gemm_rows<K4Format<false>>(W, x, r0, r1, y, y_stride);
}

void gemm_rows_q5_k_neon(const uint8_t* W, const Q8KActivations& x, int64_t r0, int64_t r1,
                         float* y, int64_t y_stride) {
  gemm_rows<K4Format<true>>(W, x, r0, r1, y, y_stride);
}

void gemm_rows_q6_k_neon(const uint8_t* W, const Q8KActivations& x, int64_t r0, int64_t r1,
                         float* y, int64_t y_stride) {
  gemm_rows<Q6KFormat>(W, x, r0, r1, y, y_stride);
}

void gemm_rows_iq4_xs_neon(const uint8_t* W, const Q8KActivations& x, int64_t r0, int64_t r1,
                           float* y, int64_t y_stride) {
  gemm_rows<Iq4XsFormat>(W, x, r0, r1, y, y_stride);
}

}  // namespace elutq::kern
