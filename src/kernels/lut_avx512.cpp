// AVX-512 LUT kernels (F/BW/VBMI/VNNI): vpermb looks up a whole 64-byte unit (16 rows x 4 tables)
// in one 4-table register, vpdpbusd sums each row's 4 int8 entries into int32 (wide tables: the
// same for their low-part and high-part halves). Decode has its own
// B-templated GEMV; prefill makes each weight block's lookup indices once and reuses them for a
// whole L2-sized block of tokens, 6 tokens at a time in registers.
// GCC 12 warns about the _mm512_undefined_* placeholders inside its own intrinsic headers.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "core/aligned_vector.h"
#include "kernels/lut_isa.h"

namespace elutq {
namespace {

// The 16 signed sums (+-x0 +-x1 +-x2 +-x3) * inv of one chunk of 4 activations, rounded to int32
// (round to nearest even). Products with +-1 are exact, so these match the scalar additions bit
// for bit. Shared by the int8 and wide builders.
struct ChunkSums {
  __m512 s0, s1, s2, s3;  // lane p of sign_j: +1 if bit j of p is set, else -1
  ChunkSums() {
    alignas(64) float sg[4][16];
    for (int j = 0; j < 4; ++j)
      for (int p = 0; p < 16; ++p) sg[j][p] = (p >> j & 1) ? 1.0f : -1.0f;
    s0 = _mm512_load_ps(sg[0]);
    s1 = _mm512_load_ps(sg[1]);
    s2 = _mm512_load_ps(sg[2]);
    s3 = _mm512_load_ps(sg[3]);
  }
  __m512i operator()(const float* x, __m512 inv) const {
    __m512 v = _mm512_mul_ps(_mm512_set1_ps(x[0]), s0);
    v = _mm512_add_ps(v, _mm512_mul_ps(_mm512_set1_ps(x[1]), s1));
    v = _mm512_add_ps(v, _mm512_mul_ps(_mm512_set1_ps(x[2]), s2));
    v = _mm512_add_ps(v, _mm512_mul_ps(_mm512_set1_ps(x[3]), s3));
    return _mm512_cvtps_epi32(_mm512_mul_ps(v, inv));
  }
};

void build_tables_avx512(const float* xpad, const float* inv_scale, int64_t n_groups,
                         int64_t chunks_per_group, int8_t* tables) {
  const ChunkSums sums;
  for (int64_t g = 0; g < n_groups; ++g) {
    const __m512 inv = _mm512_set1_ps(inv_scale[g]);
    for (int64_t c = 0; c < chunks_per_group; ++c) {
      const float* x = xpad + (g * chunks_per_group + c) * 4;
      const __m512i q = sums(x, inv);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(tables + (g * chunks_per_group + c) * 16),
                       _mm512_cvtsepi32_epi8(q));
    }
  }
}

// Wide tables: the same sums, rounded to int32 lanes (|v| <= 32767); the truncating narrow of v
// masked to low_bits bits gives its low part, of v >> low_bits (arithmetic) its high part.
void build_tables_wide_avx512(const float* xpad, const float* inv_scale, int64_t n_groups,
                              int64_t chunks_per_group, int low_bits, int8_t* tables) {
  const ChunkSums sums;
  const __m512i mask = _mm512_set1_epi32((1 << low_bits) - 1);
  const __m128i shift = _mm_cvtsi32_si128(low_bits);
  const int64_t quads = chunks_per_group / 4;
  for (int64_t g = 0; g < n_groups; ++g) {
    const __m512 inv = _mm512_set1_ps(inv_scale[g]);
    for (int64_t c = 0; c < chunks_per_group; ++c) {
      const float* x = xpad + (g * chunks_per_group + c) * 4;
      const __m512i q = sums(x, inv);
      int8_t* lo = tables + (g * quads + c / 4) * 128 + (c % 4) * 16;
      _mm_storeu_si128(reinterpret_cast<__m128i*>(lo),
                       _mm512_cvtepi32_epi8(_mm512_and_si512(q, mask)));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(lo + 64),
                       _mm512_cvtepi32_epi8(_mm512_sra_epi32(q, shift)));
    }
  }
}

struct BlockParams {
  __m512 s[4][2];  // per plane, rows 0-15 / 16-31
  __m512 zp[2];    // z' = z + sum_b s_b / 2
};

// HLQC: s_b (b >= 1) of rows 0-15 (part 0) or 16-31 (part 1): s_0 times the codebook ratio its
// 4-bit code picks; vpermps reads only the low 4 bits of each index, so part 0 needs no mask.
inline __m512 hlqc_scale(const uint8_t* rc, const __m512* cbv, int b, int part, __m512 s0) {
  __m512i k = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rc + 16 * (b - 1))));
  if (part) k = _mm512_srli_epi32(k, 4);
  return _mm512_mul_ps(s0, _mm512_permutexvar_ps(k, cbv[b - 1]));
}

// The codebook of an HLQC matrix in registers (one per plane b >= 1).
struct RatioCodebook {
  __m512 v[3];
  explicit RatioCodebook(const PackedMatrix& w) {
    const PackedHeader& h = w.header();
    for (int b = 1; b < 4; ++b)
      v[b - 1] = b < h.bits && h.kind == uint8_t(QuantKind::HLQC)
                     ? _mm512_loadu_ps(w.ratio_codebook() + 16 * (b - 1))
                     : _mm512_setzero_ps();
  }
};

BlockParams decode_params(const PackedMatrix& w, const RatioCodebook& cb, int64_t tile, int64_t g) {
  const PackedHeader& h = w.header();
  const uint8_t* blk = w.block(tile, g);
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
    } else if (h.kind == uint8_t(QuantKind::HLQC)) {
      const __m512 scale = half(0, part);
      z = half(1, part);
      bp.s[0][part] = scale;
      const uint8_t* rc = w.ratio_codes(tile, g);
      for (int b = 1; b < h.bits; ++b) bp.s[b][part] = hlqc_scale(rc, cb.v, b, part, scale);
      bp.zp[part] = z;  // HLQC stores the midpoint z' itself
      continue;
    } else {
      for (int b = 0; b < h.bits; ++b) bp.s[b][part] = half(b, part);
      z = half(h.bits, part);
    }
    for (int b = 0; b < h.bits; ++b) z = _mm512_fmadd_ps(one_half, bp.s[b][part], z);
    bp.zp[part] = z;
  }
  return bp;
}

// Prefill: the index vectors of every unit of one block, (quads, B, 2 = low/high nibble), made
// once per block and reused by every token block.
void block_indices(const uint8_t* bits, int B, int64_t quads, __m512i* idx) {
  const __m512i low = _mm512_set1_epi8(0x0F);
  const __m512i pos = _mm512_set1_epi32(0x30201000);
  for (int64_t u = 0; u < quads * B; ++u) {
    const __m512i wv = _mm512_loadu_si512(bits + u * 64);
    idx[2 * u] = _mm512_ternarylogic_epi32(wv, low, pos, 0xEA);
    idx[2 * u + 1] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(wv, 4), low, pos, 0xEA);
  }
}

// One (tile, group) block for TB tokens t0..t0+TB-1 from precomputed indices; adds into
// ybuf (TB, 32). int8: TB = 6 keeps 12 int32 and 12 float accumulators in registers. Wide tables
// (kWide): each lookup is done in the low-part and the high-part table, summed separately
// (vpdpbusd takes the unsigned low parts as its unsigned operand) and combined per plane as
// (high << low_bits) + low; TB = 4 keeps its 16 int32 and 8 float accumulators in registers.
template <int TB, bool kWide>
void block_tokens_idx(const __m512i* idx, int B, int64_t quads, const BlockParams& bp,
                      const LutActivations& a, int64_t g, int64_t t0, float* ybuf) {
  const __m512i ones = _mm512_set1_epi8(1);
  const int8_t* tab[TB];
  for (int t = 0; t < TB; ++t) tab[t] = a.tables + ((t0 + t) * a.n_groups + g) * quads * a.quad_bytes;
  __m512 glo[TB], ghi[TB];
  for (int t = 0; t < TB; ++t) glo[t] = ghi[t] = _mm512_setzero_ps();
  for (int b = 0; b < B; ++b) {
    __m512i alo[TB], ahi[TB];
    [[maybe_unused]] __m512i hlo[TB], hhi[TB];  // kWide: sums of the high bytes
    for (int t = 0; t < TB; ++t) alo[t] = ahi[t] = _mm512_setzero_si512();
    if constexpr (kWide)
      for (int t = 0; t < TB; ++t) hlo[t] = hhi[t] = _mm512_setzero_si512();
    // Unrolled by 8 (one g128 group's quads): 1.16-1.18x on gemm64 / gemm512, int8 and int16
    // tables (docs/RESULTS.md); a compile-time quad count was slower than this.
#pragma GCC unroll 8
    for (int64_t q = 0; q < quads; ++q) {
      const __m512i ilo = _mm512_load_si512(idx + 2 * (q * B + b));
      const __m512i ihi = _mm512_load_si512(idx + 2 * (q * B + b) + 1);
      for (int t = 0; t < TB; ++t) {
        if constexpr (kWide) {
          const __m512i tl = _mm512_loadu_si512(tab[t] + q * 128);
          const __m512i th = _mm512_loadu_si512(tab[t] + q * 128 + 64);
          alo[t] = _mm512_dpbusd_epi32(alo[t], _mm512_permutexvar_epi8(ilo, tl), ones);
          ahi[t] = _mm512_dpbusd_epi32(ahi[t], _mm512_permutexvar_epi8(ihi, tl), ones);
          hlo[t] = _mm512_dpbusd_epi32(hlo[t], ones, _mm512_permutexvar_epi8(ilo, th));
          hhi[t] = _mm512_dpbusd_epi32(hhi[t], ones, _mm512_permutexvar_epi8(ihi, th));
        } else {
          const __m512i tv = _mm512_loadu_si512(tab[t] + q * 64);
          alo[t] = _mm512_dpbusd_epi32(alo[t], ones, _mm512_permutexvar_epi8(ilo, tv));
          ahi[t] = _mm512_dpbusd_epi32(ahi[t], ones, _mm512_permutexvar_epi8(ihi, tv));
        }
      }
    }
    if constexpr (kWide) {
      // (high << low_bits) + low (a bit shift is the two's-complement product)
      const __m128i shift = _mm_cvtsi32_si128(a.low_bits);
      for (int t = 0; t < TB; ++t) {
        alo[t] = _mm512_add_epi32(alo[t], _mm512_sll_epi32(hlo[t], shift));
        ahi[t] = _mm512_add_epi32(ahi[t], _mm512_sll_epi32(hhi[t], shift));
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

// Token steps of gemm_tiles for n tokens: blocks of TB, then of 4 and 2 (below TB), then ones.
template <int TB>
int64_t token_steps(int64_t n) {
  int64_t steps = n / TB;
  n %= TB;
  if (TB > 4) steps += n / 4, n %= 4;
  if (TB > 2) steps += n / 2, n %= 2;
  return steps + n;
}

// Prefill (several tokens). Tokens go in blocks whose tables fit in L2 (all of a token's tables
// are read once per tile, the weights once per token block); within a block each weight block's
// indices are made once and used by every token, TB tokens at a time in registers. Per (token,
// row) the group order and the float steps are those of the scalar reference.
//
// Table budget (lut_table_budget_bytes): three quarters of this core's L2, at least 512 KiB. A
// fixed 512 KiB left the 11008-column down projection (44 KiB of int8 tables per token) only 6
// tokens per block, so its weights streamed from DRAM once per 6 tokens; with a 2 MiB L2 it now
// gets 30.
template <bool kWide>
void gemm_tiles(const PackedMatrix& w, const LutActivations& a, int64_t tile_begin,
                int64_t tile_end, float* Y) {
  constexpr int TB = kWide ? 4 : 6;
  const PackedHeader& h = w.header();
  const int64_t table_bytes = a.n_groups * a.quads_per_group * a.quad_bytes;  // per token
  // No more than this pass's tokens: the buffer below is cleared per tile, and a server's decode
  // step (a few tokens) must not pay for clearing a prefill-sized one.
  const int64_t tok_block =
      std::min(a.n, std::max<int64_t>(TB, lut_table_budget_bytes() / table_bytes / TB * TB));
  const int B = h.bits;
  const int64_t quads = a.quads_per_group;
  thread_local AlignedVector<float> ybuf;  // (tok_block, 32)
  struct alignas(64) Vec64 {
    uint8_t bytes[64];
  };
  thread_local std::vector<Vec64> idx_buf;  // (quads, B, 2) index vectors
  idx_buf.resize(size_t(quads * B * 2));
  __m512i* idx = reinterpret_cast<__m512i*>(idx_buf.data());
  ybuf.resize(size_t(tok_block * 32));
  const RatioCodebook cb(w);
  const uint8_t* blob_end = w.data() + w.size_bytes();
  const int64_t block_lines = (h.block_bytes + 63) / 64;
  for (int64_t t_begin = 0; t_begin < a.n; t_begin += tok_block) {
    const int64_t t_end = std::min(a.n, t_begin + tok_block);
    const int64_t steps = token_steps<TB>(t_end - t_begin);
    const int64_t lines_per_step = (block_lines + steps - 1) / steps;
    for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
      std::fill(ybuf.begin(), ybuf.begin() + (t_end - t_begin) * 32, 0.0f);
      for (int64_t g = 0; g < h.n_groups; ++g) {
        const uint8_t* blk = w.block(tile, g);
        const BlockParams bp = decode_params(w, cb, tile, g);
        block_indices(blk + h.params_per_group * 64, B, quads, idx);
        // The next block_bytes of the blob (the next block, or the next tile's start) stream in
        // while this block works, a slice of its lines before each token step: without it the
        // index build stalls on its weight loads (the hottest spot in a profile of 7B prefill);
        // all lines at once stall on the fill buffers instead.
        const uint8_t* next = blk + h.block_bytes;
        int64_t line = 0;
        auto prefetch_slice = [&] {
          for (int64_t i = 0; i < lines_per_step && line < block_lines; ++i, ++line)
            if (next + line * 64 < blob_end)
              _mm_prefetch(reinterpret_cast<const char*>(next + line * 64), _MM_HINT_T0);
        };
        int64_t t = t_begin;
        for (; t + TB <= t_end; t += TB) {
          prefetch_slice();
          block_tokens_idx<TB, kWide>(idx, B, quads, bp, a, g, t,
                                      ybuf.data() + (t - t_begin) * 32);
        }
        // The tokens left over (a decode step of a few requests is all left over): in blocks of
        // 4 and 2 when TB is 6, so they still share each index vector's loads.
        if constexpr (TB > 4) {
          for (; t + 4 <= t_end; t += 4) {
            prefetch_slice();
            block_tokens_idx<4, kWide>(idx, B, quads, bp, a, g, t,
                                       ybuf.data() + (t - t_begin) * 32);
          }
        }
        if constexpr (TB > 2) {
          for (; t + 2 <= t_end; t += 2) {
            prefetch_slice();
            block_tokens_idx<2, kWide>(idx, B, quads, bp, a, g, t,
                                       ybuf.data() + (t - t_begin) * 32);
          }
        }
        for (; t < t_end; ++t) {
          prefetch_slice();
          block_tokens_idx<1, kWide>(idx, B, quads, bp, a, g, t, ybuf.data() + (t - t_begin) * 32);
        }
      }
      const int64_t rows_here = std::min<int64_t>(32, h.rows - tile * 32);
      for (int64_t t = t_begin; t < t_end; ++t)
        std::copy(ybuf.begin() + (t - t_begin) * 32, ybuf.begin() + (t - t_begin) * 32 + rows_here,
                  Y + t * h.rows + tile * 32);
    }
  }
}

// Decode (one token): B and the format are template parameters so the block loop is fully
// unrolled, the two outputs of a tile stay in registers across groups, each quad's table is loaded
// once for all planes, and the 2B plane accumulators form independent vpdpbusd chains (4B with
// wide tables: low-part and high-part sums, combined per plane as (high << low_bits) + low).
// kQuads > 0 fixes the quads per group (groups of 32, 64, 128) at compile time: the quad loop then
// unrolls completely, which keeps GCC 12 from copying every accumulator between registers once
// per quad (a third more instructions in the loop; A/B in docs/RESULTS.md: neutral to 1.3x
// faster); 0 = any group size.
enum class Params { Uniform, Hlq, Hlqc };

template <int B, Params kParams, bool kWide, int kQuads>
void gemv_tiles(const PackedMatrix& w, const LutActivations& a, int64_t tile_begin,
                int64_t tile_end, float* Y) {
  const PackedHeader& h = w.header();
  const int64_t quads = kQuads > 0 ? kQuads : a.quads_per_group;
  constexpr int P = kParams == Params::Hlq ? B + 1 : 2;
  const RatioCodebook cb(w);
  const __m512i low = _mm512_set1_epi8(0x0F);
  const __m512i ones = _mm512_set1_epi8(1);
  const __m512i pos = _mm512_set1_epi32(0x30201000);
  const __m512 one_half = _mm512_set1_ps(0.5f);
  const uint8_t* blob_end = w.data() + w.size_bytes();
  const int64_t block_bytes = h.block_bytes, n_groups = h.n_groups;
  // One group of one tile into y (the two 16-row halves).
  auto group = [&](const uint8_t* const blocks, [[maybe_unused]] const uint8_t* const ratio_codes,
                   int64_t g, __m512 (&y)[2]) __attribute__((always_inline)) {
    const uint8_t* blk = blocks + g * block_bytes;
    prefetch_weights(blk + kWeightPrefetchBytes, block_bytes, blob_end);
    const uint8_t* bits = blk + P * 64;  // (quads, B, 64)
    const int8_t* tab = a.tables + g * quads * a.quad_bytes;
    __m512i alo[B], ahi[B];
    [[maybe_unused]] __m512i hlo[B], hhi[B];  // kWide: sums of the high bytes
    for (int b = 0; b < B; ++b) alo[b] = ahi[b] = _mm512_setzero_si512();
    if constexpr (kWide)
      for (int b = 0; b < B; ++b) hlo[b] = hhi[b] = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int64_t q = 0; q < quads; ++q) {
      if constexpr (kWide) {
        const __m512i tl = _mm512_loadu_si512(tab + q * 128);
        const __m512i th = _mm512_loadu_si512(tab + q * 128 + 64);
        for (int b = 0; b < B; ++b) {
          const __m512i wv = _mm512_loadu_si512(bits + (q * B + b) * 64);
          const __m512i ilo = _mm512_ternarylogic_epi32(wv, low, pos, 0xEA);
          const __m512i ihi =
              _mm512_ternarylogic_epi32(_mm512_srli_epi16(wv, 4), low, pos, 0xEA);
          // Low bytes are unsigned: they go in vpdpbusd's unsigned operand.
          alo[b] = _mm512_dpbusd_epi32(alo[b], _mm512_permutexvar_epi8(ilo, tl), ones);
          ahi[b] = _mm512_dpbusd_epi32(ahi[b], _mm512_permutexvar_epi8(ihi, tl), ones);
          hlo[b] = _mm512_dpbusd_epi32(hlo[b], ones, _mm512_permutexvar_epi8(ilo, th));
          hhi[b] = _mm512_dpbusd_epi32(hhi[b], ones, _mm512_permutexvar_epi8(ihi, th));
        }
      } else {
        const __m512i tv = _mm512_loadu_si512(tab + q * 64);
        for (int b = 0; b < B; ++b) {
          const __m512i wv = _mm512_loadu_si512(bits + (q * B + b) * 64);
          const __m512i ilo = _mm512_ternarylogic_epi32(wv, low, pos, 0xEA);
          const __m512i ihi =
              _mm512_ternarylogic_epi32(_mm512_srli_epi16(wv, 4), low, pos, 0xEA);
          alo[b] = _mm512_dpbusd_epi32(alo[b], ones, _mm512_permutexvar_epi8(ilo, tv));
          ahi[b] = _mm512_dpbusd_epi32(ahi[b], ones, _mm512_permutexvar_epi8(ihi, tv));
        }
      }
    }
    if constexpr (kWide) {
      // (high << low_bits) + low (the shift is the two's-complement product)
      const __m128i shift = _mm_cvtsi32_si128(a.low_bits);
      for (int b = 0; b < B; ++b) {
        alo[b] = _mm512_add_epi32(alo[b], _mm512_sll_epi32(hlo[b], shift));
        ahi[b] = _mm512_add_epi32(ahi[b], _mm512_sll_epi32(hhi[b], shift));
      }
    }
    const __m256i* p = reinterpret_cast<const __m256i*>(blk);  // (P, 32) fp16 = (P, 2) x 16
    const __m512 sh = _mm512_set1_ps(a.scale_half[g]);
    const __m512 sx = _mm512_set1_ps(a.sum_x[g]);
    // HLQC: each plane's 32 ratio codes (a nibble per row) widened once for both halves.
    [[maybe_unused]] __m512i rk[B > 1 ? B - 1 : 1];
    if constexpr (kParams == Params::Hlqc)
      for (int b = 1; b < B; ++b)
        rk[b - 1] = _mm512_cvtepu8_epi32(_mm_loadu_si128(
            reinterpret_cast<const __m128i*>(ratio_codes + (g * (B - 1) + b - 1) * 16)));
    for (int part = 0; part < 2; ++part) {
      __m512 s[B];
      __m512 z;
      if constexpr (kParams == Params::Uniform) {
        const __m512 scale = _mm512_cvtph_ps(_mm256_loadu_si256(p + part));
        z = _mm512_cvtph_ps(_mm256_loadu_si256(p + 2 + part));
        for (int b = 0; b < B; ++b) s[b] = _mm512_mul_ps(scale, _mm512_set1_ps(float(1 << b)));
      } else if constexpr (kParams == Params::Hlqc) {
        const __m512 scale = _mm512_cvtph_ps(_mm256_loadu_si256(p + part));
        z = _mm512_cvtph_ps(_mm256_loadu_si256(p + 2 + part));
        s[0] = scale;
        for (int b = 1; b < B; ++b) {  // vpermps reads the low 4 bits: rows 0-15 need no mask
          const __m512i k = part ? _mm512_srli_epi32(rk[b - 1], 4) : rk[b - 1];
          s[b] = _mm512_mul_ps(scale, _mm512_permutexvar_ps(k, cb.v[b - 1]));
        }
      } else {
        for (int b = 0; b < B; ++b) s[b] = _mm512_cvtph_ps(_mm256_loadu_si256(p + 2 * b + part));
        z = _mm512_cvtph_ps(_mm256_loadu_si256(p + 2 * B + part));
      }
      __m512 gacc = _mm512_setzero_ps();
      for (int b = 0; b < B; ++b) {
        if constexpr (kParams != Params::Hlqc) z = _mm512_fmadd_ps(one_half, s[b], z);  // z'
        gacc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(part ? ahi[b] : alo[b]), s[b], gacc);
      }
      y[part] = _mm512_fmadd_ps(z, sx, _mm512_fmadd_ps(gacc, sh, y[part]));
    }
  };
  auto store = [&](int64_t tile, const __m512 (&y)[2]) {
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
  };
  // kGemvStreams tiles at a time (lut_isa.h; 7B hlq-w3g128 decode on 2 threads, alternating
  // rounds: 75-79% of the roofline with 2 or 4 streams against 68-76% with one; 4 kept, 77-79% in
  // six more rounds). Each tile's outputs and float order are unchanged.
  const int64_t steps = gemv_stream_steps(tile_begin, tile_end);
  for (int64_t i = 0; i < steps; ++i) {
    int64_t tiles[kGemvStreams];
    const int streams = gemv_stream_tiles(tile_begin, tile_end, i, tiles);
    __m512 y[kGemvStreams][2];
    const uint8_t* blocks[kGemvStreams];
    const uint8_t* rc[kGemvStreams];
    for (int k = 0; k < streams; ++k) {
      y[k][0] = y[k][1] = _mm512_setzero_ps();
      blocks[k] = w.block(tiles[k], 0);
      rc[k] = kParams == Params::Hlqc ? w.ratio_codes(tiles[k], 0) : nullptr;
    }
    if (streams == kGemvStreams) {  // the common case, with a fixed trip count
      for (int64_t g = 0; g < n_groups; ++g)
        for (int k = 0; k < kGemvStreams; ++k) group(blocks[k], rc[k], g, y[k]);
    } else {
      for (int64_t g = 0; g < n_groups; ++g)
        for (int k = 0; k < streams; ++k) group(blocks[k], rc[k], g, y[k]);
    }
    for (int k = 0; k < streams; ++k) store(tiles[k], y[k]);
  }
}

using TilesFn = void (*)(const PackedMatrix&, const LutActivations&, int64_t, int64_t, float*);

template <Params kParams, bool kWide, int kQuads>
TilesFn gemv_for_bits(int bits) {
  switch (bits) {
    case 1: return gemv_tiles<1, kParams, kWide, kQuads>;
    case 2: return gemv_tiles<2, kParams, kWide, kQuads>;
    case 3: return gemv_tiles<3, kParams, kWide, kQuads>;
    default: return gemv_tiles<4, kParams, kWide, kQuads>;
  }
}

template <bool kWide, int kQuads>
TilesFn gemv_for_quads(const PackedHeader& h) {
  switch (QuantKind(h.kind)) {
    case QuantKind::Uniform: return gemv_for_bits<Params::Uniform, kWide, kQuads>(h.bits);
    case QuantKind::HLQC: return gemv_for_bits<Params::Hlqc, kWide, kQuads>(h.bits);
    default: return gemv_for_bits<Params::Hlq, kWide, kQuads>(h.bits);
  }
}

template <bool kWide>
TilesFn gemv_for(const PackedHeader& h) {
  switch (h.group_padded / kLutQuadCols) {
    case 2: return gemv_for_quads<kWide, 2>(h);
    case 4: return gemv_for_quads<kWide, 4>(h);
    case 8: return gemv_for_quads<kWide, 8>(h);
    default: return gemv_for_quads<kWide, 0>(h);
  }
}

void matmul_tiles_avx512(const PackedMatrix& w, const LutActivations& a, int64_t tile_begin,
                         int64_t tile_end, float* Y) {
  if (a.n == 1) {
    return (a.wide ? gemv_for<true>(w.header()) : gemv_for<false>(w.header()))(w, a, tile_begin,
                                                                                tile_end, Y);
  }
  if (a.wide) return gemm_tiles<true>(w, a, tile_begin, tile_end, Y);
  gemm_tiles<false>(w, a, tile_begin, tile_end, Y);
}

}  // namespace

const LutIsaKernels& lut_kernels_avx512() {
  static const LutIsaKernels k = {build_tables_avx512, build_tables_wide_avx512,
                                  matmul_tiles_avx512};
  return k;
}

}  // namespace elutq
