// The bandwidth probe's read loop with 64-byte loads (see memory_bandwidth.cpp): a roofline must
// be an upper bound, so the probe reads with loads at least as wide as the kernels' own.
#include <immintrin.h>

#include "kernels/memory_bandwidth_isa.h"

namespace elutq {

uint64_t stream_read_avx512(const uint64_t* words, int64_t n) {
  __m512i a = _mm512_setzero_si512(), b = a, c = a, d = a;  // four chains keep loads in flight
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a = _mm512_add_epi64(a, _mm512_loadu_si512(words + i));
    b = _mm512_add_epi64(b, _mm512_loadu_si512(words + i + 8));
    c = _mm512_add_epi64(c, _mm512_loadu_si512(words + i + 16));
    d = _mm512_add_epi64(d, _mm512_loadu_si512(words + i + 24));
  }
  alignas(64) uint64_t lanes[8];
  _mm512_store_si512(lanes, _mm512_add_epi64(_mm512_add_epi64(a, b), _mm512_add_epi64(c, d)));
  uint64_t sum = 0;
  for (uint64_t v : lanes) sum += v;
  for (; i < n; ++i) sum += words[i];
  return sum;
}

}  // namespace elutq
