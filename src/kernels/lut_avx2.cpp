// AVX2 LUT kernels: vpshufb holds one 16-entry table per 128-bit lane, so each 64-byte unit is
// regrouped in registers until every lane holds one table's bytes, then looked up with one vpshufb
// per 32 entries and summed per row in int16 (vpmaddubsw) and int32 (details above the matmul).
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "core/aligned_vector.h"
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

// The matmul. A 64-byte unit holds, in byte i, rows i/4 (low nibble) and 16 + i/4 (high nibble)
// for table i%4, the order vpermb wants. vpshufb instead looks up one table per 128-bit lane, so
// each unit is first regrouped in registers (a 4x4 byte transpose per lane, a dword unpack and a
// qword permute: 6 ops) into two vectors whose lanes each hold one table's 16 bytes:
//   X = [table 0 | table 1], Y = [table 2 | table 3], each lane in row order 0-3, 8-11, 4-7, 12-15.
// One vpshufb per vector and nibble then looks up 32 entries with no blending. X's and Y's entries
// of the same rows are interleaved and pair-summed by vpmaddubsw into int16 (tables 0 + 2 in the
// low lane, 1 + 3 in the high lane), accumulated in int16 for up to kFlushQuads quads, then
// widened, the lanes added, into int32 per row. So the kernel sees the 32 rows of a tile in "lane
// order", four runs of 8:
//   run 0: rows 0-3, 8-11   run 1: rows 4-7, 12-15   run 2: rows 16-19, 24-27   run 3: 20-23, 28-31
// The parameters are permuted to that order once per block and the outputs back at the end; per
// row the float steps are the scalar reference's, so results stay bit-identical.
// int16 tables: the same lookups in the low-byte tables (unsigned, pair sums <= 510) and the
// high-byte tables (signed), accumulated apart and combined per row as 256 * high + low in int32.

// Rows 0..31 (4 vectors of 8, row order) -> lane order, and back (the permutation is its own
// inverse on each pair of vectors).
inline void swap_middle_halves(__m256& a, __m256& b) {
  const __m256 lo = _mm256_permute2f128_ps(a, b, 0x20), hi = _mm256_permute2f128_ps(a, b, 0x31);
  a = lo;
  b = hi;
}

// Quads between int16 -> int32 flushes: every int16 accumulator gets one pair sum per quad,
// at most 254 in size with int8 tables (128 * 254 < 32768) and 510 for int16 low bytes (64 * 510).
template <bool kWide>
constexpr int64_t kFlushQuads = kWide ? 64 : 128;

struct UnitIndices {
  __m256i x_lo, x_hi, y_lo, y_hi;  // table indices: X / Y vectors, low / high nibbles
};

inline UnitIndices unit_indices(const uint8_t* unit) {
  // Per lane, byte 4r + t (row r, table t) -> byte 4t + r.
  const __m256i transpose = _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,
                                             0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const __m256i low = _mm256_set1_epi8(0x0F);
  // v0: rows 0-3 | 4-7, v1: rows 8-11 | 12-15; dword t of a lane = table t.
  const __m256i v0 = _mm256_shuffle_epi8(
      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(unit)), transpose);
  const __m256i v1 = _mm256_shuffle_epi8(
      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(unit + 32)), transpose);
  // unpacklo: lane 0 = t0 r0-3, t0 r8-11, t1 r0-3, t1 r8-11; lane 1 the same for rows 4-7, 12-15.
  // The qword permute (0, 2, 1, 3) then gathers table 0 in lane 0 and table 1 in lane 1.
  const __m256i x = _mm256_permute4x64_epi64(_mm256_unpacklo_epi32(v0, v1), 0xD8);
  const __m256i y = _mm256_permute4x64_epi64(_mm256_unpackhi_epi32(v0, v1), 0xD8);
  UnitIndices u;
  u.x_lo = _mm256_and_si256(x, low);
  u.x_hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), low);
  u.y_lo = _mm256_and_si256(y, low);
  u.y_hi = _mm256_and_si256(_mm256_srli_epi16(y, 4), low);
  return u;
}

// int16 accumulators of one plane: [run] for the four row runs; kWide: [4 + run] high bytes.
template <bool kWide>
struct PlaneAcc {
  __m256i a16[kWide ? 8 : 4];
  __m256i a32[4];
  void clear16() {
    for (auto& v : a16) v = _mm256_setzero_si256();
  }
  // Adds the int16 sums, both lanes of each, into a32 (rows in lane order).
  void flush() {
    auto widen = [](__m256i v) {
      return _mm256_add_epi32(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(v)),
                              _mm256_cvtepi16_epi32(_mm256_extracti128_si256(v, 1)));
    };
    for (int r = 0; r < 4; ++r) {
      __m256i v = widen(a16[r]);
      if constexpr (kWide) v = _mm256_add_epi32(v, _mm256_slli_epi32(widen(a16[4 + r]), 8));
      a32[r] = _mm256_add_epi32(a32[r], v);
    }
    clear16();
  }
};

// Looks up one unit's entries in the quad's tables and adds them to the plane's accumulators.
template <bool kWide>
inline void lookup_unit(const UnitIndices& u, const int8_t* tq, PlaneAcc<kWide>& acc) {
  const __m256i ones = _mm256_set1_epi8(1);
  // One pair of table vectors (tables 0|1 at t, 2|3 at t + 32) into acc.a16[first + run]: run =
  // 2 * nibble + unpack half. Unsigned entries (int16 low bytes) go in vpmaddubsw's unsigned
  // operand, signed ones in its signed operand.
  auto add_lookups = [&](const int8_t* t, int first, bool entries_unsigned) {
    const __m256i tx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t));
    const __m256i ty = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t + 32));
    const __m256i e[2][2] = {{_mm256_shuffle_epi8(tx, u.x_lo), _mm256_shuffle_epi8(ty, u.y_lo)},
                             {_mm256_shuffle_epi8(tx, u.x_hi), _mm256_shuffle_epi8(ty, u.y_hi)}};
    for (int nib = 0; nib < 2; ++nib)
      for (int half = 0; half < 2; ++half) {
        const __m256i pairs = half ? _mm256_unpackhi_epi8(e[nib][0], e[nib][1])
                                   : _mm256_unpacklo_epi8(e[nib][0], e[nib][1]);
        const __m256i sums = entries_unsigned ? _mm256_maddubs_epi16(pairs, ones)
                                              : _mm256_maddubs_epi16(ones, pairs);
        __m256i& a = acc.a16[first + 2 * nib + half];
        a = _mm256_add_epi16(a, sums);
      }
  };
  if constexpr (kWide) {
    add_lookups(tq, 0, true);        // low bytes
    add_lookups(tq + 64, 4, false);  // high bytes
  } else {
    add_lookups(tq, 0, false);
  }
}

// Per-block parameters in lane order: s[b][run], zp[run] (8 rows each).
struct LaneParams {
  __m256 s[4][4], zp[4];
};

// HLQC: the ratios of rows 8k..8k+7 for plane b >= 1: their 4-bit codes (low nibbles of bytes
// 0-7 / 8-15 of the plane's 16 code bytes for k = 0 / 1, high nibbles for k = 2 / 3) look up the
// plane's 16 codebook entries, two 8-entry permutes chosen by bit 3 of the code.
__m256 hlqc_ratios(const uint8_t* rc, const float* codebook, int b, int k) {
  const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(rc + 16 * (b - 1) + 8 * (k & 1)));
  __m256i code = _mm256_cvtepu8_epi32(bytes);
  code = _mm256_and_si256(k >= 2 ? _mm256_srli_epi32(code, 4) : code, _mm256_set1_epi32(15));
  const float* cb = codebook + 16 * (b - 1);
  const __m256 lo = _mm256_permutevar8x32_ps(_mm256_loadu_ps(cb), code);
  const __m256 hi = _mm256_permutevar8x32_ps(_mm256_loadu_ps(cb + 8), code);
  // blendv picks by the sign bit: move bit 3 of the code there.
  return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(code, 28)));
}

LaneParams lane_params(const PackedMatrix& w, int64_t tile, int64_t g) {
  const PackedHeader& h = w.header();
  const __m128i* p = reinterpret_cast<const __m128i*>(w.block(tile, g));  // (P, 4) x 8 fp16, row order
  const __m256 one_half = _mm256_set1_ps(0.5f);
  const bool hlqc = h.kind == uint8_t(QuantKind::HLQC);
  const uint8_t* rc = hlqc ? w.ratio_codes(tile, g) : nullptr;
  LaneParams lp;
  for (int k = 0; k < 4; ++k) {
    __m256 z;
    if (hlqc) {
      const __m256 scale = _mm256_cvtph_ps(_mm_loadu_si128(p + k));
      z = _mm256_cvtph_ps(_mm_loadu_si128(p + 4 + k));
      lp.s[0][k] = scale;
      for (int b = 1; b < h.bits; ++b)
        lp.s[b][k] = _mm256_mul_ps(scale, hlqc_ratios(rc, w.ratio_codebook(), b, k));
      lp.zp[k] = z;  // HLQC stores the midpoint z' itself
      continue;
    } else if (h.kind == uint8_t(QuantKind::Uniform)) {
      const __m256 scale = _mm256_cvtph_ps(_mm_loadu_si128(p + k));
      z = _mm256_cvtph_ps(_mm_loadu_si128(p + 4 + k));
      for (int b = 0; b < h.bits; ++b) lp.s[b][k] = _mm256_mul_ps(scale, _mm256_set1_ps(float(1 << b)));
    } else {
      for (int b = 0; b < h.bits; ++b) lp.s[b][k] = _mm256_cvtph_ps(_mm_loadu_si128(p + 4 * b + k));
      z = _mm256_cvtph_ps(_mm_loadu_si128(p + 4 * h.bits + k));
    }
    for (int b = 0; b < h.bits; ++b) z = _mm256_fmadd_ps(one_half, lp.s[b][k], z);
    lp.zp[k] = z;
  }
  for (int b = 0; b < h.bits; ++b) {
    swap_middle_halves(lp.s[b][0], lp.s[b][1]);
    swap_middle_halves(lp.s[b][2], lp.s[b][3]);
  }
  swap_middle_halves(lp.zp[0], lp.zp[1]);
  swap_middle_halves(lp.zp[2], lp.zp[3]);
  return lp;
}

// One (tile, group) block for one token: y (4 runs x 8, lane order) += the block's products.
// idx: the block's unit indices made beforehand (several tokens), or null to make them here.
template <bool kWide>
void block_token(const uint8_t* bits, const UnitIndices* idx, int B, int64_t quads,
                 const LaneParams& lp, const int8_t* tab, int64_t quad_bytes, float sh, float sx,
                 __m256 y[4]) {
  __m256 gacc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                    _mm256_setzero_ps()};
  for (int b = 0; b < B; ++b) {
    PlaneAcc<kWide> acc;
    acc.clear16();
    for (auto& v : acc.a32) v = _mm256_setzero_si256();
    for (int64_t q0 = 0; q0 < quads; q0 += kFlushQuads<kWide>) {
      const int64_t q1 = std::min(quads, q0 + kFlushQuads<kWide>);
      for (int64_t q = q0; q < q1; ++q) {
        const UnitIndices u = idx ? idx[q * B + b] : unit_indices(bits + (q * B + b) * 64);
        lookup_unit<kWide>(u, tab + q * quad_bytes, acc);
      }
      acc.flush();
    }
    for (int r = 0; r < 4; ++r)
      gacc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc.a32[r]), lp.s[b][r], gacc[r]);
  }
  const __m256 vsh = _mm256_set1_ps(sh), vsx = _mm256_set1_ps(sx);
  for (int r = 0; r < 4; ++r) y[r] = _mm256_fmadd_ps(lp.zp[r], vsx, _mm256_fmadd_ps(gacc[r], vsh, y[r]));
}

template <bool kWide>
void matmul_tiles_avx2(const PackedMatrix& w, const LutActivations& a, int64_t tile_begin,
                       int64_t tile_end, float* Y) {
  const PackedHeader& h = w.header();
  const int B = h.bits;
  const int64_t quads = a.quads_per_group;
  thread_local AlignedVector<float> ybuf;     // (n, 32): token outputs of the tile, lane order
  thread_local std::vector<UnitIndices> idx;  // (quads, B) when several tokens share a block
  ybuf.resize(size_t(a.n * 32));
  if (a.n > 1) idx.resize(size_t(quads * B));
  const uint8_t* blob_end = w.data() + w.size_bytes();
  for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
    std::fill(ybuf.begin(), ybuf.end(), 0.0f);
    for (int64_t g = 0; g < h.n_groups; ++g) {
      const uint8_t* blk = w.block(tile, g);
      prefetch_weights(blk + kWeightPrefetchBytes, h.block_bytes, blob_end);
      const LaneParams lp = lane_params(w, tile, g);
      const uint8_t* bits = blk + h.params_per_group * 64;
      if (a.n > 1)
        for (int64_t u = 0; u < quads * B; ++u) idx[size_t(u)] = unit_indices(bits + u * 64);
      for (int64_t t = 0; t < a.n; ++t) {
        const int8_t* tab = a.tables + (t * a.n_groups + g) * quads * a.quad_bytes;
        float* yt = ybuf.data() + t * 32;
        __m256 y[4] = {_mm256_loadu_ps(yt), _mm256_loadu_ps(yt + 8), _mm256_loadu_ps(yt + 16),
                       _mm256_loadu_ps(yt + 24)};
        block_token<kWide>(bits, a.n > 1 ? idx.data() : nullptr, B, quads, lp, tab, a.quad_bytes,
                           a.scale_half[t * a.n_groups + g], a.sum_x[t * a.n_groups + g], y);
        for (int k = 0; k < 4; ++k) _mm256_storeu_ps(yt + 8 * k, y[k]);
      }
    }
    const int64_t rows_here = std::min<int64_t>(32, h.rows - tile * 32);
    for (int64_t t = 0; t < a.n; ++t) {
      const float* yt = ybuf.data() + t * 32;
      __m256 y[4] = {_mm256_loadu_ps(yt), _mm256_loadu_ps(yt + 8), _mm256_loadu_ps(yt + 16),
                     _mm256_loadu_ps(yt + 24)};
      swap_middle_halves(y[0], y[1]);
      swap_middle_halves(y[2], y[3]);
      alignas(32) float rows[32];
      for (int k = 0; k < 4; ++k) _mm256_store_ps(rows + 8 * k, y[k]);
      std::copy(rows, rows + rows_here, Y + t * h.rows + tile * 32);
    }
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
