// The bandwidth probe's read loop with 32-byte loads (see memory_bandwidth.cpp).
#include <immintrin.h>

#include "kernels/memory_bandwidth_isa.h"

namespace elutq {

uint64_t stream_read_avx2(const uint64_t* words, int64_t n) {
  __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;  // four chains keep loads in flight
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a = _mm256_add_epi64(a, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(words + i)));
    b = _mm256_add_epi64(b, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(words + i + 4)));
    c = _mm256_add_epi64(c, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(words + i + 8)));
    d = _mm256_add_epi64(d, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(words + i + 12)));
  }
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes),
                     _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d)));
  uint64_t sum = lanes[0] + lanes[1] + lanes[2] + lanes[3];
  for (; i < n; ++i) sum += words[i];
  return sum;
}

}  // namespace elutq
