// AVX2 LUT kernels: vpshufb holds one 16-entry table per 128-bit lane, so each 32-byte half-unit
// (8 rows x 4 tables, low and high nibbles) is looked up in the 4 tables and the right entry per
// byte chosen by two blends; vpmaddubsw + vpmaddwd then sum each row's 4 entries into int32.
// int16 tables do the same in their low-byte and high-byte halves.
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "kernels/lut_isa.h"

namespace elutq {
namespace {

// The 16 signed sums (+-x0 +-x1 +-x2 +-x3) * inv of one chunk of 4 activations, rounded to int32:
// entries 0..7 in lo, 8..15 in hi. Shared by the int8 and int16 builders so both round the same
// floats (and match the scalar order: ((+-x0 +- x1) +- x2) +- x3).
struct ChunkSums {
  __m256 s0, s1, s2;  // lane p of sign_j: +1 if bit j of p is set, else -1 (p = 0..7)
  ChunkSums() {
    alignas(32) float sg[3][8];
    for (int j = 0; j < 3; ++j)
      for (int p = 0; p < 8; ++p) sg[j][p] = (p >> j & 1) ? 1.0f : -1.0f;
    s0 = _mm256_load_ps(sg[0]);
    s1 = _mm256_load_ps(sg[1]);
    s2 = _mm256_load_ps(sg[2]);
  }
  void operator()(const float* x, __m256 inv, __m256i* lo, __m256i* hi) const {
    __m256 v = _mm256_mul_ps(_mm256_set1_ps(x[0]), s0);
    v = _mm256_add_ps(v, _mm256_mul_ps(_mm256_set1_ps(x[1]), s1));
    v = _mm256_add_ps(v, _mm256_mul_ps(_mm256_set1_ps(x[2]), s2));
    const __m256 x3 = _mm256_set1_ps(x[3]);
    *lo = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_sub_ps(v, x3), inv));  // p 0..7
    *hi = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_add_ps(v, x3), inv));  // p 8..15
  }
};

void build_tables_avx2(const float* xpad, const float* inv_scale, int64_t n_groups,
                       int64_t chunks_per_group, int8_t* tables) {
  const ChunkSums sums;
  const __m256i pack_order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t g = 0; g < n_groups; ++g) {
    const __m256 inv = _mm256_set1_ps(inv_scale[g]);
    for (int64_t c = 0; c < chunks_per_group; ++c) {
      const float* x = xpad + (g * chunks_per_group + c) * 4;
      __m256i lo, hi;
      sums(x, inv, &lo, &hi);
      // Saturating packs 32 -> 16 -> 8 bits work per 128-bit lane: the dwords come out as
      // lo0-3, hi0-3, lo0-3, hi0-3 | lo4-7, hi4-7, ...; the permute puts lo0-3 lo4-7 hi0-3 hi4-7
      // (entries 0..15) first.
      const __m256i w16 = _mm256_packs_epi32(lo, hi);
      const __m256i ordered = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(w16, w16), pack_order);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(tables + (g * chunks_per_group + c) * 16),
                       _mm256_castsi256_si128(ordered));
    }
  }
}

// int16 tables: the int32 entries (|v| <= 32767) pack to int16 exactly; their low bytes
// (v & 255, unsigned) and high bytes (v >> 8, arithmetic) pack to bytes exactly, in the same
// lane order as the int8 tables.
void build_tables16_avx2(const float* xpad, const float* inv_scale, int64_t n_groups,
                         int64_t chunks_per_group, int8_t* tables) {
  const ChunkSums sums;
  const __m256i pack_order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  const __m256i byte_mask = _mm256_set1_epi16(0xFF);
  const int64_t quads = chunks_per_group / 4;
  for (int64_t g = 0; g < n_groups; ++g) {
    const __m256 inv = _mm256_set1_ps(inv_scale[g]);
    for (int64_t c = 0; c < chunks_per_group; ++c) {
      const float* x = xpad + (g * chunks_per_group + c) * 4;
      __m256i lo, hi;
      sums(x, inv, &lo, &hi);
      const __m256i w16 = _mm256_packs_epi32(lo, hi);
      const __m256i low_bytes = _mm256_and_si256(w16, byte_mask);
      const __m256i high_bytes = _mm256_srai_epi16(w16, 8);
      const __m256i l8 = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(low_bytes, low_bytes),
                                                     pack_order);
      const __m256i h8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(high_bytes, high_bytes),
                                                     pack_order);
      int8_t* out = tables + (g * quads + c / 4) * 128 + (c % 4) * 16;
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm256_castsi256_si128(l8));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 64), _mm256_castsi256_si128(h8));
    }
  }
}

const __m256i* as_m256i(const void* p) { return reinterpret_cast<const __m256i*>(p); }

// int16 tables (kWide): every lookup is also done in the high-byte tables; vpmaddubsw takes the
// unsigned low bytes as its unsigned operand, and the high bytes' pair sums are multiplied by 256
// in the vpmaddwd that widens them, so one int32 sum per row gets 256 * high + low.
template <bool kWide>
void matmul_tiles_avx2(const PackedMatrix& w, const LutActivations& a, int64_t tile_begin,
                       int64_t tile_end, float* Y) {
  const PackedHeader& h = w.header();
  const int B = h.bits;
  const int64_t quads = a.quads_per_group;
  thread_local std::vector<float> ybuf;  // (n, 32)
  ybuf.resize(size_t(a.n * 32));
  const __m256i low = _mm256_set1_epi8(0x0F);
  const __m256i ones8 = _mm256_set1_epi8(1);
  const __m256i ones16 = _mm256_set1_epi16(1);
  const __m256i x256 = _mm256_set1_epi16(256);
  const __m256i m_odd = _mm256_set1_epi32(int32_t(0x80008000u));  // bytes i%4 in {1,3}
  const __m256i m_hi = _mm256_set1_epi32(int32_t(0x80800000u));   // bytes i%4 in {2,3}
  const __m256 one_half = _mm256_set1_ps(0.5f);
  for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
    std::fill(ybuf.begin(), ybuf.end(), 0.0f);
    for (int64_t g = 0; g < h.n_groups; ++g) {
      const uint8_t* blk = w.block(tile, g);
      const __m128i* p = reinterpret_cast<const __m128i*>(blk);  // (P, 4) x 8 fp16
      __m256 s[4][4], zp[4];  // per plane, rows 8k..8k+7
      for (int k = 0; k < 4; ++k) {
        __m256 z;
        if (h.kind == uint8_t(QuantKind::Uniform)) {
          const __m256 scale = _mm256_cvtph_ps(_mm_loadu_si128(p + k));
          z = _mm256_cvtph_ps(_mm_loadu_si128(p + 4 + k));
          for (int b = 0; b < B; ++b) s[b][k] = _mm256_mul_ps(scale, _mm256_set1_ps(float(1 << b)));
        } else {
          for (int b = 0; b < B; ++b) s[b][k] = _mm256_cvtph_ps(_mm_loadu_si128(p + 4 * b + k));
          z = _mm256_cvtph_ps(_mm_loadu_si128(p + 4 * B + k));
        }
        for (int b = 0; b < B; ++b) z = _mm256_fmadd_ps(one_half, s[b][k], z);
        zp[k] = z;
      }
      const uint8_t* bits = blk + h.params_per_group * 64;
      for (int64_t t = 0; t < a.n; ++t) {
        const int8_t* tab = a.tables + (t * a.n_groups + g) * quads * a.quad_bytes;
        __m256 gacc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                          _mm256_setzero_ps()};
        for (int b = 0; b < B; ++b) {
          // acc[0]: rows 0-7 (half 0, low nibbles), [1]: 8-15, [2]: 16-23, [3]: 24-31.
          __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(),
                            _mm256_setzero_si256(), _mm256_setzero_si256()};
          for (int64_t q = 0; q < quads; ++q) {
            const __m128i* tq = reinterpret_cast<const __m128i*>(tab + q * a.quad_bytes);
            // The quad's 4 tables (int16: of low bytes), each broadcast to both lanes; int16 also
            // the 4 tables of high bytes.
            __m256i tl[4];
            [[maybe_unused]] __m256i th[4];
            for (int j = 0; j < 4; ++j) tl[j] = _mm256_broadcastsi128_si256(_mm_loadu_si128(tq + j));
            if constexpr (kWide)
              for (int j = 0; j < 4; ++j)
                th[j] = _mm256_broadcastsi128_si256(_mm_loadu_si128(tq + 4 + j));
            // The entry each byte of idx selects: table i%4 (i = byte position), entry idx & 15.
            auto select = [&](const __m256i* t4, __m256i idx) {
              const __m256i r01 = _mm256_blendv_epi8(_mm256_shuffle_epi8(t4[0], idx),
                                                     _mm256_shuffle_epi8(t4[1], idx), m_odd);
              const __m256i r23 = _mm256_blendv_epi8(_mm256_shuffle_epi8(t4[2], idx),
                                                     _mm256_shuffle_epi8(t4[3], idx), m_odd);
              return _mm256_blendv_epi8(r01, r23, m_hi);
            };
            auto lookup_sum = [&](__m256i idx) {
              if constexpr (kWide) {
                const __m256i lo16 = _mm256_maddubs_epi16(select(tl, idx), ones8);  // <= 510
                const __m256i hi16 = _mm256_maddubs_epi16(ones8, select(th, idx));
                return _mm256_add_epi32(_mm256_madd_epi16(lo16, ones16),
                                        _mm256_madd_epi16(hi16, x256));
              } else {
                return _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, select(tl, idx)), ones16);
              }
            };
            const uint8_t* unit = bits + (q * B + b) * 64;
            for (int half = 0; half < 2; ++half) {
              const __m256i wv = _mm256_loadu_si256(as_m256i(unit + 32 * half));
              acc[half] = _mm256_add_epi32(acc[half], lookup_sum(_mm256_and_si256(wv, low)));
              acc[2 + half] = _mm256_add_epi32(
                  acc[2 + half], lookup_sum(_mm256_and_si256(_mm256_srli_epi16(wv, 4), low)));
            }
          }
          for (int k = 0; k < 4; ++k)
            gacc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[k]), s[b][k], gacc[k]);
        }
        const __m256 sh = _mm256_set1_ps(a.scale_half[t * a.n_groups + g]);
        const __m256 sx = _mm256_set1_ps(a.sum_x[t * a.n_groups + g]);
        float* y = ybuf.data() + t * 32;
        for (int k = 0; k < 4; ++k) {
          const __m256 yk = _mm256_fmadd_ps(gacc[k], sh, _mm256_loadu_ps(y + 8 * k));
          _mm256_storeu_ps(y + 8 * k, _mm256_fmadd_ps(zp[k], sx, yk));
        }
      }
    }
    const int64_t rows_here = std::min<int64_t>(32, h.rows - tile * 32);
    for (int64_t t = 0; t < a.n; ++t)
      std::copy(ybuf.begin() + t * 32, ybuf.begin() + t * 32 + rows_here, Y + t * h.rows + tile * 32);
  }
}

void matmul_tiles_avx2_any(const PackedMatrix& w, const LutActivations& a, int64_t tile_begin,
                           int64_t tile_end, float* Y) {
  if (a.wide) return matmul_tiles_avx2<true>(w, a, tile_begin, tile_end, Y);
  matmul_tiles_avx2<false>(w, a, tile_begin, tile_end, Y);
}

}  // namespace

const LutIsaKernels& lut_kernels_avx2() {
  static const LutIsaKernels k = {build_tables_avx2, build_tables16_avx2,
                                  matmul_tiles_avx2_any};
  return k;
}

}  // namespace elutq
