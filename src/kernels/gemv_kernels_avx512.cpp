// AVX-512 GEMV rows for the stored types Q8_0, F16 and BF16 (compiled with the AVX-512 flags;
// chosen at run time): the AVX2 kernels at twice the width, for the Q8_0 output head that takes a
// large share of a small model's decode (see docs/RESULTS.md, section "LUT kernels", "SmolLM2's
// output head on its Q8_0 blocks").
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/gemv_kernels.h"

// GCC 12 reports the self-initialised placeholder inside avx512fintrin.h's _mm512_cvtepi8_epi32 /
// _mm512_cvtepi32_ps as maybe-uninitialized once they are inlined here; it is not.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace elutq::kern {

namespace {
// Q8_0 rows for T tokens (T = 1: the GEMV): each pair of blocks widened once, then every token's
// four FMA chains (even blocks into chains 0 and 1, odd into 2 and 3), so each token's sums are
// the same whatever T.
template <int T>
void q8_0_rows_tokens(const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                      float* y, int64_t y_stride) {
  const int64_t nb = n / 32;
  // w = d * q in fp32 (exact: an 11-bit by 8-bit product), before it meets x.
  auto widen = [](const uint8_t* blk, __m512& w0, __m512& w1) {
    uint16_t dh;
    std::memcpy(&dh, blk, 2);
    const __m512 d = _mm512_set1_ps(_cvtsh_ss(dh));
    const __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
    const __m128i q1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 18));
    w0 = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0)));
    w1 = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1)));
  };
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = W + r * nb * 34;
    __m512 s[T][4];
    for (int t = 0; t < T; ++t)
      for (int k = 0; k < 4; ++k) s[t][k] = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
      __m512 a0, a1, c0, c1;
      widen(row + b * 34, a0, a1);
      widen(row + (b + 1) * 34, c0, c1);
      for (int t = 0; t < T; ++t) {
        const float* xb = x + t * n + b * 32;
        s[t][0] = _mm512_fmadd_ps(a0, _mm512_loadu_ps(xb), s[t][0]);
        s[t][1] = _mm512_fmadd_ps(a1, _mm512_loadu_ps(xb + 16), s[t][1]);
        s[t][2] = _mm512_fmadd_ps(c0, _mm512_loadu_ps(xb + 32), s[t][2]);
        s[t][3] = _mm512_fmadd_ps(c1, _mm512_loadu_ps(xb + 48), s[t][3]);
      }
    }
    if (b < nb) {
      __m512 a0, a1;
      widen(row + b * 34, a0, a1);
      for (int t = 0; t < T; ++t) {
        const float* xb = x + t * n + b * 32;
        s[t][0] = _mm512_fmadd_ps(a0, _mm512_loadu_ps(xb), s[t][0]);
        s[t][1] = _mm512_fmadd_ps(a1, _mm512_loadu_ps(xb + 16), s[t][1]);
      }
    }
    for (int t = 0; t < T; ++t)
      y[t * y_stride + r] = _mm512_reduce_add_ps(
          _mm512_add_ps(_mm512_add_ps(s[t][0], s[t][1]), _mm512_add_ps(s[t][2], s[t][3])));
  }
}

}  // namespace

void gemv_rows_q8_0_avx512(const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                           float* y) {
  q8_0_rows_tokens<1>(W, x, n, r0, r1, y, 0);
}

namespace {
// Half-width rows: 16 weights per 256-bit load widened exactly to fp32 (vcvtph2ps for F16, a
// 16-bit shift for BF16), four FMA chains.
template <bool kBf16>
void gemv_rows_half_avx512(const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                           float* y) {
  auto widen = [](const uint8_t* p) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    if constexpr (kBf16) {
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    } else {
      return _mm512_cvtph_ps(h);
    }
  };
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = W + r * n * 2;
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    __m512 s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 64 <= n; k += 64) {
      s0 = _mm512_fmadd_ps(widen(row + k * 2), _mm512_loadu_ps(x + k), s0);
      s1 = _mm512_fmadd_ps(widen(row + k * 2 + 32), _mm512_loadu_ps(x + k + 16), s1);
      s2 = _mm512_fmadd_ps(widen(row + k * 2 + 64), _mm512_loadu_ps(x + k + 32), s2);
      s3 = _mm512_fmadd_ps(widen(row + k * 2 + 96), _mm512_loadu_ps(x + k + 48), s3);
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
    y[r] = half_row_dot<kBf16>(row, x, k, n, s);  // the last n % 64 weights
  }
}
}  // namespace

void gemv_rows_f16_avx512(const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                          float* y) {
  gemv_rows_half_avx512<false>(W, x, n, r0, r1, y);
}

void gemv_rows_bf16_avx512(const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                           float* y) {
  gemv_rows_half_avx512<true>(W, x, n, r0, r1, y);
}

// Four rows at a time: four accumulators over the head's dimensions, folded to 256 bits, then
// one transposing reduction (three horizontal adds and a 128-bit add) for all four.
void attention_scores_avx512(const float* q, const float* k, int64_t stride, int64_t count, int hd,
                             float scale, float* out) {
  if (hd % 16 != 0) return attention_scores_avx2(q, k, stride, count, hd, scale, out);
  auto fold = [](__m512 v) {
    return _mm256_add_ps(_mm512_castps512_ps256(v),
                         _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  };
  int64_t j = 0;
  for (; j + 4 <= count; j += 4) {
    const float* k0 = k + j * stride;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    __m512 a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    for (int d = 0; d < hd; d += 16) {
      const __m512 qv = _mm512_loadu_ps(q + d);
      a0 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k0 + d), a0);
      a1 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k0 + stride + d), a1);
      a2 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k0 + 2 * stride + d), a2);
      a3 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k0 + 3 * stride + d), a3);
    }
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(fold(a0), fold(a1)),
                                    _mm256_hadd_ps(fold(a2), fold(a3)));
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    _mm_storeu_ps(out + j, _mm_mul_ps(s, _mm_set1_ps(scale)));
  }
  for (; j < count; ++j) {
    __m512 a = _mm512_setzero_ps();
    for (int d = 0; d < hd; d += 16)
      a = _mm512_fmadd_ps(_mm512_loadu_ps(q + d), _mm512_loadu_ps(k + j * stride + d), a);
    out[j] = _mm512_reduce_add_ps(a) * scale;
  }
}

namespace {
// acc[i] += w[j] * v_j[16 i .. 16 i + 16) for rows j in order, i < vecs; a fixed kVecs (0: vecs at
// run time) lets the compiler keep the accumulators in registers.
template <int kVecs>
inline void add_weighted_rows_avx512(const float* w, const float* v, int64_t stride,
                                     int64_t count, int vecs, __m512* acc) {
  const int m = kVecs > 0 ? kVecs : vecs;
  for (int64_t j = 0; j < count; ++j) {
    const __m512 wj = _mm512_set1_ps(w[j]);
    const float* vj = v + j * stride;
    for (int i = 0; i < m; ++i) acc[i] = _mm512_fmadd_ps(wj, _mm512_loadu_ps(vj + 16 * i), acc[i]);
  }
}
}  // namespace

// The output in registers, 128 dimensions (eight vectors) at a time, every row added into them.
void attention_weighted_sum_add_avx512(const float* w, const float* v, int64_t stride,
                                       int64_t count, int hd, float* out) {
  if (hd % 16 != 0) return attention_weighted_sum_add_avx2(w, v, stride, count, hd, out);
  for (int d0 = 0; d0 < hd; d0 += 128) {
    const int vecs = std::min(128, hd - d0) / 16;
    __m512 acc[8];
    for (int i = 0; i < vecs; ++i) acc[i] = _mm512_loadu_ps(out + d0 + 16 * i);
    switch (vecs) {
      case 8: add_weighted_rows_avx512<8>(w, v + d0, stride, count, vecs, acc); break;
      case 4: add_weighted_rows_avx512<4>(w, v + d0, stride, count, vecs, acc); break;  // hd 64
      default: add_weighted_rows_avx512<0>(w, v + d0, stride, count, vecs, acc); break;
    }
    for (int i = 0; i < vecs; ++i) _mm512_storeu_ps(out + d0 + 16 * i, acc[i]);
  }
}

void gemv_rows_q8_0_tokens_avx512(const uint8_t* W, const float* x, int64_t n, int tokens,
                                  int64_t r0, int64_t r1, float* y, int64_t y_stride) {
  // Four tokens a pass: 16 accumulators and 4 widened weight vectors stay in registers.
  for (int t = 0; t < tokens;) {
    const float* xt = x + t * n;
    float* yt = y + t * y_stride;
    switch (std::min(tokens - t, 4)) {
      case 4: q8_0_rows_tokens<4>(W, xt, n, r0, r1, yt, y_stride); t += 4; break;
      case 3: q8_0_rows_tokens<3>(W, xt, n, r0, r1, yt, y_stride); t += 3; break;
      case 2: q8_0_rows_tokens<2>(W, xt, n, r0, r1, yt, y_stride); t += 2; break;
      default: q8_0_rows_tokens<1>(W, xt, n, r0, r1, yt, y_stride); t += 1; break;
    }
  }
}


namespace {

// Row i of H widened to double 8 at a time, two FMA chains per column (16 weights a step), the rest
// added in order after the vector sum.
template <int M>
void block_product(const float* H, int64_t n, const double* vt, double* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float* h = H + i * n;
    __m512d acc[M][2];
    for (int c = 0; c < M; ++c) acc[c][0] = acc[c][1] = _mm512_setzero_pd();
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
      const __m512d h0 = _mm512_cvtps_pd(_mm256_loadu_ps(h + j));
      const __m512d h1 = _mm512_cvtps_pd(_mm256_loadu_ps(h + j + 8));
      for (int c = 0; c < M; ++c) {
        acc[c][0] = _mm512_fmadd_pd(h0, _mm512_loadu_pd(vt + c * n + j), acc[c][0]);
        acc[c][1] = _mm512_fmadd_pd(h1, _mm512_loadu_pd(vt + c * n + j + 8), acc[c][1]);
      }
    }
    if (j + 8 <= n) {
      const __m512d h0 = _mm512_cvtps_pd(_mm256_loadu_ps(h + j));
      for (int c = 0; c < M; ++c)
        acc[c][0] = _mm512_fmadd_pd(h0, _mm512_loadu_pd(vt + c * n + j), acc[c][0]);
      j += 8;
    }
    for (int c = 0; c < M; ++c) {
      double s = _mm512_reduce_add_pd(_mm512_add_pd(acc[c][0], acc[c][1]));
      for (int64_t k = j; k < n; ++k) s += double(h[k]) * vt[c * n + k];
      out[i * M + c] = s;
    }
  }
}
}  // namespace

// The product is kept out of a fused multiply-add by an empty asm the compiler cannot see
// through, so the result is the scalar loop's (a rounded product, then the subtraction).
void sub_scaled_f32_avx512(float* y, const float* x, float a, int64_t n) {
  const __m512 av = _mm512_set1_ps(a);
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    __m512 t = _mm512_mul_ps(av, _mm512_loadu_ps(x + j));
    asm("" : "+v"(t));
    _mm512_storeu_ps(y + j, _mm512_sub_ps(_mm512_loadu_ps(y + j), t));
  }
  sub_scaled_f32_scalar(y + j, x + j, a, n - j);
}

void add_scaled_f32_f64_avx512(double* y, const float* x, double a, int64_t n) {
  const __m512d av = _mm512_set1_pd(a);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    __m512d t = _mm512_mul_pd(av, _mm512_cvtps_pd(_mm256_loadu_ps(x + j)));
    asm("" : "+v"(t));
    _mm512_storeu_pd(y + j, _mm512_add_pd(_mm512_loadu_pd(y + j), t));
  }
  add_scaled_f32_f64_scalar(y + j, x + j, a, n - j);
}

void block_product_f32_f64_avx512(const float* H, int64_t n, const double* V, int m, double* out) {
  const double* vt = columns_of(V, n, m);
  switch (m) {
    case 1: return block_product<1>(H, n, vt, out);
    case 2: return block_product<2>(H, n, vt, out);
    case 3: return block_product<3>(H, n, vt, out);
    case 4: return block_product<4>(H, n, vt, out);
    case 5: return block_product<5>(H, n, vt, out);
    default: return block_product<6>(H, n, vt, out);
  }
}

}  // namespace elutq::kern
