// AVX2 kernels of block32_gemm.h, equal to the scalar reference bit for bit: the integer sums are
// exact in any order and every (row, token) pair meets the same fp32 operations in the same order.
// A block's 32 codes are decoded into two vectors of int16 and meet the int16 activations with two
// vpmaddwd (int32 lanes), four sums folded into one vector at a time: four rows of one token
// (decode), or one row of four tokens (prefill, each block decoded once for the four).
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/block32_gemm.h"

namespace elutq::kern {
namespace {

constexpr int64_t kChunkBytes = 256 << 10;  // a token chunk's activations, kept in L2

template <int kBits, bool kMin>
struct Format {
  static constexpr int64_t kBytes = 2 + (kMin ? 2 : 0) + (kBits == 5 ? 4 : 0) + 16;
  static constexpr int kOffset = kMin ? 0 : (kBits == 5 ? 16 : 8);
  static constexpr bool kHasMin = kMin;
  // The block's 32 codes as int16, weights 0..15 and 16..31.
  struct Codes {
    __m256i lo, hi;
  };
  static Codes codes(const uint8_t* b) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + kBytes - 16));
    const __m128i low4 = _mm_set1_epi8(0x0F);
    __m128i lo = _mm_and_si128(v, low4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), low4);
    if constexpr (kBits == 5) {
      uint32_t qh;
      std::memcpy(&qh, b + (kMin ? 4 : 2), 4);
      // Byte l takes qh's byte l / 8, then keeps bit l % 8; 16 where it is set.
      const __m128i bit = _mm_set1_epi64x(int64_t(0x8040201008040201ULL));
      const __m128i sixteen = _mm_set1_epi8(16);
      const __m128i q = _mm_set1_epi32(int(qh));
      const __m128i s_lo =
          _mm_shuffle_epi8(q, _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
      const __m128i s_hi =
          _mm_shuffle_epi8(q, _mm_setr_epi8(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
      lo = _mm_or_si128(lo, _mm_and_si128(_mm_cmpeq_epi8(_mm_and_si128(s_lo, bit), bit), sixteen));
      hi = _mm_or_si128(hi, _mm_and_si128(_mm_cmpeq_epi8(_mm_and_si128(s_hi, bit), bit), sixteen));
    }
    return {_mm256_cvtepu8_epi16(lo), _mm256_cvtepu8_epi16(hi)};
  }
};

// IQ4_NL: the nibbles index kIq4nlLevels (signed), looked up 16 at a time.
struct Iq4nlFormat {
  static constexpr int64_t kBytes = kIq4nlBlockBytes;
  static constexpr int kOffset = 0;
  static constexpr bool kHasMin = false;
  struct Codes {
    __m256i lo, hi;
  };
  static Codes codes(const uint8_t* b) {
    const __m128i levels = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4nlLevels));
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2));
    const __m128i low4 = _mm_set1_epi8(0x0F);
    const __m128i lo = _mm_shuffle_epi8(levels, _mm_and_si128(v, low4));
    const __m128i hi = _mm_shuffle_epi8(levels, _mm_and_si128(_mm_srli_epi16(v, 4), low4));
    return {_mm256_cvtepi8_epi16(lo), _mm256_cvtepi8_epi16(hi)};
  }
};

inline __m256i load(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

template <class C>
inline __m256i dot(const C& c, const int16_t* xq) {
  return _mm256_add_epi32(_mm256_madd_epi16(c.lo, load(xq)),
                          _mm256_madd_epi16(c.hi, load(xq + 16)));
}

inline __m128i sum4(__m256i a0, __m256i a1, __m256i a2, __m256i a3) {
  const __m256i s = _mm256_hadd_epi32(_mm256_hadd_epi32(a0, a1), _mm256_hadd_epi32(a2, a3));
  return _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
}

inline uint16_t bits16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return h;
}

// Four fp16 values (4 rows' d or m) widened exactly.
inline __m128 halves4(uint16_t a, uint16_t b, uint16_t c, uint16_t d) {
  return _mm_cvtph_ps(_mm_setr_epi16(short(a), short(b), short(c), short(d), 0, 0, 0, 0));
}

// y += one block's terms, lanes = the four (row, token) pairs of S4, with their dx, d, m, s.
template <class F>
inline __m128 add_block(__m128 acc, __m128i S, __m128 dx, __m128 d, __m128 m, __m128i s) {
  if constexpr (F::kOffset != 0) {
    S = _mm_sub_epi32(S, _mm_mullo_epi32(s, _mm_set1_epi32(F::kOffset)));
    return _mm_fmadd_ps(_mm_mul_ps(dx, d), _mm_cvtepi32_ps(S), acc);
  } else {
    acc = _mm_fmadd_ps(_mm_mul_ps(dx, d), _mm_cvtepi32_ps(S), acc);
    if constexpr (F::kHasMin) acc = _mm_fmadd_ps(_mm_mul_ps(dx, m), _mm_cvtepi32_ps(s), acc);
    return acc;
  }
}

// Rows rt .. rt+rows-1 (rows <= 4) against token t.
template <class F>
void rows4(const uint8_t* W, const BlockActivations16& x, int t, int64_t rt, int rows, float* y,
           int64_t y_stride) {
  const int64_t nb = x.n / 32;
  const uint8_t* row[4];
  for (int r = 0; r < 4; ++r) row[r] = W + (rt + std::min(r, rows - 1)) * nb * F::kBytes;
  __m128 acc = _mm_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const int16_t* xq = x.q + t * x.n + b * 32;
    __m256i p[4];
    for (int r = 0; r < 4; ++r) p[r] = dot(F::codes(row[r] + b * F::kBytes), xq);
    const __m128 dx = _mm_set1_ps(x.d[t * nb + b]);
    const __m128i s = _mm_set1_epi32(x.s[t * nb + b]);
    const __m128 d = halves4(bits16(row[0] + b * F::kBytes), bits16(row[1] + b * F::kBytes),
                             bits16(row[2] + b * F::kBytes), bits16(row[3] + b * F::kBytes));
    __m128 m = _mm_setzero_ps();
    if constexpr (F::kHasMin)
      m = halves4(bits16(row[0] + b * F::kBytes + 2), bits16(row[1] + b * F::kBytes + 2),
                  bits16(row[2] + b * F::kBytes + 2), bits16(row[3] + b * F::kBytes + 2));
    acc = add_block<F>(acc, sum4(p[0], p[1], p[2], p[3]), dx, d, m, s);
  }
  alignas(16) float out[4];
  _mm_store_ps(out, acc);
  for (int r = 0; r < rows; ++r) y[t * y_stride + rt + r] = out[r];
}

// Row r against tokens t0 .. t0+3; dx4 / s4 hold the four tokens' block scales and sums side by
// side per block (prepared once per token quad).
template <class F>
void row_quad(const uint8_t* W, const BlockActivations16& x, int t0, int64_t r, const float* dx4,
              const int32_t* s4, float* y, int64_t y_stride) {
  const int64_t nb = x.n / 32;
  const uint8_t* row = W + r * nb * F::kBytes;
  const int16_t* xq[4];
  for (int t = 0; t < 4; ++t) xq[t] = x.q + (t0 + t) * x.n;
  __m128 acc = _mm_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = row + b * F::kBytes;
    const auto c = F::codes(blk);
    const __m128i S = sum4(dot(c, xq[0] + b * 32), dot(c, xq[1] + b * 32), dot(c, xq[2] + b * 32),
                           dot(c, xq[3] + b * 32));
    const __m128 d = _mm_set1_ps(_cvtsh_ss(bits16(blk)));
    const __m128 m = F::kHasMin ? _mm_set1_ps(_cvtsh_ss(bits16(blk + 2))) : _mm_setzero_ps();
    acc = add_block<F>(acc, S, _mm_loadu_ps(dx4 + 4 * b), d, m,
                       _mm_loadu_si128(reinterpret_cast<const __m128i*>(s4 + 4 * b)));
  }
  alignas(16) float out[4];
  _mm_store_ps(out, acc);
  for (int t = 0; t < 4; ++t) y[(t0 + t) * y_stride + r] = out[t];
}

template <class F>
void gemm_rows(const uint8_t* W, const BlockActivations16& x, int64_t r0, int64_t r1, float* y,
               int64_t y_stride) {
  const int64_t nb = x.n / 32;
  const int chunk = int(std::max<int64_t>(4, kChunkBytes / (2 * x.n) / 4 * 4));
  thread_local std::vector<float> dx4;
  thread_local std::vector<int32_t> s4;
  for (int c0 = 0; c0 < x.tokens; c0 += chunk) {
    const int c1 = std::min(x.tokens, c0 + chunk);
    const int quads = (c1 - c0) / 4;
    dx4.resize(size_t(quads * nb * 4));
    s4.resize(dx4.size());
    for (int q = 0; q < quads; ++q)
      for (int64_t b = 0; b < nb; ++b)
        for (int t = 0; t < 4; ++t) {
          const int64_t tok = c0 + 4 * q + t;
          dx4[size_t((q * nb + b) * 4 + t)] = x.d[tok * nb + b];
          s4[size_t((q * nb + b) * 4 + t)] = x.s[tok * nb + b];
        }
    for (int64_t rt = r0; rt < r1; rt += 4) {
      const int rows = int(std::min<int64_t>(4, r1 - rt));
      for (int q = 0; q < quads; ++q)
        for (int r = 0; r < rows; ++r)
          row_quad<F>(W, x, c0 + 4 * q, rt + r, &dx4[size_t(q * nb * 4)], &s4[size_t(q * nb * 4)],
                      y, y_stride);
      for (int t = c0 + 4 * quads; t < c1; ++t) rows4<F>(W, x, t, rt, rows, y, y_stride);
    }
  }
}

}  // namespace

void gemm_rows_q4_0_avx2(const uint8_t* W, const BlockActivations16& x, int64_t r0, int64_t r1,
                         float* y, int64_t y_stride) {
  gemm_rows<Format<4, false>>(W, x, r0, r1, y, y_stride);
}
void gemm_rows_q4_1_avx2(const uint8_t* W, const BlockActivations16& x, int64_t r0, int64_t r1,
                         float* y, int64_t y_stride) {
  gemm_rows<Format<4, true>>(W, x, r0, r1, y, y_stride);
}
void gemm_rows_q5_0_avx2(const uint8_t* W, const BlockActivations16& x, int64_t r0, int64_t r1,
                         float* y, int64_t y_stride) {
  gemm_rows<Format<5, false>>(W, x, r0, r1, y, y_stride);
}
void gemm_rows_q5_1_avx2(const uint8_t* W, const BlockActivations16& x, int64_t r0, int64_t r1,
                         float* y, int64_t y_stride) {
  gemm_rows<Format<5, true>>(W, x, r0, r1, y, y_stride);
}
void gemm_rows_iq4_nl_avx2(const uint8_t* W, const BlockActivations16& x, int64_t r0, int64_t r1,
                           float* y, int64_t y_stride) {
  gemm_rows<Iq4nlFormat>(W, x, r0, r1, y, y_stride);
}

}  // namespace elutq::kern
