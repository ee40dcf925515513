// AVX2/FMA dot product and GEMV rows: fp32, and the stored types Q8_0, F16, BF16 (compiled with
// -mavx2 -mfma -mf16c; chosen at run time).
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/gemv_kernels.h"

namespace elutq::kern {

namespace {
inline float hsum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}
}  // namespace

float dot_f32_avx2(const float* a, const float* b, int64_t n) {
  // Four independent accumulators hide the FMA latency.
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  float s = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// Four rows at a time: four accumulators over the head's dimensions, then one transposing
// reduction (three horizontal adds and a 128-bit add) for all four instead of one each.
void attention_scores_avx2(const float* q, const float* k, int64_t stride, int64_t count, int hd,
                           float scale, float* out) {
  if (hd % 8 != 0) return attention_scores_scalar(q, k, stride, count, hd, scale, out);
  int64_t j = 0;
  for (; j + 4 <= count; j += 4) {
    const float* k0 = k + j * stride;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    for (int d = 0; d < hd; d += 8) {
      const __m256 qv = _mm256_loadu_ps(q + d);
      a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + d), a0);
      a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + stride + d), a1);
      a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + 2 * stride + d), a2);
      a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + 3 * stride + d), a3);
    }
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    _mm_storeu_ps(out + j, _mm_mul_ps(s, _mm_set1_ps(scale)));
  }
  for (; j < count; ++j) {
    __m256 a = _mm256_setzero_ps();
    for (int d = 0; d < hd; d += 8)
      a = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), _mm256_loadu_ps(k + j * stride + d), a);
    out[j] = hsum(a) * scale;
  }
}

namespace {
// acc[i] += w[j] * v_j[8 i .. 8 i + 8) for rows j in order, i < vecs; a fixed kVecs (0: vecs at
// run time) lets the compiler keep the accumulators in registers.
template <int kVecs>
inline void add_weighted_rows_avx2(const float* w, const float* v, int64_t stride, int64_t count,
                                   int vecs, __m256* acc) {
  const int m = kVecs > 0 ? kVecs : vecs;
  for (int64_t j = 0; j < count; ++j) {
    const __m256 wj = _mm256_set1_ps(w[j]);
    const float* vj = v + j * stride;
    for (int i = 0; i < m; ++i) acc[i] = _mm256_fmadd_ps(wj, _mm256_loadu_ps(vj + 8 * i), acc[i]);
  }
}
}  // namespace

// The output in registers, 64 dimensions (eight vectors) at a time, every row added into them
// (starting from out's values, so a sum over rows can be taken in pieces).
void attention_weighted_sum_add_avx2(const float* w, const float* v, int64_t stride,
                                     int64_t count, int hd, float* out) {
  if (hd % 8 != 0) return attention_weighted_sum_add_scalar(w, v, stride, count, hd, out);
  for (int d0 = 0; d0 < hd; d0 += 64) {
    const int vecs = std::min(64, hd - d0) / 8;
    __m256 acc[8];
    for (int i = 0; i < vecs; ++i) acc[i] = _mm256_loadu_ps(out + d0 + 8 * i);
    if (vecs == 8)
      add_weighted_rows_avx2<8>(w, v + d0, stride, count, vecs, acc);
    else
      add_weighted_rows_avx2<0>(w, v + d0, stride, count, vecs, acc);
    for (int i = 0; i < vecs; ++i) _mm256_storeu_ps(out + d0 + 8 * i, acc[i]);
  }
}

void gemv_rows_f32_avx2(const float* W, const float* x, int64_t n, int64_t r0, int64_t r1, float* y) {
  for (int64_t r = r0; r < r1; ++r) y[r] = dot_f32_avx2(W + r * n, x, n);
}

void gemv2_rows_f32_avx2(const float* W, const float* x0, const float* x1, int64_t n, int64_t r0,
                         int64_t r1, float* y0, float* y1) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* a = W + r * n;
    // dot_f32_avx2's four chains for each token, in its order, sharing the row's loads: eight
    // chains in flight instead of four, half the loads per product.
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    __m256 t0 = _mm256_setzero_ps(), t1 = _mm256_setzero_ps();
    __m256 t2 = _mm256_setzero_ps(), t3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
      const __m256 w0 = _mm256_loadu_ps(a + i), w1 = _mm256_loadu_ps(a + i + 8);
      const __m256 w2 = _mm256_loadu_ps(a + i + 16), w3 = _mm256_loadu_ps(a + i + 24);
      s0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x0 + i), s0);
      t0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x1 + i), t0);
      s1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x0 + i + 8), s1);
      t1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x1 + i + 8), t1);
      s2 = _mm256_fmadd_ps(w2, _mm256_loadu_ps(x0 + i + 16), s2);
      t2 = _mm256_fmadd_ps(w2, _mm256_loadu_ps(x1 + i + 16), t2);
      s3 = _mm256_fmadd_ps(w3, _mm256_loadu_ps(x0 + i + 24), s3);
      t3 = _mm256_fmadd_ps(w3, _mm256_loadu_ps(x1 + i + 24), t3);
    }
    for (; i + 8 <= n; i += 8) {
      const __m256 w = _mm256_loadu_ps(a + i);
      s0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x0 + i), s0);
      t0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x1 + i), t0);
    }
    float u = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    float v = hsum(_mm256_add_ps(_mm256_add_ps(t0, t1), _mm256_add_ps(t2, t3)));
    for (; i < n; ++i) {
      u += a[i] * x0[i];
      v += a[i] * x1[i];
    }
    y0[r] = u;
    y1[r] = v;
  }
}

namespace {
// Q8_0 rows for T tokens (T = 1: the GEMV): each block widened once, then each token's four FMA
// chains, one per quarter of a block, so each token's sums are the same whatever T.
template <int T>
void q8_0_rows_tokens(const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                      float* y, int64_t y_stride) {
  const int64_t nb = n / 32;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = W + r * nb * 34;
    __m256 s[T][4];
    for (auto& st : s)
      for (__m256& v : st) v = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = row + b * 34;
      uint16_t dh;
      std::memcpy(&dh, blk, 2);
      const __m256 d = _mm256_set1_ps(_cvtsh_ss(dh));
      const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
      const __m128i q2 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 18));
      // w = d * q in fp32 (exact: an 11-bit by 8-bit product), then w * x.
      const __m256 w[4] = {
          _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q))),
          _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q, 8)))),
          _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q2))),
          _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q2, 8))))};
      for (int t = 0; t < T; ++t) {
        const float* xb = x + t * n + b * 32;
        for (int k = 0; k < 4; ++k) s[t][k] = _mm256_fmadd_ps(w[k], _mm256_loadu_ps(xb + 8 * k), s[t][k]);
      }
    }
    for (int t = 0; t < T; ++t)
      y[t * y_stride + r] =
          hsum(_mm256_add_ps(_mm256_add_ps(s[t][0], s[t][1]), _mm256_add_ps(s[t][2], s[t][3])));
  }
}
}  // namespace

void gemv_rows_q8_0_avx2(const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                         float* y) {
  q8_0_rows_tokens<1>(W, x, n, r0, r1, y, 0);
}

void gemv_rows_q8_0_tokens_avx2(const uint8_t* W, const float* x, int64_t n, int tokens,
                                int64_t r0, int64_t r1, float* y, int64_t y_stride) {
  // Two tokens a pass: 8 accumulators, 4 widened weight vectors and the scale in 16 registers.
  int t = 0;
  for (; t + 2 <= tokens; t += 2) q8_0_rows_tokens<2>(W, x + t * n, n, r0, r1, y + t * y_stride, y_stride);
  if (t < tokens) q8_0_rows_tokens<1>(W, x + t * n, n, r0, r1, y + t * y_stride, y_stride);
}

// Half-width rows: 8 weights per 128-bit load widened exactly to fp32 (vcvtph2ps for F16, a
// 16-bit shift for BF16), four FMA chains.
template <bool kBf16>
void gemv_rows_half_avx2(const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                         float* y) {
  auto widen = [](const uint8_t* p) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    if constexpr (kBf16) {
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    } else {
      return _mm256_cvtph_ps(h);
    }
  };
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = W + r * n * 2;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 32 <= n; k += 32) {
      s0 = _mm256_fmadd_ps(widen(row + k * 2), _mm256_loadu_ps(x + k), s0);
      s1 = _mm256_fmadd_ps(widen(row + k * 2 + 16), _mm256_loadu_ps(x + k + 8), s1);
      s2 = _mm256_fmadd_ps(widen(row + k * 2 + 32), _mm256_loadu_ps(x + k + 16), s2);
      s3 = _mm256_fmadd_ps(widen(row + k * 2 + 48), _mm256_loadu_ps(x + k + 24), s3);
    }
    float s = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    y[r] = half_row_dot<kBf16>(row, x, k, n, s);  // the last n % 32 weights
  }
}

void gemv_rows_f16_avx2(const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                        float* y) {
  gemv_rows_half_avx2<false>(W, x, n, r0, r1, y);
}

void gemv_rows_bf16_avx2(const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                         float* y) {
  gemv_rows_half_avx2<true>(W, x, n, r0, r1, y);
}


namespace {

// Row i of H widened to double 4 at a time, two FMA chains per column (8 weights a step), the rest
// added in order after the vector sum.
template <int M>
void block_product(const float* H, int64_t n, const double* vt, double* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float* h = H + i * n;
    __m256d acc[M][2];
    for (int c = 0; c < M; ++c) acc[c][0] = acc[c][1] = _mm256_setzero_pd();
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
      const __m256d h0 = _mm256_cvtps_pd(_mm_loadu_ps(h + j));
      const __m256d h1 = _mm256_cvtps_pd(_mm_loadu_ps(h + j + 4));
      for (int c = 0; c < M; ++c) {
        acc[c][0] = _mm256_fmadd_pd(h0, _mm256_loadu_pd(vt + c * n + j), acc[c][0]);
        acc[c][1] = _mm256_fmadd_pd(h1, _mm256_loadu_pd(vt + c * n + j + 4), acc[c][1]);
      }
    }
    for (int c = 0; c < M; ++c) {
      alignas(32) double lanes[4];
      _mm256_store_pd(lanes, _mm256_add_pd(acc[c][0], acc[c][1]));
      double s = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
      for (int64_t k = j; k < n; ++k) s += double(h[k]) * vt[c * n + k];
      out[i * M + c] = s;
    }
  }
}
}  // namespace

// The product is kept out of a fused multiply-add by an empty asm the compiler cannot see
// through, so the result is the scalar loop's (a rounded product, then the subtraction).
void sub_scaled_f32_avx2(float* y, const float* x, float a, int64_t n) {
  const __m256 av = _mm256_set1_ps(a);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    __m256 t = _mm256_mul_ps(av, _mm256_loadu_ps(x + j));
    asm("" : "+v"(t));
    _mm256_storeu_ps(y + j, _mm256_sub_ps(_mm256_loadu_ps(y + j), t));
  }
  sub_scaled_f32_scalar(y + j, x + j, a, n - j);
}

void add_scaled_f32_f64_avx2(double* y, const float* x, double a, int64_t n) {
  const __m256d av = _mm256_set1_pd(a);
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) {
    __m256d t = _mm256_mul_pd(av, _mm256_cvtps_pd(_mm_loadu_ps(x + j)));
    asm("" : "+v"(t));
    _mm256_storeu_pd(y + j, _mm256_add_pd(_mm256_loadu_pd(y + j), t));
  }
  add_scaled_f32_f64_scalar(y + j, x + j, a, n - j);
}

void block_product_f32_f64_avx2(const float* H, int64_t n, const double* V, int m, double* out) {
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
