// The rows16 Q8_0 kernel on AVX-512 VNNI (q8_rows16.h): per 32-column block, 16 column pairs
// widened to int16 once for up to four tokens, one vpdpwssd per pair and token (16 rows at a
// time), then each token's block sum scaled into its fp32 row sums. Equal to the scalar
// reference bit for bit: integer sums are exact, the float steps are the same operations in the
// same order.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/q8_rows16.h"
#include "kernels/token_groups.h"

// GCC 12 reports the self-initialised placeholder inside avx512fintrin.h's _mm512_cvtph_ps /
// _mm512_cvtepi32_ps as maybe-uninitialized once they are inlined here; it is not.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace elutq::kern {

namespace {

template <int T>
void rows16_group(const uint8_t* G, int64_t nb, int64_t n, const int16_t* xq, const float* dx,
                  float* y, int64_t y_stride, __mmask16 keep) {
  __m512 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = G + b * kRows16BlockBytes;
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk)));
    // Two chains per token (even and odd pairs) so the vpdpwssd latency overlaps.
    __m512i s0[T], s1[T];
    for (int t = 0; t < T; ++t) s0[t] = s1[t] = _mm512_setzero_si512();
    for (int p = 0; p < 16; p += 2) {
      const __m512i w0 = _mm512_cvtepi8_epi16(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 32 + p * 32)));
      const __m512i w1 = _mm512_cvtepi8_epi16(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 32 + (p + 1) * 32)));
      for (int t = 0; t < T; ++t) {
        const int16_t* xb = xq + t * n + b * 32 + 2 * p;
        int32_t pair0, pair1;
        std::memcpy(&pair0, xb, 4);
        std::memcpy(&pair1, xb + 2, 4);
        s0[t] = _mm512_dpwssd_epi32(s0[t], w0, _mm512_set1_epi32(pair0));
        s1[t] = _mm512_dpwssd_epi32(s1[t], w1, _mm512_set1_epi32(pair1));
      }
    }
    for (int t = 0; t < T; ++t) {
      const __m512 scale = _mm512_mul_ps(d, _mm512_set1_ps(dx[t * nb + b]));
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0[t], s1[t])), scale, acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm512_mask_storeu_ps(y + t * y_stride, keep, acc[t]);
}

}  // namespace

void q8_rows16_i16_avx512(const uint8_t* W, int64_t rows, int64_t n, const int16_t* xq,
                          const float* dx, int tokens, int64_t g0, int64_t g1, float* y,
                          int64_t y_stride) {
  const int64_t nb = n / 32;
  for (int64_t g = g0; g < g1; ++g) {
    const uint8_t* G = W + g * nb * kRows16BlockBytes;
    const int64_t live = std::min<int64_t>(kRows16, rows - g * kRows16);
    const __mmask16 keep = __mmask16((1u << live) - 1u);
    float* yg = y + g * kRows16;
    // Four tokens a pass while the group's blocks stay in L1.
    for_token_groups<4>(0, tokens, [&](auto T, int t) {
      rows16_group<T>(G, nb, n, xq + t * n, dx + t * nb, yg + t * y_stride, y_stride, keep);
    });
  }
}

}  // namespace elutq::kern
