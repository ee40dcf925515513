// AVX-512 LUT kernels (F/BW/VBMI/VNNI): vpermb looks up a whole 64-byte unit (16 rows x 4 tables)
// in one 4-table register, vpdpbusd sums each row's 4 int8 entries into int32. A tile's weight
// block is loaded once per group and reused by up to 4 tokens held in registers.
// GCC 12 warns about the _mm512_undefined_* placeholders inside its own intrinsic headers.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "kernels/lut_isa.h"

namespace elutq {
namespace {

void build_tables_avx512(const float* xpad, const float* inv_scale, int64_t n_groups,
                         int64_t chunks_per_group, int8_t* tables) {
  // Lane p of sign_j is +1 if bit j of p is set, else -1.
  alignas(64) float sg[4][16];
  for (int j = 0; j < 4; ++j)
    for (int p = 0; p < 16; ++p) sg[j][p] = (p >> j & 1) ? 1.0f : -1.0f;
  const __m512 s0 = _mm512_load_ps(sg[0]), s1 = _mm512_load_ps(sg[1]);
  const __m512 s2 = _mm512_load_ps(sg[2]), s3 = _mm512_load_ps(sg[3]);
  for (int64_t g = 0; g < n_groups; ++g) {
    const __m512 inv = _mm512_set1_ps(inv_scale[g]);
    for (int64_t c = 0; c < chunks_per_group; ++c) {
      const float* x = xpad + (g * chunks_per_group + c) * 4;
      // Products with +-1 are exact, so these match the scalar additions bit for bit.
      __m512 v = _mm512_mul_ps(_mm512_set1_ps(x[0]), s0);
      v = _mm512_add_ps(v, _mm512_mul_ps(_mm512_set1_ps(x[1]), s1));
      v = _mm512_add_ps(v, _mm512_mul_ps(_mm512_set1_ps(x[2]), s2));
      v = _mm512_add_ps(v, _mm512_mul_ps(_mm512_set1_ps(x[3]), s3));
      const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(v, inv));  // round to nearest even
      _mm_storeu_si128(reinterpret_cast<__m128i*>(tables + (g * chunks_per_group + c) * 16),
                       _mm512_cvtsepi32_epi8(q));
    }
  }
}

constexpr int64_t kPrefetchBytes = 2048;

struct BlockParams {
  __m512 s[4][2];  // per plane, rows 0-15 / 16-31
  __m512 zp[2];    // z' = z + sum_b s_b / 2
};

BlockParams decode_params(const PackedHeader& h, const uint8_t* blk) {
  BlockParams bp;
  const __m256i* p = reinterpret_cast<const __m256i*>(blk);  // (P, 32) fp16 = (P, 2) x 16
  auto half = [&](int k, int part) { return _mm512_cvtph_ps(_mm256_loadu_si256(p + 2 * k + part)); };
  const __m512 one_half = _mm512_set1_ps(0.5f);
  for (int part = 0; part < 2; ++part) {
    __m512 z;
    if (h.kind == uint8_t(QuantKind::Uniform)) {
      const __m512 scale = half(0, part);
      z = half(1, part);
      for (int b = 0; b < h.bits; ++b)
        bp.s[b][part] = _mm512_mul_ps(scale, _mm512_set1_ps(float(1 << b)));
    } else {
      for (int b = 0; b < h.bits; ++b) bp.s[b][part] = half(b, part);
      z = half(h.bits, part);
    }
    for (int b = 0; b < h.bits; ++b) z = _mm512_fmadd_ps(one_half, bp.s[b][part], z);
    bp.zp[part] = z;
  }
  return bp;
}

// One (tile, group) block for TB tokens t0..t0+TB-1; adds into ybuf (TB, 32).
template <int TB>
void block_tokens(const uint8_t* bits, int B, int64_t quads, const BlockParams& bp,
                  const LutActivations& a, int64_t g, int64_t t0, float* ybuf) {
  const __m512i low = _mm512_set1_epi8(0x0F);
  const __m512i ones = _mm512_set1_epi8(1);
  // (i % 4) << 4: which of the unit's 4 tables byte i reads.
  const __m512i pos = _mm512_set1_epi32(0x30201000);
  const int8_t* tab[TB];
  for (int t = 0; t < TB; ++t) tab[t] = a.tables + ((t0 + t) * a.n_groups + g) * quads * 64;
  __m512 glo[TB], ghi[TB];
  for (int t = 0; t < TB; ++t) glo[t] = ghi[t] = _mm512_setzero_ps();
  for (int b = 0; b < B; ++b) {
    __m512i alo[TB], ahi[TB];
    for (int t = 0; t < TB; ++t) alo[t] = ahi[t] = _mm512_setzero_si512();
    const uint8_t* wb = bits + b * 64;
    for (int64_t q = 0; q < quads; ++q) {
      const __m512i wv = _mm512_loadu_si512(wb + q * B * 64);
      // (w & 0x0F) | pos and ((w >> 4) & 0x0F) | pos in one ternary-logic op each.
      const __m512i ilo = _mm512_ternarylogic_epi32(wv, low, pos, 0xEA);
      const __m512i ihi = _mm512_ternarylogic_epi32(_mm512_srli_epi16(wv, 4), low, pos, 0xEA);
      for (int t = 0; t < TB; ++t) {
        const __m512i tv = _mm512_loadu_si512(tab[t] + q * 64);
        alo[t] = _mm512_dpbusd_epi32(alo[t], ones, _mm512_permutexvar_epi8(ilo, tv));
        ahi[t] = _mm512_dpbusd_epi32(ahi[t], ones, _mm512_permutexvar_epi8(ihi, tv));
      }
    }
    for (int t = 0; t < TB; ++t) {
      glo[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(alo[t]), bp.s[b][0], glo[t]);
      ghi[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ahi[t]), bp.s[b][1], ghi[t]);
    }
  }
  for (int t = 0; t < TB; ++t) {
    const __m512 sh = _mm512_set1_ps(a.scale_half[(t0 + t) * a.n_groups + g]);
    const __m512 sx = _mm512_set1_ps(a.sum_x[(t0 + t) * a.n_groups + g]);
    float* y = ybuf + t * 32;
    __m512 ylo = _mm512_fmadd_ps(glo[t], sh, _mm512_loadu_ps(y));
    __m512 yhi = _mm512_fmadd_ps(ghi[t], sh, _mm512_loadu_ps(y + 16));
    _mm512_storeu_ps(y, _mm512_fmadd_ps(bp.zp[0], sx, ylo));
    _mm512_storeu_ps(y + 16, _mm512_fmadd_ps(bp.zp[1], sx, yhi));
  }
}

// Decode (one token): B and the format are template parameters so the block loop is fully
// unrolled, the two outputs of a tile stay in registers across groups, each quad's table is loaded
// once for all planes, and the 2B plane accumulators form independent vpdpbusd chains.
template <int B, bool kUniform>
void gemv_tiles(const PackedMatrix& w, const LutActivations& a, int64_t tile_begin,
                int64_t tile_end, float* Y) {
  const PackedHeader& h = w.header();
  const int64_t quads = a.quads_per_group;
  constexpr int P = kUniform ? 2 : B + 1;
  const __m512i low = _mm512_set1_epi8(0x0F);
  const __m512i ones = _mm512_set1_epi8(1);
  const __m512i pos = _mm512_set1_epi32(0x30201000);
  const __m512 one_half = _mm512_set1_ps(0.5f);
  const uint8_t* blob_end = w.data() + w.size_bytes();
  for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
    __m512 y[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int64_t g = 0; g < h.n_groups; ++g) {
      const uint8_t* blk = w.block(tile, g);
      const uint8_t* ahead = blk + kPrefetchBytes;
      for (int64_t off = 0; off < h.block_bytes && ahead + off < blob_end; off += 64)
        _mm_prefetch(reinterpret_cast<const char*>(ahead + off), _MM_HINT_T0);
      const uint8_t* bits = blk + P * 64;  // (quads, B, 64)
      const int8_t* tab = a.tables + g * quads * 64;
      __m512i alo[B], ahi[B];
      for (int b = 0; b < B; ++b) alo[b] = ahi[b] = _mm512_setzero_si512();
      for (int64_t q = 0; q < quads; ++q) {
        const __m512i tv = _mm512_loadu_si512(tab + q * 64);
        for (int b = 0; b < B; ++b) {
          const __m512i wv = _mm512_loadu_si512(bits + (q * B + b) * 64);
          const __m512i ilo = _mm512_ternarylogic_epi32(wv, low, pos, 0xEA);
          const __m512i ihi = _mm512_ternarylogic_epi32(_mm512_srli_epi16(wv, 4), low, pos, 0xEA);
          alo[b] = _mm512_dpbusd_epi32(alo[b], ones, _mm512_permutexvar_epi8(ilo, tv));
          ahi[b] = _mm512_dpbusd_epi32(ahi[b], ones, _mm512_permutexvar_epi8(ihi, tv));
        }
      }
      const __m256i* p = reinterpret_cast<const __m256i*>(blk);  // (P, 32) fp16 = (P, 2) x 16
      const __m512 sh = _mm512_set1_ps(a.scale_half[g]);
      const __m512 sx = _mm512_set1_ps(a.sum_x[g]);
      for (int part = 0; part < 2; ++part) {
        __m512 s[B];
        __m512 z;
        if constexpr (kUniform) {
          const __m512 scale = _mm512_cvtph_ps(_mm256_loadu_si256(p + part));
          z = _mm512_cvtph_ps(_mm256_loadu_si256(p + 2 + part));
          for (int b = 0; b < B; ++b) s[b] = _mm512_mul_ps(scale, _mm512_set1_ps(float(1 << b)));
        } else {
          for (int b = 0; b < B; ++b) s[b] = _mm512_cvtph_ps(_mm256_loadu_si256(p + 2 * b + part));
          z = _mm512_cvtph_ps(_mm256_loadu_si256(p + 2 * B + part));
        }
        __m512 gacc = _mm512_setzero_ps();
        for (int b = 0; b < B; ++b) {
          z = _mm512_fmadd_ps(one_half, s[b], z);
          gacc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(part ? ahi[b] : alo[b]), s[b], gacc);
        }
        y[part] = _mm512_fmadd_ps(z, sx, _mm512_fmadd_ps(gacc, sh, y[part]));
      }
    }
    const int64_t rows_here = std::min<int64_t>(32, h.rows - tile * 32);
    float* out = Y + tile * 32;
    if (rows_here == 32) {
      _mm512_storeu_ps(out, y[0]);
      _mm512_storeu_ps(out + 16, y[1]);
    } else {
      alignas(64) float tmp[32];
      _mm512_store_ps(tmp, y[0]);
      _mm512_store_ps(tmp + 16, y[1]);
      std::copy(tmp, tmp + rows_here, out);
    }
  }
}

using TilesFn = void (*)(const PackedMatrix&, const LutActivations&, int64_t, int64_t, float*);

TilesFn gemv_for(const PackedHeader& h) {
  const bool uni = h.kind == uint8_t(QuantKind::Uniform);
  switch (h.bits) {
    case 1: return uni ? gemv_tiles<1, true> : gemv_tiles<1, false>;
    case 2: return uni ? gemv_tiles<2, true> : gemv_tiles<2, false>;
    case 3: return uni ? gemv_tiles<3, true> : gemv_tiles<3, false>;
    default: return uni ? gemv_tiles<4, true> : gemv_tiles<4, false>;
  }
}

void matmul_tiles_avx512(const PackedMatrix& w, const LutActivations& a, int64_t tile_begin,
                         int64_t tile_end, float* Y) {
  const PackedHeader& h = w.header();
  if (a.n == 1) return gemv_for(h)(w, a, tile_begin, tile_end, Y);
  const int B = h.bits;
  const int64_t quads = a.quads_per_group;
  thread_local std::vector<float> ybuf;  // (n, 32)
  ybuf.resize(size_t(a.n * 32));
  const uint8_t* blob_end = w.data() + w.size_bytes();
  for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
    std::fill(ybuf.begin(), ybuf.end(), 0.0f);
    for (int64_t g = 0; g < h.n_groups; ++g) {
      const uint8_t* blk = w.block(tile, g);
      // Blocks are contiguous across groups and tiles: ask for the bytes kPrefetchBytes ahead so
      // DRAM latency hides behind this block's lookups (the hardware prefetcher alone falls short).
      const uint8_t* ahead = blk + kPrefetchBytes;
      for (int64_t off = 0; kPrefetchBytes > 0 && off < h.block_bytes && ahead + off < blob_end; off += 64)
        _mm_prefetch(reinterpret_cast<const char*>(ahead + off), _MM_HINT_T0);
      const BlockParams bp = decode_params(h, blk);
      const uint8_t* bits = blk + h.params_per_group * 64;
      int64_t t = 0;
      for (; t + 4 <= a.n; t += 4) block_tokens<4>(bits, B, quads, bp, a, g, t, ybuf.data() + t * 32);
      switch (a.n - t) {
        case 3: block_tokens<3>(bits, B, quads, bp, a, g, t, ybuf.data() + t * 32); break;
        case 2: block_tokens<2>(bits, B, quads, bp, a, g, t, ybuf.data() + t * 32); break;
        case 1: block_tokens<1>(bits, B, quads, bp, a, g, t, ybuf.data() + t * 32); break;
        default: break;
      }
    }
    const int64_t rows_here = std::min<int64_t>(32, h.rows - tile * 32);
    for (int64_t t = 0; t < a.n; ++t)
      std::copy(ybuf.begin() + t * 32, ybuf.begin() + t * 32 + rows_here, Y + t * h.rows + tile * 32);
  }
}

}  // namespace

const LutIsaKernels& lut_kernels_avx512() {
  static const LutIsaKernels k = {build_tables_avx512, matmul_tiles_avx512};
  return k;
}

}  // namespace elutq
