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
