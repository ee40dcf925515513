// AVX2 LUT kernels: vpshufb holds one 16-entry table per 128-bit lane, so these kernels read the
// units in their own order (UnitLayout::Rows32, made once at load), in which every 32-byte half
// looks up two tables, 32 rows each, with one vpshufb per table and no regrouping; the looked-up
// bytes are summed per row with 16-bit adds and shifts only (details above the matmul).
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "core/aligned_vector.h"
#include "core/cpu_features.h"
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
  const __m128i offset = _mm_set1_epi8(char(0x80));  // stored as entry + 128 (see the matmul)
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
                       _mm_xor_si128(_mm256_castsi256_si128(ordered), offset));
    }
  }
}

// Wide tables: the int32 entries (|v| <= 32767) pack to int16 exactly; their low parts
// (v & (2^low_bits - 1), unsigned) and high parts (v >> low_bits, arithmetic) pack to bytes
// exactly, in the same lane order as the int8 tables. The high parts are stored + 2^(low_bits - 1)
// (int16: + 128; int12: + 32, so 0..63), the low ones as they are.
void build_tables_wide_avx2(const float* xpad, const float* inv_scale, int64_t n_groups,
                            int64_t chunks_per_group, int low_bits, int8_t* tables) {
  const ChunkSums sums;
  const __m256i pack_order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  const __m256i low_mask = _mm256_set1_epi16(int16_t((1 << low_bits) - 1));
  const __m256i high_offset = _mm256_set1_epi16(int16_t(1 << (low_bits - 1)));
  const __m128i shift = _mm_cvtsi32_si128(low_bits);
  const int64_t quads = chunks_per_group / 4;
  for (int64_t g = 0; g < n_groups; ++g) {
    const __m256 inv = _mm256_set1_ps(inv_scale[g]);
    for (int64_t c = 0; c < chunks_per_group; ++c) {
      const float* x = xpad + (g * chunks_per_group + c) * 4;
      __m256i lo, hi;
      sums(x, inv, &lo, &hi);
      const __m256i w16 = _mm256_packs_epi32(lo, hi);
      const __m256i low = _mm256_and_si256(w16, low_mask);
      const __m256i high = _mm256_add_epi16(_mm256_sra_epi16(w16, shift), high_offset);
      const __m256i l8 = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(low, low), pack_order);
      const __m256i h8 = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(high, high), pack_order);
      int8_t* out = tables + (g * quads + c / 4) * 128 + (c % 4) * 16;
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm256_castsi256_si128(l8));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 64), _mm256_castsi256_si128(h8));
    }
  }
}

// The matmul. Units are in the Rows32 layout: half h (32 bytes) of a unit holds tables 2h (low
// nibbles) and 2h + 1 (high nibbles), the row at byte position p being 8 (p % 4) + p / 4. A
// table broadcast to both lanes (vbroadcasti128) is looked up by one vpshufb for all 32 rows.
// The tables are stored offset (entry + 128, an unsigned byte u), so the bytes can be summed
// without widening: as 16-bit words, a lookup e adds 256 u_odd + u_even to `all` (mod 2^16), and
// e >> 8 adds u_odd to `odd` (exact while below 2^16: at most 256 lookups). Then all - 256 odd is
// the exact sum of the even bytes, and subtracting 128 per lookup gives the signed sums. Position
// p mod 4 picks the even/odd byte and the low/high word of a dword, so the four sums of a flush
// (vpmaddwd with 1 in the low or the high word) are rows 8k..8k+7 for k = p mod 4: the tile's
// rows in order, 8 per register. Per row the float steps are the scalar reference's, so results
// stay bit-identical.
// int16 tables: the high-byte tables are stored + 128 like int8 ones; the low bytes are unsigned
// already (their sums are read as unsigned); per row 256 * high + low in int32.
// int12 tables: both parts are 0..63 (the high part stored + 32), so a unit's four lookups in
// each part are first added as bytes (at most 252: no carry), and only that sum goes into the
// 16-bit sums, its high part with 4 * 32 = 128 added, like one int8 lookup; per row
// 64 * high + low in int32. Per unit that is 8 vpshufb + 6 vpaddb + 6 ops of 16-bit sums,
// against int16's 8 vpshufb + 24 (docs/RESULTS.md has the measured difference).
enum class Tab { I8, I16, I12 };

// Quads between int16 -> int32 flushes: at most four sums (lookups, or int12 unit sums) per quad
// add to every byte position; at most 256 keep the unsigned sums below 2^16.
constexpr int64_t kFlushQuads = 64;

struct UnitIndices {
  __m256i t[4];  // table t's 4-bit indices (low / high nibbles of half t / 2)
};

inline UnitIndices unit_indices(const uint8_t* unit) {
  const __m256i low = _mm256_set1_epi8(0x0F);
  const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(unit));
  const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(unit + 32));
  UnitIndices u;
  u.t[0] = _mm256_and_si256(a, low);
  u.t[1] = _mm256_and_si256(_mm256_srli_epi16(a, 4), low);
  u.t[2] = _mm256_and_si256(b, low);
  u.t[3] = _mm256_and_si256(_mm256_srli_epi16(b, 4), low);
  return u;
}

// 16-bit sums of the looked-up bytes at every position (see above).
struct ByteSums {
  __m256i all, odd;
  void clear() { all = odd = _mm256_setzero_si256(); }
  void add(__m256i e) {
    all = _mm256_add_epi16(all, e);
    odd = _mm256_add_epi16(odd, _mm256_srli_epi16(e, 8));
  }
  // Signed sums of `adds` added bytes (each offset by 128), rows 8k..8k+7 in r[k], added in int32.
  void add_signed(int64_t adds, __m256i r[4]) const {
    const __m256i bias = _mm256_set1_epi16(int16_t(uint16_t(128 * adds)));
    const __m256i even = _mm256_sub_epi16(_mm256_sub_epi16(all, _mm256_slli_epi16(odd, 8)), bias);
    const __m256i odd_s = _mm256_sub_epi16(odd, bias);
    const __m256i lo_word = _mm256_set1_epi32(1), hi_word = _mm256_set1_epi32(1 << 16);
    r[0] = _mm256_add_epi32(r[0], _mm256_madd_epi16(even, lo_word));
    r[1] = _mm256_add_epi32(r[1], _mm256_madd_epi16(odd_s, lo_word));
    r[2] = _mm256_add_epi32(r[2], _mm256_madd_epi16(even, hi_word));
    r[3] = _mm256_add_epi32(r[3], _mm256_madd_epi16(odd_s, hi_word));
  }
  // Unsigned sums (wide tables' low parts), as above.
  void add_unsigned(__m256i r[4]) const {
    const __m256i even = _mm256_sub_epi16(all, _mm256_slli_epi16(odd, 8));
    const __m256i lo_word = _mm256_set1_epi32(0xFFFF);
    r[0] = _mm256_add_epi32(r[0], _mm256_and_si256(even, lo_word));
    r[1] = _mm256_add_epi32(r[1], _mm256_and_si256(odd, lo_word));
    r[2] = _mm256_add_epi32(r[2], _mm256_srli_epi32(even, 16));
    r[3] = _mm256_add_epi32(r[3], _mm256_srli_epi32(odd, 16));
  }
};

// The sums of one plane: 16-bit byte sums since the last flush, int32 per row (rows 8k..8k+7 in
// a32[k]).
template <Tab kTab>
struct PlaneAcc {
  ByteSums s[kTab == Tab::I8 ? 1 : 2];  // the entries (int8) / low parts and high parts (wide)
  __m256i a32[4];
  void clear() {
    for (auto& v : s) v.clear();
    for (auto& v : a32) v = _mm256_setzero_si256();
  }
  // Adds to a32 the byte sums of `quads` quads: per position 4 lookups a quad (int8, int16) or one
  // unit sum (int12).
  void flush(int64_t quads) {
    if constexpr (kTab == Tab::I8) {
      s[0].add_signed(4 * quads, a32);
    } else {
      constexpr int kLowBits = kTab == Tab::I16 ? 8 : 6;
      __m256i low[4], high[4];
      for (int k = 0; k < 4; ++k) low[k] = high[k] = _mm256_setzero_si256();
      s[0].add_unsigned(low);
      s[1].add_signed(kTab == Tab::I16 ? 4 * quads : quads, high);
      for (int k = 0; k < 4; ++k)
        a32[k] = _mm256_add_epi32(a32[k],
                                  _mm256_add_epi32(low[k], _mm256_slli_epi32(high[k], kLowBits)));
    }
    for (auto& v : s) v.clear();
  }
};

// One 16-entry table in both 128-bit lanes, as vpshufb looks it up for 32 rows.
inline __m256i broadcast_table(const int8_t* t) {
  return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(t)));
}

// The sum, as bytes, of one unit's four int12 lookups in one part (tables at tp): at most 4 * 63.
inline __m256i unit_byte_sum(const UnitIndices& u, const int8_t* tp) {
  const __m256i e01 = _mm256_add_epi8(_mm256_shuffle_epi8(broadcast_table(tp), u.t[0]),
                                      _mm256_shuffle_epi8(broadcast_table(tp + 16), u.t[1]));
  const __m256i e23 = _mm256_add_epi8(_mm256_shuffle_epi8(broadcast_table(tp + 32), u.t[2]),
                                      _mm256_shuffle_epi8(broadcast_table(tp + 48), u.t[3]));
  return _mm256_add_epi8(e01, e23);
}

// Looks up one unit's entries in the quad's four tables and adds them to the plane's sums.
template <Tab kTab>
inline void lookup_unit(const UnitIndices& u, const int8_t* tq, PlaneAcc<kTab>& acc) {
  if constexpr (kTab == Tab::I12) {
    acc.s[0].add(unit_byte_sum(u, tq));
    acc.s[1].add(unit_byte_sum(u, tq + 64));
    return;
  }
  for (int t = 0; t < 4; ++t) {
    acc.s[0].add(_mm256_shuffle_epi8(broadcast_table(tq + 16 * t), u.t[t]));
    if constexpr (kTab == Tab::I16)
      acc.s[1].add(_mm256_shuffle_epi8(broadcast_table(tq + 64 + 16 * t), u.t[t]));
  }
}

// Per-block parameters: s[b][k], zp[k] for rows 8k..8k+7.
struct BlockParams {
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

// Inlined with B fixed (as a call it held ~12% of an L2-resident AVX2 GEMV's profile samples).
template <int B>
__attribute__((always_inline)) inline BlockParams block_params(const PackedMatrix& w, int64_t tile,
                                                               int64_t g) {
  const PackedHeader& h = w.header();
  const __m128i* p = reinterpret_cast<const __m128i*>(w.block(tile, g));  // (P, 4) x 8 fp16, row order
  const __m256 one_half = _mm256_set1_ps(0.5f);
  const bool hlqc = h.kind == uint8_t(QuantKind::HLQC);
  const uint8_t* rc = hlqc ? w.ratio_codes(tile, g) : nullptr;
  BlockParams lp;
  // The kind is tested once per block, not per row group, so each loop below unrolls.
  if (hlqc) {
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      const __m256 scale = _mm256_cvtph_ps(_mm_loadu_si128(p + k));
      lp.s[0][k] = scale;
      for (int b = 1; b < B; ++b)
        lp.s[b][k] = _mm256_mul_ps(scale, hlqc_ratios(rc, w.ratio_codebook(), b, k));
      lp.zp[k] = _mm256_cvtph_ps(_mm_loadu_si128(p + 4 + k));  // HLQC stores the midpoint z'
    }
    return lp;
  }
  if (h.kind == uint8_t(QuantKind::Uniform)) {
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      const __m256 scale = _mm256_cvtph_ps(_mm_loadu_si128(p + k));
      lp.zp[k] = _mm256_cvtph_ps(_mm_loadu_si128(p + 4 + k));  // z, made z' below
      for (int b = 0; b < B; ++b) lp.s[b][k] = _mm256_mul_ps(scale, _mm256_set1_ps(float(1 << b)));
    }
  } else {
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      for (int b = 0; b < B; ++b) lp.s[b][k] = _mm256_cvtph_ps(_mm_loadu_si128(p + 4 * b + k));
      lp.zp[k] = _mm256_cvtph_ps(_mm_loadu_si128(p + 4 * B + k));
    }
  }
  // z' = z + sum_b s_b / 2, plane by plane as the scalar reference adds it; the four row groups'
  // chains interleave.
  for (int b = 0; b < B; ++b)
    for (int k = 0; k < 4; ++k) lp.zp[k] = _mm256_fmadd_ps(one_half, lp.s[b][k], lp.zp[k]);
  return lp;
}

// gacc += one plane's int32 row sums times its scales: the float step per plane, in plane order.
inline void add_plane(__m256 gacc[4], const __m256i a32[4], const __m256 s[4]) {
  for (int r = 0; r < 4; ++r) gacc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a32[r]), s[r], gacc[r]);
}

// y += sh * (sum_b s_b * plane sums) + sx * z', per row: the last float steps of a block and token
// (the scalar reference's order).
inline void add_block_result(const __m256 gacc[4], const BlockParams& lp, float sh, float sx,
                             __m256 y[4]) {
  const __m256 vsh = _mm256_set1_ps(sh), vsx = _mm256_set1_ps(sx);
  for (int r = 0; r < 4; ++r) y[r] = _mm256_fmadd_ps(lp.zp[r], vsx, _mm256_fmadd_ps(gacc[r], vsh, y[r]));
}

// One (tile, group) block for one token: y (rows 8k..8k+7 in y[k]) += the block's products.
// kIdx: the block's unit indices were made beforehand (several tokens share them); else they are
// made here from bits (the decode GEMV with wide tables). B is a template parameter so the plane
// loop unrolls and a group of at most kFlushQuads quads (all but whole-row groups) takes one flush
// straight into the registers the float steps read.
template <int B, Tab kTab, bool kIdx>
void block_token(const uint8_t* bits, const UnitIndices* idx, int64_t quads, const BlockParams& lp,
                 const int8_t* tab, int64_t quad_bytes, float sh, float sx, __m256 y[4]) {
  __m256 gacc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                    _mm256_setzero_ps()};
  auto sum_quads = [&](PlaneAcc<kTab>& acc, int b, int64_t q0, int64_t q1)
                       __attribute__((always_inline)) {
#pragma GCC unroll 8
    for (int64_t q = q0; q < q1; ++q) {
      if constexpr (kIdx) {
        lookup_unit<kTab>(idx[q * B + b], tab + q * quad_bytes, acc);
      } else {
        const uint8_t* unit = bits + (q * B + b) * 64;
        lookup_unit<kTab>(unit_indices(unit), tab + q * quad_bytes, acc);
      }
    }
    acc.flush(q1 - q0);
  };
  for (int b = 0; b < B; ++b) {
    PlaneAcc<kTab> acc;
    acc.clear();
    if (quads <= kFlushQuads) {
      sum_quads(acc, b, 0, quads);
    } else {
      for (int64_t q0 = 0; q0 < quads; q0 += kFlushQuads)
        sum_quads(acc, b, q0, std::min(quads, q0 + kFlushQuads));
    }
    add_plane(gacc, acc.a32, lp.s[b]);
  }
  add_block_result(gacc, lp, sh, sx, y);
}

// Planes [b0, b0 + P) of a block, quads outermost: their int32 sums per row into acc[b0..].
// units(q, b) gives unit (q, b)'s indices: made beforehand and shared by several tokens
// (StoredUnits), or made from the bits as they are needed (BitsUnits).
template <int B, int b0, int P, class Units>
inline void plane_sums_quads(const Units& units, int64_t quads, const int8_t* tab,
                             int64_t quad_bytes, PlaneAcc<Tab::I8>* acc) {
  for (int64_t q0 = 0; q0 < quads; q0 += kFlushQuads) {
    const int64_t q1 = std::min(quads, q0 + kFlushQuads);
    for (int64_t q = q0; q < q1; ++q) {
      const int8_t* tq = tab + q * quad_bytes;
      __m256i table[4];
      for (int t = 0; t < 4; ++t) table[t] = broadcast_table(tq + 16 * t);
      for (int b = b0; b < b0 + P; ++b) {
        decltype(auto) u = units(q, b);
        for (int t = 0; t < 4; ++t) acc[b].s[0].add(_mm256_shuffle_epi8(table[t], u.t[t]));
      }
    }
    for (int b = b0; b < b0 + P; ++b) acc[b].flush(q1 - q0);
  }
}

template <int B>
struct StoredUnits {
  const UnitIndices* idx;
  const UnitIndices& operator()(int64_t q, int b) const { return idx[q * B + b]; }
};
template <int B>
struct BitsUnits {
  const uint8_t* bits;
  UnitIndices operator()(int64_t q, int b) const { return unit_indices(bits + (q * B + b) * 64); }
};

// Int8 tables: block_token with the quads outermost, so each quad's four tables are loaded once
// for all B planes' units (plane by plane they were loaded B times: with the units' indices that
// made 8 loads per unit, and Zen 3 takes two 256-bit loads a cycle). The integer sums are exact in
// any order, and the float steps are block_token's, in its order, so results are unchanged. (Wide
// tables would need twice the table registers; they keep block_token.) Prefill (StoredUnits) and
// the decode GEMV (BitsUnits: one token per block, nothing to share the indices with) both walk
// this way; for the GEMV it measured on Zen 3, one thread, hlq-w4g128 4096 x 4096 609-623 us
// against 655-666 plane by plane, hlq-w2g128 308 against 437
// (docs/notes/2026-12-07-q8-iq4xs-and-batched-decode.md).
// Four planes go two per pass: four planes' sums and four tables left GCC too few of AVX2's 16
// registers, and it kept three sums on the stack (b0 and P are template parameters: a pass loop
// over b0 at run time made acc[] an array in memory).
template <int B, class Units>
void block_token_quads(const Units& units, int64_t quads, const BlockParams& lp,
                       const int8_t* tab, int64_t quad_bytes, float sh, float sx, __m256 y[4]) {
  PlaneAcc<Tab::I8> acc[B];
  for (auto& a : acc) a.clear();
  if constexpr (B == 4) {
    plane_sums_quads<B, 0, 2>(units, quads, tab, quad_bytes, acc);
    plane_sums_quads<B, 2, 2>(units, quads, tab, quad_bytes, acc);
  } else {
    plane_sums_quads<B, 0, B>(units, quads, tab, quad_bytes, acc);
  }
  __m256 gacc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                    _mm256_setzero_ps()};
  for (int b = 0; b < B; ++b) add_plane(gacc, acc[b].a32, lp.s[b]);
  add_block_result(gacc, lp, sh, sx, y);
}

// Decode's prefetch on AMD: as a block starts, the whole block read next (gemv_next_block, the
// next stream's block at the same group) is asked for. On Zen 3 (2 threads) that read the 7B
// layers 1.2-1.4x faster from DRAM than asking for the rest of the block in use, which was itself
// faster than kWeightPrefetchBytes ahead; the same stream's next block, the next block spread over
// the planes' loops, and two blocks ahead measured no better (docs/RESULTS.md, "AVX2-only host").
// Other CPUs keep kWeightPrefetchBytes ahead: the Intel host measured that against none and 4 KiB.
bool gemv_prefetch_next_block() {
  static const bool amd = cpu_features().amd;
  return amd;
}

// Decode: the tile range is read as kGemvStreams interleaved streams (lut_isa.h), as the
// AVX-512 GEMV does; each tile's outputs and float order are unchanged.
template <int B, Tab kTab>
void gemv_tiles_avx2(const PackedMatrix& w, const LutActivations& a, int64_t tile_begin,
                     int64_t tile_end, float* Y) {
  const PackedHeader& h = w.header();
  const uint8_t* blob_end = w.data() + w.size_bytes();
  const bool next_block = gemv_prefetch_next_block();
  const int64_t steps = gemv_stream_steps(tile_begin, tile_end);
  if (next_block && steps > 0) prefetch_weights(w.block(tile_begin, 0), h.block_bytes, blob_end);
  for (int64_t i = 0; i < steps; ++i) {
    int64_t tiles[kGemvStreams];
    const int streams = gemv_stream_tiles(tile_begin, tile_end, i, tiles);
    __m256 y[kGemvStreams][4];
    for (int k = 0; k < streams; ++k)
      for (int r = 0; r < 4; ++r) y[k][r] = _mm256_setzero_ps();
    for (int64_t g = 0; g < h.n_groups; ++g) {
      const int8_t* tab = a.tables + g * a.quads_per_group * a.quad_bytes;
      for (int k = 0; k < streams; ++k) {
        const uint8_t* blk = w.block(tiles[k], g);
        if (next_block) {
          const GemvBlockPos next =
              gemv_next_block(tile_begin, steps, i, tiles, streams, k, g, h.n_groups);
          if (next.tile >= 0)
            prefetch_weights(w.block(next.tile, next.group), h.block_bytes, blob_end);
        } else {
          prefetch_weights(blk + kWeightPrefetchBytes, h.block_bytes, blob_end);
        }
        const BlockParams lp = block_params<B>(w, tiles[k], g);
        if constexpr (kTab == Tab::I8)
          block_token_quads<B>(BitsUnits<B>{blk + h.params_per_group * 64}, a.quads_per_group, lp,
                               tab, a.quad_bytes, a.scale_half[g], a.sum_x[g], y[k]);
        else
          block_token<B, kTab, false>(blk + h.params_per_group * 64, nullptr, a.quads_per_group,
                                      lp, tab, a.quad_bytes, a.scale_half[g], a.sum_x[g], y[k]);
      }
    }
    for (int k = 0; k < streams; ++k) {
      alignas(32) float rows[32];
      for (int r = 0; r < 4; ++r) _mm256_store_ps(rows + 8 * r, y[k][r]);
      std::copy(rows, rows + std::min<int64_t>(32, h.rows - tiles[k] * 32), Y + tiles[k] * 32);
    }
  }
}

// Prefill: per block the unit indices are made once for all the pass's tokens.
template <int B, Tab kTab>
void matmul_tiles_avx2(const PackedMatrix& w, const LutActivations& a, int64_t tile_begin,
                       int64_t tile_end, float* Y) {
  if (a.n == 1) return gemv_tiles_avx2<B, kTab>(w, a, tile_begin, tile_end, Y);
  const PackedHeader& h = w.header();
  const int64_t quads = a.quads_per_group;
  thread_local AlignedVector<float> ybuf;     // (n, 32): token outputs of the tile
  thread_local std::vector<UnitIndices> idx;  // (quads, B): the block's, for all tokens
  ybuf.resize(size_t(a.n * 32));
  idx.resize(size_t(quads * B));
  const uint8_t* blob_end = w.data() + w.size_bytes();
  for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
    std::fill(ybuf.begin(), ybuf.end(), 0.0f);
    for (int64_t g = 0; g < h.n_groups; ++g) {
      const uint8_t* blk = w.block(tile, g);
      prefetch_weights(blk + kWeightPrefetchBytes, h.block_bytes, blob_end);
      const BlockParams lp = block_params<B>(w, tile, g);
      const uint8_t* bits = blk + h.params_per_group * 64;
      for (int64_t u = 0; u < quads * B; ++u) idx[size_t(u)] = unit_indices(bits + u * 64);
      for (int64_t t = 0; t < a.n; ++t) {
        const int8_t* tab = a.tables + (t * a.n_groups + g) * quads * a.quad_bytes;
        float* yt = ybuf.data() + t * 32;
        __m256 y[4] = {_mm256_loadu_ps(yt), _mm256_loadu_ps(yt + 8), _mm256_loadu_ps(yt + 16),
                       _mm256_loadu_ps(yt + 24)};
        const float sh = a.scale_half[t * a.n_groups + g], sx = a.sum_x[t * a.n_groups + g];
        if constexpr (kTab != Tab::I8)
          block_token<B, kTab, true>(bits, idx.data(), quads, lp, tab, a.quad_bytes, sh, sx, y);
        else
          block_token_quads<B>(StoredUnits<B>{idx.data()}, quads, lp, tab, a.quad_bytes, sh, sx, y);
        for (int k = 0; k < 4; ++k) _mm256_storeu_ps(yt + 8 * k, y[k]);
      }
    }
    const int64_t rows_here = std::min<int64_t>(32, h.rows - tile * 32);
    for (int64_t t = 0; t < a.n; ++t) {
      const float* yt = ybuf.data() + t * 32;
      std::copy(yt, yt + rows_here, Y + t * h.rows + tile * 32);
    }
  }
}

void matmul_tiles_avx2_any(const PackedMatrix& w, const LutActivations& a, int64_t tile_begin,
                           int64_t tile_end, float* Y) {
  using Fn = void (*)(const PackedMatrix&, const LutActivations&, int64_t, int64_t, float*);
  static constexpr Fn kFns[3][4] = {
      {matmul_tiles_avx2<1, Tab::I8>, matmul_tiles_avx2<2, Tab::I8>, matmul_tiles_avx2<3, Tab::I8>,
       matmul_tiles_avx2<4, Tab::I8>},
      {matmul_tiles_avx2<1, Tab::I16>, matmul_tiles_avx2<2, Tab::I16>,
       matmul_tiles_avx2<3, Tab::I16>, matmul_tiles_avx2<4, Tab::I16>},
      {matmul_tiles_avx2<1, Tab::I12>, matmul_tiles_avx2<2, Tab::I12>,
       matmul_tiles_avx2<3, Tab::I12>, matmul_tiles_avx2<4, Tab::I12>}};
  const int tab = !a.wide ? 0 : a.low_bits == 8 ? 1 : 2;
  kFns[tab][w.header().bits - 1](w, a, tile_begin, tile_end, Y);
}

}  // namespace

const LutIsaKernels& lut_kernels_avx2() {
  static const LutIsaKernels k = {build_tables_avx2, build_tables_wide_avx2,
                                  matmul_tiles_avx2_any};
  return k;
}

}  // namespace elutq
