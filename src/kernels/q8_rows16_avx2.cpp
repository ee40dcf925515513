// The rows16 Q8_0 kernel on AVX2 (q8_rows16.h): a 16-row group handled as two halves of 8 rows,
// each column pair of a half widened to int16 once for up to four tokens and met by one vpmaddwd
// per token (8 rows' two products in 8 int32 lanes), then each token's block sum scaled into its
// fp32 row sums. Against the fp32 Q8_0 kernel this does no int8 -> fp32 widening and one integer
// multiply-add per two weights and token. Equal to the scalar reference bit for bit: integer sums
// are exact, the float steps are the same operations in the same order.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/q8_rows16.h"
#include "kernels/token_groups.h"

namespace elutq::kern {

namespace {

// Rows half*8 .. half*8+7 of one group against T tokens; `live` of those rows are stored.
template <int T>
void rows8_half(const uint8_t* G, int64_t nb, int64_t n, const int16_t* xq, const float* dx,
                int half, int live, float* y, int64_t y_stride) {
  // One token has two chains (even and odd pairs) so the multiply-add latency overlaps; more
  // tokens overlap each other.
  constexpr int kChains = T == 1 ? 2 : 1;
  __m256 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = G + b * kRows16BlockBytes;
    const __m256 d =
        _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 16 * half)));
    __m256i s[T][kChains];
    for (int t = 0; t < T; ++t)
      for (int c = 0; c < kChains; ++c) s[t][c] = _mm256_setzero_si256();
    const uint8_t* codes = blk + 32 + 16 * half;
    for (int p = 0; p < 16; ++p) {
      const __m256i w =
          _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + p * 32)));
      for (int t = 0; t < T; ++t) {
        int32_t pair;
        std::memcpy(&pair, xq + t * n + b * 32 + 2 * p, 4);
        __m256i& sc = s[t][p % kChains];
        sc = _mm256_add_epi32(sc, _mm256_madd_epi16(w, _mm256_set1_epi32(pair)));
      }
    }
    for (int t = 0; t < T; ++t) {
      __m256i sum = s[t][0];
      if constexpr (kChains == 2) sum = _mm256_add_epi32(sum, s[t][1]);
      const __m256 scale = _mm256_mul_ps(d, _mm256_set1_ps(dx[t * nb + b]));
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), scale, acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) {
    float* yt = y + t * y_stride + 8 * half;
    if (live >= 8) {
      _mm256_storeu_ps(yt, acc[t]);
    } else {
      alignas(32) float out[8];
      _mm256_store_ps(out, acc[t]);
      std::copy(out, out + live, yt);
    }
  }
}

}  // namespace

void q8_rows16_i16_avx2(const uint8_t* W, int64_t rows, int64_t n, const int16_t* xq,
                        const float* dx, int tokens, int64_t g0, int64_t g1, float* y,
                        int64_t y_stride) {
  const int64_t nb = n / 32;
  for (int64_t g = g0; g < g1; ++g) {
    const uint8_t* G = W + g * nb * kRows16BlockBytes;
    const int64_t live = std::min<int64_t>(kRows16, rows - g * kRows16);
    float* yg = y + g * kRows16;
    for (int half = 0; half < 2; ++half) {
      const int live_half = int(std::clamp<int64_t>(live - 8 * half, 0, 8));
      if (live_half == 0) break;
      // Four tokens a pass while the group's blocks stay in L1.
      for_token_groups<4>(0, tokens, [&](auto T, int t) {
        rows8_half<T>(G, nb, n, xq + t * n, dx + t * nb, half, live_half, yg + t * y_stride,
                      y_stride);
      });
    }
  }
}

}  // namespace elutq::kern
