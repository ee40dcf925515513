// AVX2 K-quant matmuls (kquant_gemm.h), equal to the scalar reference bit for bit: the integer
// sums are exact in any order, and each (row, token) pair then meets the same fp32 operations in
// the same order, four (row, token) pairs side by side in one 128-bit vector.
//
// Four rows and up to seven tokens, or one row and a full group of eight, at a time (decode and
// a prompt's tail; a prompt's body): each row's super-block is decoded in registers, 32
// weights a piece (unsigned codes, and the int16 scales of its two 16-weight halves), and meets
// every token of the group: vpmaddubsw (codes x int8 activations, pairs in int16: at most
// 2 x 63 x 127, no saturation), vpmaddwd with the scales (int32), added across the super-block;
// the offsets (Q4_K/Q5_K minimums, Q6_K's 32) meet the activations' 16-sums once per super-block.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/block32_gemm.h"
#include "kernels/kquant_gemm.h"
#include "kernels/token_groups.h"

namespace elutq::kern {
namespace {

constexpr int kTileRows = 4;
constexpr int64_t kPrefetchAhead = 16;  // super-blocks

float half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

inline __m256i load(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// The eight 6-bit scales (bytes 0..7) and minimums (bytes 8..15) of Q4_K/Q5_K's 12 packed bytes:
// scale j < 4 is the low 6 bits of byte j, minimum j < 4 those of byte j + 4; for j >= 4 the low
// (scale) or high (minimum) nibble of byte j + 4, topped by the two high bits of byte j - 4
// (scale) or byte j (minimum). Four at a time in 32-bit words.
inline __m128i k4_scales_mins(const uint8_t* p) {
  uint32_t w[3];
  std::memcpy(w, p, 12);
  const uint32_t six = 0x3F3F3F3F, low4 = 0x0F0F0F0F, top2 = 0x03030303;
  const uint32_t sc_lo = w[0] & six, m_lo = w[1] & six;
  const uint32_t sc_hi = (w[2] & low4) | (((w[0] >> 6) & top2) << 4);
  const uint32_t m_hi = ((w[2] >> 4) & low4) | (((w[1] >> 6) & top2) << 4);
  return _mm_setr_epi32(int(sc_lo), int(sc_hi), int(m_lo), int(m_hi));
}

// Each format's visit(b, &d, &dmin, piece) reads super-block b: it calls piece(c, codes, scales)
// for its eight 32-weight pieces in order (codes: unsigned bytes; scales: int16, the scale of
// weights 32c..32c+15 in the low half and of 32c+16.. in the high half) and returns the offsets
// (int16 per 16-weight sub-block, dotted with the activations' 16-sums). Codes are unsigned bytes,
// or signed ones where kSignedCodes (vpmaddubsw then takes their magnitudes, and the activations
// take their signs).

// Q4_K / Q5_K: piece j is sub-block j; offsets: m_j at lanes 2j, 2j+1, so their dot product is M.
template <bool kFifthBit>
struct K4Format {
  static constexpr int64_t kBytes = kFifthBit ? kQ5KBlockBytes : kQ4KBlockBytes;
  static constexpr bool kHasMin = true;
  static constexpr bool kSignedCodes = false;
  template <class Piece>
  static __m256i visit(const uint8_t* b, float* d, float* dmin, Piece&& piece) {
    *d = half(b);
    *dmin = half(b + 2);
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    const uint8_t* qs = b + (kFifthBit ? 48 : 16);
    const __m128i sm = k4_scales_mins(b + 4);
    // Scales as int16 in both halves, then scale j broadcast to every lane.
    const __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));
    const __m256i qh = kFifthBit ? load(b + 16) : _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      const __m256i v = load(qs + 32 * (j / 2));
      __m256i codes = _mm256_and_si256(j % 2 ? _mm256_srli_epi16(v, 4) : v, low4);
      if (kFifthBit) {
        const __m256i bit = _mm256_set1_epi8(char(1 << j));
        const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit);
        codes = _mm256_or_si256(codes, _mm256_and_si256(set, _mm256_set1_epi8(16)));
      }
      piece(j, codes, _mm256_shuffle_epi8(sc16, _mm256_set1_epi16(int16_t(0x0100 + 0x0202 * j))));
    }
    // Minimums m_j to bytes 2j and 2j+1, widened.
    return _mm256_cvtepu8_epi16(_mm_shuffle_epi8(
        sm, _mm_setr_epi8(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15)));
  }
};

// Q6_K: piece c = 4h + k; offsets: 32 sc_g, to be subtracted (the codes are stored plus 32).
struct Q6KFormat {
  static constexpr int64_t kBytes = kQ6KBlockBytes;
  static constexpr bool kHasMin = false;
  static constexpr bool kSignedCodes = false;
  template <class Piece>
  static __m256i visit(const uint8_t* b, float* d, float* dmin, Piece&& piece) {
    *d = half(b + 208);
    *dmin = 0.0f;
    const __m256i low4 = _mm256_set1_epi8(0x0F), two = _mm256_set1_epi8(3);
    const __m256i sc16 =
        _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 192)));
    // Piece c: scale 2c broadcast in the low half, 2c+1 in the high half (from sc16's half c / 4).
    const __m256i halves[2] = {_mm256_permute4x64_epi64(sc16, 0x44),
                               _mm256_permute4x64_epi64(sc16, 0xEE)};
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      const __m256i qh = load(b + 128 + 32 * h);
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        const __m256i low = load(b + 64 * h + 32 * (k % 2));
        const __m256i lo = _mm256_and_si256(k < 2 ? low : _mm256_srli_epi16(low, 4), low4);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * k), two);
        const int16_t s0 = int16_t(0x0100 + 0x0202 * (2 * k)), s1 = int16_t(s0 + 0x0202);
        piece(4 * h + k, _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4)),
              _mm256_shuffle_epi8(halves[h], _mm256_setr_epi16(s0, s0, s0, s0, s0, s0, s0, s0, s1,
                                                               s1, s1, s1, s1, s1, s1, s1)));
      }
    }
    return _mm256_slli_epi16(sc16, 5);
  }
};

// IQ4_XS: piece j is sub-block j, its nibbles looked up in kIq4nlLevels (signed codes, |code| <=
// 127: vpmaddubsw's pairs stay within 2 x 127 x 127), one scale ls_j - 32; no offsets.
struct Iq4XsFormat {
  static constexpr int64_t kBytes = kIq4XsBlockBytes;
  static constexpr bool kHasMin = false;
  static constexpr bool kSignedCodes = true;
  template <class Piece>
  static __m256i visit(const uint8_t* b, float* d, float* dmin, Piece&& piece) {
    *d = half(b);
    *dmin = 0.0f;
    const __m256i levels = _mm256_broadcastsi128_si256(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4nlLevels)));
    const __m128i low4 = _mm_set1_epi8(0x0F);
    uint16_t scales_h;
    std::memcpy(&scales_h, b + 2, 2);
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 8 + 16 * j));
      const __m256i idx = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), low4),
                                           _mm_and_si128(v, low4));
      const int ls = ((b[4 + j / 2] >> (4 * (j % 2))) & 0xF) | (((scales_h >> (2 * j)) & 3) << 4);
      piece(j, _mm256_shuffle_epi8(levels, idx), _mm256_set1_epi16(int16_t(ls - 32)));
    }
    return _mm256_setzero_si256();
  }
};

// One piece's products with a token's 32 activations, pairs summed in int16.
template <class F>
inline __m256i piece_products(__m256i codes, __m256i magnitudes, const int8_t* xq) {
  if constexpr (F::kSignedCodes)
    return _mm256_maddubs_epi16(magnitudes, _mm256_sign_epi8(load(xq), codes));
  else
    return _mm256_maddubs_epi16(codes, load(xq));
}

template <class F>
inline __m256i piece_magnitudes(__m256i codes) {
  if constexpr (F::kSignedCodes)
    return _mm256_sign_epi8(codes, codes);
  else
    return codes;
}

// The four int32 sums of a0..a3's lanes, in one vector.
inline __m128i sum4(__m256i a0, __m256i a1, __m256i a2, __m256i a3) {
  const __m256i s = _mm256_hadd_epi32(_mm256_hadd_epi32(a0, a1), _mm256_hadd_epi32(a2, a3));
  return _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
}

// acc (four rows' sums so far) plus one super-block's terms, from the rows' int32 lanes a (piece
// sums) and o (offsets times 16-sums), the activations' scale xd and the rows' d and dmin.
template <class F>
inline __m128 add_block(const __m256i* a, const __m256i* o, float xd, const float* d4,
                        const float* dmin4, __m128 acc) {
  const __m128 dx = _mm_set1_ps(xd);
  const __m128 d = _mm_loadu_ps(d4);
  if constexpr (F::kHasMin) {
    const __m128i S = sum4(a[0], a[1], a[2], a[3]);
    const __m128i M = sum4(o[0], o[1], o[2], o[3]);
    acc = _mm_fmadd_ps(_mm_mul_ps(dx, d), _mm_cvtepi32_ps(S), acc);
    return _mm_fnmadd_ps(_mm_mul_ps(dx, _mm_loadu_ps(dmin4)), _mm_cvtepi32_ps(M), acc);
  } else {
    const __m128i S = sum4(_mm256_sub_epi32(a[0], o[0]), _mm256_sub_epi32(a[1], o[1]),
                           _mm256_sub_epi32(a[2], o[2]), _mm256_sub_epi32(a[3], o[3]));
    return _mm_fmadd_ps(_mm_mul_ps(dx, d), _mm_cvtepi32_ps(S), acc);
  }
}

// Up to kGroup tokens (t0 ..) against four rows (rt ..): each row's super-block is read straight
// from its bytes into the sums of every token, nothing stored in between.
constexpr int kGroup = 8;

template <class F, int T>
void tile(const uint8_t* W, const Q8KActivations& x, int t0, int64_t rt, int rows, float* y,
          int64_t y_stride) {
  const int64_t nb = x.n / kQK;
  __m128 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const int8_t* xq[T];
    __m256i s16[T];
    for (int t = 0; t < T; ++t) {
      xq[t] = x.q + (t0 + t) * x.n + i * kQK;
      s16[t] = load(x.bsum + (t0 + t) * (x.n / 16) + i * 16);
    }
    __m256i a[T][kTileRows], o[T][kTileRows];
    alignas(16) float d4[kTileRows], dmin4[kTileRows];
    for (int r = 0; r < kTileRows; ++r) {
      if (r >= rows) {
        for (int t = 0; t < T; ++t) a[t][r] = o[t][r] = _mm256_setzero_si256();
        d4[r] = dmin4[r] = 0.0f;
        continue;
      }
      const uint8_t* b = W + ((rt + r) * nb + i) * F::kBytes;
      // Four rows' streams at once are more than the hardware prefetchers follow well: ask for
      // the super-block kPrefetchAhead ahead of each (past a row's end: the next rows', harmless).
      for (int64_t off = 0; off < F::kBytes; off += 64)
        _mm_prefetch(reinterpret_cast<const char*>(b + kPrefetchAhead * F::kBytes + off),
                     _MM_HINT_T0);
      __m256i sums[T];
      for (int t = 0; t < T; ++t) sums[t] = _mm256_setzero_si256();
      const __m256i off = F::visit(b, &d4[r], &dmin4[r], [&](int c, __m256i codes, __m256i scales) {
        const __m256i mag = piece_magnitudes<F>(codes);
        for (int t = 0; t < T; ++t)
          sums[t] = _mm256_add_epi32(
              sums[t],
              _mm256_madd_epi16(piece_products<F>(codes, mag, xq[t] + 32 * c), scales));
      });
      for (int t = 0; t < T; ++t) {
        a[t][r] = sums[t];
        o[t][r] = _mm256_madd_epi16(off, s16[t]);
      }
    }
    for (int t = 0; t < T; ++t)
      acc[t] = add_block<F>(a[t], o[t], x.d[(t0 + t) * nb + i], d4, dmin4, acc[t]);
  }
  for (int t = 0; t < T; ++t) {
    alignas(16) float out[kTileRows];
    _mm_store_ps(out, acc[t]);
    for (int r = 0; r < rows; ++r) y[(t0 + t) * y_stride + rt + r] = out[r];
  }
}

// A full group of eight tokens against one row (the prefill's steady state): the eight tokens'
// sums of each super-block fold into two four-token vectors, so everything stays in registers.
template <class F>
void row8(const uint8_t* W, const Q8KActivations& x, int t0, int64_t r, float* y,
          int64_t y_stride) {
  constexpr int T = 8;
  const int64_t nb = x.n / kQK;
  const int8_t* xq[T];
  const int16_t* bs[T];
  const float* xd[T];
  for (int t = 0; t < T; ++t) {
    xq[t] = x.q + (t0 + t) * x.n;
    bs[t] = x.bsum + (t0 + t) * (x.n / 16);
    xd[t] = x.d + (t0 + t) * nb;
  }
  __m128 acc[2] = {_mm_setzero_ps(), _mm_setzero_ps()};
  for (int64_t i = 0; i < nb; ++i) {
    __m256i sums[T];
    for (int t = 0; t < T; ++t) sums[t] = _mm256_setzero_si256();
    float d, dmin;
    const __m256i off = F::visit(
        W + (r * nb + i) * F::kBytes, &d, &dmin, [&](int c, __m256i codes, __m256i scales) {
          const __m256i mag = piece_magnitudes<F>(codes);
          for (int t = 0; t < T; ++t)
            sums[t] = _mm256_add_epi32(
                sums[t], _mm256_madd_epi16(
                             piece_products<F>(codes, mag, xq[t] + i * kQK + 32 * c), scales));
        });
    for (int h = 0; h < 2; ++h) {
      const int u = 4 * h;
      __m256i o[4];
      for (int t = 0; t < 4; ++t) o[t] = _mm256_madd_epi16(off, load(bs[u + t] + i * 16));
      const __m128 dx = _mm_setr_ps(xd[u][i], xd[u + 1][i], xd[u + 2][i], xd[u + 3][i]);
      if constexpr (F::kHasMin) {
        const __m128i S = sum4(sums[u], sums[u + 1], sums[u + 2], sums[u + 3]);
        const __m128i M = sum4(o[0], o[1], o[2], o[3]);
        acc[h] = _mm_fmadd_ps(_mm_mul_ps(dx, _mm_set1_ps(d)), _mm_cvtepi32_ps(S), acc[h]);
        acc[h] = _mm_fnmadd_ps(_mm_mul_ps(dx, _mm_set1_ps(dmin)), _mm_cvtepi32_ps(M), acc[h]);
      } else {
        const __m128i S =
            sum4(_mm256_sub_epi32(sums[u], o[0]), _mm256_sub_epi32(sums[u + 1], o[1]),
                 _mm256_sub_epi32(sums[u + 2], o[2]), _mm256_sub_epi32(sums[u + 3], o[3]));
        acc[h] = _mm_fmadd_ps(_mm_mul_ps(dx, _mm_set1_ps(d)), _mm_cvtepi32_ps(S), acc[h]);
      }
    }
  }
  alignas(16) float out[T];
  _mm_store_ps(out, acc[0]);
  _mm_store_ps(out + 4, acc[1]);
  for (int t = 0; t < T; ++t) y[(t0 + t) * y_stride + r] = out[t];
}

// Tokens in chunks whose activations fit in L2 (kChunkBytes), row tiles inside them (a thread's
// rows come from memory on the first chunk and from L3 after), token groups inside each tile. With
// every token inside the row loop, a long prompt's activations would stream from L3 once per
// four rows.
constexpr int64_t kChunkBytes = 256 << 10;

template <class F>
void gemm_rows(const uint8_t* W, const Q8KActivations& x, int64_t r0, int64_t r1, float* y,
               int64_t y_stride) {
  const int chunk = int(std::max<int64_t>(kGroup, kChunkBytes / x.n / kGroup * kGroup));
  for (int c0 = 0; c0 < x.tokens; c0 += chunk) {
    const int c1 = std::min(x.tokens, c0 + chunk);
    for (int64_t rt = r0; rt < r1; rt += kTileRows) {
      const int rows = int(std::min<int64_t>(kTileRows, r1 - rt));
      for_token_groups<kGroup>(c0, c1, [&](auto T, int t0) {
        if constexpr (T == kGroup) {
          for (int r = 0; r < rows; ++r) row8<F>(W, x, t0, rt + r, y, y_stride);
        } else {
          tile<F, T>(W, x, t0, rt, rows, y, y_stride);
        }
      });
    }
  }
}

inline int hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_hadd_epi32(s, s);
  return _mm_cvtsi128_si32(_mm_hadd_epi32(s, s));
}

}  // namespace

// As the scalar version: the same maximum (exact), the same d and 127 / amax in scalar, and
// vroundps's nearest-even where the scalar one calls nearbyint.
void quantize_activations_q8k_avx2(const float* x, int64_t n, int8_t* q, float* d, int16_t* bsum) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  const __m256 big = _mm256_set1_ps(3.40282347e38f);
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* xb = x + b * kQK;
    __m256 amax = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
    for (int k = 0; k < kQK; k += 8) {
      const __m256 a = _mm256_and_ps(_mm256_loadu_ps(xb + k), abs_mask);
      bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, big, _CMP_NLE_UQ));  // Inf or NaN
      amax = _mm256_max_ps(amax, a);
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float amax_s = _mm_cvtss_f32(m);
    const bool finite = _mm256_movemask_ps(bad) == 0;
    if (!finite || amax_s == 0.0f) {
      d[b] = finite ? 0.0f : NAN;
      std::memset(q + b * kQK, 0, kQK);
      std::memset(bsum + b * 16, 0, 16 * sizeof(int16_t));
      continue;
    }
    d[b] = amax_s / 127.0f;
    const __m256 inv = _mm256_set1_ps(127.0f / amax_s);
    const __m256i lim = _mm256_set1_epi32(127), neg = _mm256_set1_epi32(-127);
    for (int k = 0; k < kQK; k += 32) {
      __m256i v[4];
      for (int e = 0; e < 4; ++e) {
        const __m256 r = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(xb + k + 8 * e), inv),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v[e] = _mm256_max_epi32(_mm256_min_epi32(_mm256_cvtps_epi32(r), lim), neg);
      }
      const __m256i bytes =
          _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
      _mm256_storeu_si256(
          reinterpret_cast<__m256i*>(q + b * kQK + k),
          _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
      bsum[b * 16 + k / 16] = int16_t(hsum_i32(_mm256_add_epi32(v[0], v[1])));
      bsum[b * 16 + k / 16 + 1] = int16_t(hsum_i32(_mm256_add_epi32(v[2], v[3])));
    }
  }
}

void gemm_rows_q4_k_avx2(const uint8_t* W, const Q8KActivations& x, int64_t r0, int64_t r1,
                         float* y, int64_t y_stride) {
  gemm_rows<K4Format<false>>(W, x, r0, r1, y, y_stride);
}

void gemm_rows_q5_k_avx2(const uint8_t* W, const Q8KActivations& x, int64_t r0, int64_t r1,
                         float* y, int64_t y_stride) {
  gemm_rows<K4Format<true>>(W, x, r0, r1, y, y_stride);
}

void gemm_rows_q6_k_avx2(const uint8_t* W, const Q8KActivations& x, int64_t r0, int64_t r1,
                         float* y, int64_t y_stride) {
  gemm_rows<Q6KFormat>(W, x, r0, r1, y, y_stride);
}

void gemm_rows_iq4_xs_avx2(const uint8_t* W, const Q8KActivations& x, int64_t r0, int64_t r1,
                           float* y, int64_t y_stride) {
  gemm_rows<Iq4XsFormat>(W, x, r0, r1, y, y_stride);
}

}  // namespace elutq::kern
