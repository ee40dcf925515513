// Dequantization of the GGML block types to fp32, written from the public GGUF/GGML format
// description. Each type is one row of a trait table: its block struct (size static_assert'd
// against the specification) and a function that expands one block. Arithmetic is done in fp32 in
// the order the reference (the `gguf` Python package) uses, so results match it bit for bit.
// The IQ types' fixed codebooks (grids, sign patterns, levels) are in gguf_iq_tables.h.
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/fp16.h"
#include "format/dequant.h"
#include "format/gguf_iq_tables.h"
#include "tensor/quantized_matrix_codec.h"
#include "tensor/tensor_info.h"

namespace elutq {
namespace {

using f16 = uint16_t;  // raw IEEE half, converted with fp16_to_f32

// ---- block structs (all fields little-endian, packed as in the file) ------------------------

struct BlockQ4_0 {  // 32 weights: w = d * (q - 8), q 4-bit; low nibbles first half, high second
  f16 d;
  uint8_t qs[16];
};
struct BlockQ4_1 {  // 32 weights: w = d * q + m
  f16 d, m;
  uint8_t qs[16];
};
struct BlockQ5_0 {  // 32 weights: w = d * (q - 16), q = nibble | fifth bit from qh
  f16 d;
  uint8_t qh[4];
  uint8_t qs[16];
};
struct BlockQ5_1 {  // 32 weights: w = d * q + m
  f16 d, m;
  uint8_t qh[4];
  uint8_t qs[16];
};
struct BlockQ8_0 {  // 32 weights: w = d * q, q int8
  f16 d;
  int8_t qs[32];
};
struct BlockQ2_K {  // 256 weights in 16 groups of 16: w = d*sc*q - dmin*m, q 2-bit
  uint8_t scales[16];  // low nibble: scale, high nibble: min
  uint8_t qs[64];
  f16 d, dmin;
};
struct BlockQ3_K {  // 256 weights in 16 groups of 16: w = d*(sc-32)*(q-4*(!hbit)), 6-bit scales
  uint8_t hmask[32];
  uint8_t qs[64];
  uint8_t scales[12];
  f16 d;
};
struct BlockQ4_K {  // 256 weights in 8 groups of 32: w = d*sc*q - dmin*m, 6-bit sc and m
  f16 d, dmin;
  uint8_t scales[12];
  uint8_t qs[128];
};
struct BlockQ5_K {  // as Q4_K with a fifth bit per weight in qh
  f16 d, dmin;
  uint8_t scales[12];
  uint8_t qh[32];
  uint8_t qs[128];
};
struct BlockQ6_K {  // 256 weights in 16 groups of 16: w = d*sc*(q-32), q 6-bit, sc int8
  uint8_t ql[128];
  uint8_t qh[64];
  int8_t scales[16];
  f16 d;
};
struct BlockQ8_K {  // 256 weights: w = d * q, q int8 (bsums, sums of 16 q's, are not needed)
  float d;
  int8_t qs[256];
  int16_t bsums[16];
};

// The IQ types. A grid index stands for 8 (IQ2, IQ1) or 4 (IQ3) weights at once: a row of the
// type's codebook in gguf_iq_tables.h. IQ2/IQ3 rows are magnitudes; each weight's sign comes from
// a sign byte (bit j set: weight j negative), stored directly or as 7 bits through kSigns.

// 256 weights in 8 groups of 32. Per group two little-endian u32: the first holds 4 grid indices
// (a byte each); the second 4 sign indices (bits 0, 7, 14, 21) and a 4-bit scale s (bits 28..31).
// w = d * (0.5 + s) * 0.25 * grid * sign.
struct BlockIQ2_XXS {
  f16 d;
  uint8_t qs[64];
};
// 256 weights in 32 groups of 8: qs[g] = grid index (9 bits) | sign index << 9; a 4-bit scale per
// 16 weights (low nibble first). w = d * (0.5 + s) * 0.25 * grid * sign.
struct BlockIQ2_XS {
  f16 d;
  uint16_t qs[32];
  uint8_t scales[8];
};
// 256 weights in 32 groups of 8: a 10-bit grid index (low 8 bits in qs, high 2 in qh, 4 groups a
// byte), a sign byte per group, scales as IQ2_XS.
struct BlockIQ2_S {
  f16 d;
  uint8_t qs[32];
  uint8_t signs[32];
  uint8_t qh[8];
  uint8_t scales[8];
};
// 256 weights in 8 groups of 32: a grid index per 4 weights in qs; per group a little-endian u32
// of sign indices and scale as IQ2_XXS. w = d * (0.5 + s) * 0.5 * grid * sign.
struct BlockIQ3_XXS {
  f16 d;
  uint8_t qs[64];
  uint8_t scales_signs[32];
};
// 256 weights in 8 groups of 32: a 9-bit grid index per 4 weights (8 bits in qs, the 9th in qh),
// a sign bit per weight, a 4-bit scale s per group (low nibble first). w = d * (1 + 2s) * grid *
// sign.
struct BlockIQ3_S {
  f16 d;
  uint8_t qs[64];
  uint8_t qh[8];
  uint8_t signs[32];
  uint8_t scales[4];
};
// 256 weights in 8 groups of 32; qh[i] of group i holds the 3 high grid-index bits of each 8
// weights (bits 0, 3, 6, 9), a 3-bit scale s (bit 12) and the sign of delta (bit 15).
// w = d * (2s + 1) * (grid + delta), grid values in {-1, 0, 1}.
struct BlockIQ1_S {
  f16 d;
  uint8_t qs[32];
  uint16_t qh[8];
};
// 256 weights: an 11-bit grid index per 8 weights (the high 3 bits and delta's sign in a nibble of
// qh, low nibble first); a 3-bit scale s per 16 weights (four per u16 of scales, at bits 0, 3, 6,
// 9). The fp16 d is the top nibbles of the four u16s, first lowest.
// w = d * (2s + 1) * (grid + delta).
struct BlockIQ1_M {
  uint8_t qs[32];
  uint8_t qh[16];
  uint16_t scales[4];
};
// 32 weights: w = d * kIq4nlValues[q], q 4-bit in Q4_0's order (low nibbles first).
struct BlockIQ4_NL {
  f16 d;
  uint8_t qs[16];
};
// 256 weights in 8 groups of 32, each like an IQ4_NL block whose scale is d * (sc - 32), sc 6-bit
// (low 4 bits in scales_l, low nibble first; high 2 in scales_h, 2 bits a group).
struct BlockIQ4_XS {
  f16 d;
  uint16_t scales_h;
  uint8_t scales_l[4];
  uint8_t qs[128];
};
// 256 ternary weights t in {0, 1, 2}, packed base 3: 5 per byte in qs, 4 per byte in qh.
// w = d * (t - 1).
struct BlockTQ1_0 {
  uint8_t qs[48];
  uint8_t qh[4];
  f16 d;
};
// 256 ternary weights, 2 bits each: w = d * (q - 1).
struct BlockTQ2_0 {
  uint8_t qs[64];
  f16 d;
};
// 32 weights: w = 2^(e - 127) * an FP4 (E2M1) value; e is an 8-bit exponent (E8M0), the values
// 4-bit in Q4_0's order.
struct BlockMXFP4 {
  uint8_t e;
  uint8_t qs[16];
};
// 64 weights in 4 groups of 16: w = scale * an FP4 (E2M1) value, the scales unsigned E4M3; group
// g's values are qs[8g .. 8g+7], low nibbles first.
struct BlockNVFP4 {
  uint8_t scales[4];
  uint8_t qs[32];
};
static_assert(sizeof(BlockQ8_K) == 292);
static_assert(sizeof(BlockIQ2_XXS) == 66 && sizeof(BlockIQ2_XS) == 74 && sizeof(BlockIQ2_S) == 82 &&
              sizeof(BlockIQ3_XXS) == 98 && sizeof(BlockIQ3_S) == 110 && sizeof(BlockIQ1_S) == 50 &&
              sizeof(BlockIQ1_M) == 56 && sizeof(BlockIQ4_NL) == 18 && sizeof(BlockIQ4_XS) == 136);
static_assert(sizeof(BlockTQ1_0) == 54 && sizeof(BlockTQ2_0) == 66 && sizeof(BlockMXFP4) == 17 &&
              sizeof(BlockNVFP4) == 36);
static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22 &&
              sizeof(BlockQ5_1) == 24 && sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144 &&
              sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210);

// Blocks in the file are not aligned to their struct's alignment; copy each one out first.
template <typename B>
B load(const uint8_t* p) {
  B b;
  std::memcpy(&b, p, sizeof(B));
  return b;
}

float h(f16 x) { return fp16_to_f32(x); }

// ---- one function per type: expands n_blocks consecutive blocks --------------------------------

void deq_f32(const uint8_t* src, int64_t n, float* y) { std::memcpy(y, src, n * 4); }

void deq_f16(const uint8_t* src, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t v;
    std::memcpy(&v, src + 2 * i, 2);
    y[i] = fp16_to_f32(v);
  }
}

void deq_bf16(const uint8_t* src, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t v;
    std::memcpy(&v, src + 2 * i, 2);
    y[i] = bf16_to_f32(v);
  }
}

void deq_q4_0(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const auto b = load<BlockQ4_0>(src + i * sizeof(BlockQ4_0));
    const float d = h(b.d);
    for (int j = 0; j < 16; ++j) {
      y[j] = static_cast<float>((b.qs[j] & 0xF) - 8) * d;
      y[j + 16] = static_cast<float>((b.qs[j] >> 4) - 8) * d;
    }
  }
}

void deq_q4_1(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const auto b = load<BlockQ4_1>(src + i * sizeof(BlockQ4_1));
    const float d = h(b.d), m = h(b.m);
    for (int j = 0; j < 16; ++j) {
      y[j] = d * static_cast<float>(b.qs[j] & 0xF) + m;
      y[j + 16] = d * static_cast<float>(b.qs[j] >> 4) + m;
    }
  }
}

// Fifth bits of a Q5 block: bit j of qh (as a little-endian u32) belongs to weight j.
uint32_t q5_high(const uint8_t qh[4]) {
  return uint32_t{qh[0]} | uint32_t{qh[1]} << 8 | uint32_t{qh[2]} << 16 | uint32_t{qh[3]} << 24;
}

void deq_q5_0(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const auto b = load<BlockQ5_0>(src + i * sizeof(BlockQ5_0));
    const float d = h(b.d);
    const uint32_t qh = q5_high(b.qh);
    for (int j = 0; j < 16; ++j) {
      const int lo = (b.qs[j] & 0xF) | (((qh >> j) & 1) << 4);
      const int hi = (b.qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
      y[j] = static_cast<float>(lo - 16) * d;
      y[j + 16] = static_cast<float>(hi - 16) * d;
    }
  }
}

void deq_q5_1(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const auto b = load<BlockQ5_1>(src + i * sizeof(BlockQ5_1));
    const float d = h(b.d), m = h(b.m);
    const uint32_t qh = q5_high(b.qh);
    for (int j = 0; j < 16; ++j) {
      const int lo = (b.qs[j] & 0xF) | (((qh >> j) & 1) << 4);
      const int hi = (b.qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
      y[j] = d * static_cast<float>(lo) + m;
      y[j + 16] = d * static_cast<float>(hi) + m;
    }
  }
}

void deq_q8_0(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const auto b = load<BlockQ8_0>(src + i * sizeof(BlockQ8_0));
    const float d = h(b.d);
    for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(b.qs[j]);
  }
}

void deq_q2_k(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = load<BlockQ2_K>(src + i * sizeof(BlockQ2_K));
    const float d = h(b.d), dmin = h(b.dmin);
    // Weight 128*half + 32*k + l (k = 0..3, l = 0..31) is bits 2k..2k+1 of qs[32*half + l];
    // its group of 16 is 8*half + 2*k + l/16.
    for (int half = 0; half < 2; ++half) {
      const uint8_t* q = b.qs + 32 * half;
      for (int k = 0; k < 4; ++k) {
        for (int g = 0; g < 2; ++g) {
          const uint8_t sc = b.scales[8 * half + 2 * k + g];
          const float dl = d * static_cast<float>(sc & 0xF);
          const float ml = dmin * static_cast<float>(sc >> 4);
          for (int l = 16 * g; l < 16 * g + 16; ++l)
            *y++ = dl * static_cast<float>((q[l] >> (2 * k)) & 3) - ml;
        }
      }
    }
  }
}

// Q3_K's 16 six-bit scales packed in 12 bytes: low 4 bits of scale s in byte s (s < 8, low nibble)
// or byte s-8 (high nibble); high 2 bits in byte 8 + s%4 at bit 2*(s/4).
void q3k_scales(const uint8_t sc[12], int out[16]) {
  for (int s = 0; s < 16; ++s) {
    const int lo = s < 8 ? (sc[s] & 0xF) : (sc[s - 8] >> 4);
    const int hi = (sc[8 + s % 4] >> (2 * (s / 4))) & 3;
    out[s] = (lo | hi << 4) - 32;
  }
}

void deq_q3_k(const uint8_t* src, int64_t nb, float* y) {
  int scales[16];
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = load<BlockQ3_K>(src + i * sizeof(BlockQ3_K));
    const float d = h(b.d);
    q3k_scales(b.scales, scales);
    // Same bit placement as Q2_K; the third bit of weight 128*half + 32*k + l is bit 4*half + k
    // of hmask[l], and a clear bit subtracts 4.
    for (int half = 0; half < 2; ++half) {
      const uint8_t* q = b.qs + 32 * half;
      for (int k = 0; k < 4; ++k) {
        const int hbit = 4 * half + k;
        for (int g = 0; g < 2; ++g) {
          const float dl = d * static_cast<float>(scales[8 * half + 2 * k + g]);
          for (int l = 16 * g; l < 16 * g + 16; ++l) {
            const int v = ((q[l] >> (2 * k)) & 3) - (((b.hmask[l] >> hbit) & 1) ? 0 : 4);
            *y++ = dl * static_cast<float>(v);
          }
        }
      }
    }
  }
}

// Q4_K/Q5_K's 8 six-bit scales and mins packed in 12 bytes.
void k4_scale_min(int j, const uint8_t q[12], int* sc, int* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

void deq_q4_k(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = load<BlockQ4_K>(src + i * sizeof(BlockQ4_K));
    const float d = h(b.d), dmin = h(b.dmin);
    // Groups 2p and 2p+1 are the low and high nibbles of qs[32p .. 32p+31].
    for (int p = 0; p < 4; ++p) {
      const uint8_t* q = b.qs + 32 * p;
      for (int g = 0; g < 2; ++g) {
        int sc, m;
        k4_scale_min(2 * p + g, b.scales, &sc, &m);
        const float dl = d * static_cast<float>(sc), ml = dmin * static_cast<float>(m);
        for (int l = 0; l < 32; ++l)
          *y++ = dl * static_cast<float>(g ? q[l] >> 4 : q[l] & 0xF) - ml;
      }
    }
  }
}

void deq_q5_k(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = load<BlockQ5_K>(src + i * sizeof(BlockQ5_K));
    const float d = h(b.d), dmin = h(b.dmin);
    // As Q4_K; the fifth bit of weight l of group j is bit j of qh[l].
    for (int p = 0; p < 4; ++p) {
      const uint8_t* q = b.qs + 32 * p;
      for (int g = 0; g < 2; ++g) {
        const int j = 2 * p + g;
        int sc, m;
        k4_scale_min(j, b.scales, &sc, &m);
        const float dl = d * static_cast<float>(sc), ml = dmin * static_cast<float>(m);
        for (int l = 0; l < 32; ++l) {
          const int v = (g ? q[l] >> 4 : q[l] & 0xF) | (((b.qh[l] >> j) & 1) << 4);
          *y++ = dl * static_cast<float>(v) - ml;
        }
      }
    }
  }
}

void deq_q6_k(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i, y += 256) {
    const auto b = load<BlockQ6_K>(src + i * sizeof(BlockQ6_K));
    const float d = h(b.d);
    // Each half of 128 weights uses ql[64*half ..], qh[32*half ..] and scales[8*half ..]:
    // weight 32*k + l (k = 0..3) takes its low nibble from ql[l + 32*(k&1)] (high nibble for
    // k >= 2) and its top two bits from bits 2k..2k+1 of qh[l]; its scale is 2k + l/16.
    for (int half = 0; half < 2; ++half) {
      const uint8_t* ql = b.ql + 64 * half;
      const uint8_t* qh = b.qh + 32 * half;
      const int8_t* sc = b.scales + 8 * half;
      float* yh = y + 128 * half;
      for (int k = 0; k < 4; ++k) {
        for (int l = 0; l < 32; ++l) {
          const uint8_t lowbyte = ql[l + 32 * (k & 1)];
          const int lo = k < 2 ? (lowbyte & 0xF) : (lowbyte >> 4);
          const int q = (lo | (((qh[l] >> (2 * k)) & 3) << 4)) - 32;
          yh[32 * k + l] = d * static_cast<float>(sc[2 * k + l / 16]) * static_cast<float>(q);
        }
      }
    }
  }
}

void deq_q8_k(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i, y += 256) {
    const auto b = load<BlockQ8_K>(src + i * sizeof(BlockQ8_K));
    for (int j = 0; j < 256; ++j) y[j] = b.d * static_cast<float>(b.qs[j]);
  }
}

// ---- IQ types: codebook rows times scales, signed ----------------------------------------------

uint32_t le32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

// v with the sign of weight j of a sign byte (bit j set: negative); the same as v * -1.0f.
float with_sign(float v, uint8_t signs, int j) { return (signs >> j) & 1 ? -v : v; }

// Scale s of an IQ2_XS/IQ2_S block (4-bit, low nibble first) as d * (0.5 + s) * 0.25.
float iq2_scale(float d, const uint8_t* scales, int s) {
  const int nibble = (scales[s / 2] >> (4 * (s % 2))) & 0xF;
  return d * (0.5f + static_cast<float>(nibble)) * 0.25f;
}

void deq_iq2_xxs(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = load<BlockIQ2_XXS>(src + i * sizeof(BlockIQ2_XXS));
    const float d = h(b.d);
    for (int g = 0; g < 8; ++g) {  // 32 weights
      const uint32_t grid_idx = le32(b.qs + 8 * g), aux = le32(b.qs + 8 * g + 4);
      const float db = d * (0.5f + static_cast<float>(aux >> 28)) * 0.25f;
      for (int k = 0; k < 4; ++k) {  // 8 weights
        const uint8_t* grid = gguf_iq::kIq2xxsGrid[(grid_idx >> (8 * k)) & 0xFF];
        const uint8_t signs = gguf_iq::kSigns[(aux >> (7 * k)) & 127];
        for (int j = 0; j < 8; ++j) *y++ = with_sign(db * static_cast<float>(grid[j]), signs, j);
      }
    }
  }
}

void deq_iq2_xs(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = load<BlockIQ2_XS>(src + i * sizeof(BlockIQ2_XS));
    const float d = h(b.d);
    for (int g = 0; g < 32; ++g) {  // 8 weights; scales cover 16
      const float db = iq2_scale(d, b.scales, g / 2);
      const uint8_t* grid = gguf_iq::kIq2xsGrid[b.qs[g] & 511];
      const uint8_t signs = gguf_iq::kSigns[b.qs[g] >> 9];
      for (int j = 0; j < 8; ++j) *y++ = with_sign(db * static_cast<float>(grid[j]), signs, j);
    }
  }
}

void deq_iq2_s(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = load<BlockIQ2_S>(src + i * sizeof(BlockIQ2_S));
    const float d = h(b.d);
    for (int g = 0; g < 32; ++g) {  // 8 weights; scales cover 16
      const float db = iq2_scale(d, b.scales, g / 2);
      const int idx = b.qs[g] | ((b.qh[g / 4] >> (2 * (g % 4))) & 3) << 8;
      const uint8_t* grid = gguf_iq::kIq2sGrid[idx];
      for (int j = 0; j < 8; ++j) *y++ = with_sign(db * static_cast<float>(grid[j]), b.signs[g], j);
    }
  }
}

void deq_iq3_xxs(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = load<BlockIQ3_XXS>(src + i * sizeof(BlockIQ3_XXS));
    const float d = h(b.d);
    for (int g = 0; g < 8; ++g) {  // 32 weights
      const uint32_t aux = le32(b.scales_signs + 4 * g);
      const float db = d * (0.5f + static_cast<float>(aux >> 28)) * 0.5f;
      for (int k = 0; k < 4; ++k) {  // 8 weights: two grid rows of 4
        const uint8_t signs = gguf_iq::kSigns[(aux >> (7 * k)) & 127];
        const uint8_t* qs = b.qs + 8 * g + 2 * k;
        for (int j = 0; j < 8; ++j) {
          const uint8_t v = gguf_iq::kIq3xxsGrid[qs[j / 4]][j % 4];
          *y++ = with_sign(db * static_cast<float>(v), signs, j);
        }
      }
    }
  }
}

void deq_iq3_s(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = load<BlockIQ3_S>(src + i * sizeof(BlockIQ3_S));
    const float d = h(b.d);
    for (int g = 0; g < 8; ++g) {  // 32 weights: 8 grid rows of 4
      const int s = (b.scales[g / 2] >> (4 * (g % 2))) & 0xF;
      const float db = d * static_cast<float>(1 + 2 * s);
      for (int r = 0; r < 8; ++r) {
        const int m = 8 * g + r;
        const uint8_t* grid = gguf_iq::kIq3sGrid[b.qs[m] | ((b.qh[g] >> r) & 1) << 8];
        for (int j = 0; j < 4; ++j) {
          const int w = 4 * m + j;  // weight within the block
          *y++ = with_sign(db * static_cast<float>(grid[j]), b.signs[w / 8], w % 8);
        }
      }
    }
  }
}

void deq_iq1_s(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = load<BlockIQ1_S>(src + i * sizeof(BlockIQ1_S));
    const float d = h(b.d);
    for (int g = 0; g < 8; ++g) {  // 32 weights
      const uint16_t q = b.qh[g];
      const float dl = d * static_cast<float>(2 * ((q >> 12) & 7) + 1);
      const float delta = (q & 0x8000) ? -gguf_iq::kIq1Delta : gguf_iq::kIq1Delta;
      for (int k = 0; k < 4; ++k) {  // 8 weights
        const int8_t* grid = gguf_iq::kIq1sGrid[b.qs[4 * g + k] | ((q >> (3 * k)) & 7) << 8];
        for (int j = 0; j < 8; ++j) *y++ = dl * (static_cast<float>(grid[j]) + delta);
      }
    }
  }
}

void deq_iq1_m(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = load<BlockIQ1_M>(src + i * sizeof(BlockIQ1_M));
    const uint16_t* sc = b.scales;
    const float d = h(static_cast<f16>((sc[0] >> 12) | ((sc[1] >> 8) & 0x00F0) |
                                       ((sc[2] >> 4) & 0x0F00) | (sc[3] & 0xF000)));
    for (int g = 0; g < 32; ++g) {  // 8 weights; scales cover 16
      const int s = (sc[g / 8] >> (3 * ((g / 2) % 4))) & 7;
      const float dl = d * static_cast<float>(2 * s + 1);
      const int nibble = (b.qh[g / 2] >> (4 * (g % 2))) & 0xF;
      const float delta = (nibble & 8) ? -gguf_iq::kIq1Delta : gguf_iq::kIq1Delta;
      const int8_t* grid = gguf_iq::kIq1sGrid[b.qs[g] | (nibble & 7) << 8];
      for (int j = 0; j < 8; ++j) *y++ = dl * (static_cast<float>(grid[j]) + delta);
    }
  }
}

// 16 bytes of 4-bit indices into a 16-entry table, low nibbles first, times d.
void nibbles_times(float d, const uint8_t qs[16], const int8_t table[16], float* y) {
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>(table[qs[j] & 0xF]);
    y[j + 16] = d * static_cast<float>(table[qs[j] >> 4]);
  }
}

void deq_iq4_nl(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const auto b = load<BlockIQ4_NL>(src + i * sizeof(BlockIQ4_NL));
    nibbles_times(h(b.d), b.qs, gguf_iq::kIq4nlValues, y);
  }
}

void deq_iq4_xs(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = load<BlockIQ4_XS>(src + i * sizeof(BlockIQ4_XS));
    const float d = h(b.d);
    for (int g = 0; g < 8; ++g, y += 32) {
      const int lo = (b.scales_l[g / 2] >> (4 * (g % 2))) & 0xF;
      const int hi = (b.scales_h >> (2 * g)) & 3;
      nibbles_times(d * static_cast<float>((lo | hi << 4) - 32), b.qs + 16 * g,
                    gguf_iq::kIq4nlValues, y);
    }
  }
}

// ---- ternary and FP4 types ----------------------------------------------------------------------

// Digit t in {0, 1, 2} of a TQ1_0 byte: multiplying by 3^p (mod 256) moves digit p to the top, and
// the top digit of a byte b is (3 * b) >> 8.
int tq1_digit(uint8_t packed, int p) {
  static constexpr uint8_t kPow3[5] = {1, 3, 9, 27, 81};
  const uint8_t b = static_cast<uint8_t>(packed * kPow3[p]);
  return (3 * b) >> 8;
}

void deq_tq1_0(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i, y += 256) {
    const auto b = load<BlockTQ1_0>(src + i * sizeof(BlockTQ1_0));
    const float d = h(b.d);
    // Weights 0..159: digit p of qs[l] is weight 32p + l; 160..239: digit p of qs[32 + l] is
    // 160 + 16p + l; 240..255: digit p of qh[l] is 240 + 4p + l.
    for (int p = 0; p < 5; ++p)
      for (int l = 0; l < 32; ++l)
        y[32 * p + l] = d * static_cast<float>(tq1_digit(b.qs[l], p) - 1);
    for (int p = 0; p < 5; ++p)
      for (int l = 0; l < 16; ++l)
        y[160 + 16 * p + l] = d * static_cast<float>(tq1_digit(b.qs[32 + l], p) - 1);
    for (int p = 0; p < 4; ++p)
      for (int l = 0; l < 4; ++l)
        y[240 + 4 * p + l] = d * static_cast<float>(tq1_digit(b.qh[l], p) - 1);
  }
}

void deq_tq2_0(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = load<BlockTQ2_0>(src + i * sizeof(BlockTQ2_0));
    const float d = h(b.d);
    // Weight 128c + 32k + l is bits 2k..2k+1 of qs[32c + l].
    for (int c = 0; c < 2; ++c)
      for (int k = 0; k < 4; ++k)
        for (int l = 0; l < 32; ++l)
          *y++ = d * static_cast<float>(((b.qs[32 * c + l] >> (2 * k)) & 3) - 1);
  }
}

// Half of 2^(e - 127) (the FP4 table is doubled), including e = 0 and 1, which are subnormal.
float e8m0_half(uint8_t e) {
  const uint32_t bits = e < 2 ? uint32_t{0x00200000} << e : uint32_t(e - 1) << 23;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

void deq_mxfp4(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const auto b = load<BlockMXFP4>(src + i * sizeof(BlockMXFP4));
    nibbles_times(e8m0_half(b.e), b.qs, gguf_iq::kFp4Values, y);
  }
}

// Half of an unsigned E4M3 scale (4 exponent bits, bias 7, 3 mantissa bits); 0 and 0x7F read 0.
float ue4m3_half(uint8_t x) {
  if (x == 0 || x == 0x7F) return 0.0f;
  const int exp = (x >> 3) & 0xF, man = x & 7;
  const float v = exp == 0 ? std::ldexp(static_cast<float>(man), -9)
                           : std::ldexp(1.0f + static_cast<float>(man) / 8.0f, exp - 7);
  return v * 0.5f;
}

void deq_nvfp4(const uint8_t* src, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i) {
    const auto b = load<BlockNVFP4>(src + i * sizeof(BlockNVFP4));
    for (int g = 0; g < 4; ++g, y += 16) {
      const float d = ue4m3_half(b.scales[g]);
      for (int j = 0; j < 8; ++j) {
        y[j] = d * static_cast<float>(gguf_iq::kFp4Values[b.qs[8 * g + j] & 0xF]);
        y[j + 8] = d * static_cast<float>(gguf_iq::kFp4Values[b.qs[8 * g + j] >> 4]);
      }
    }
  }
}

// ---- the trait table ----------------------------------------------------------------------------

struct DequantRow {
  DType type;
  void (*to_f32)(const uint8_t* src, int64_t n_blocks, float* dst);
};

constexpr DequantRow kDequant[] = {
    {DType::F32, deq_f32},       {DType::F16, deq_f16},       {DType::BF16, deq_bf16},
    {DType::Q4_0, deq_q4_0},     {DType::Q4_1, deq_q4_1},     {DType::Q5_0, deq_q5_0},
    {DType::Q5_1, deq_q5_1},     {DType::Q8_0, deq_q8_0},     {DType::Q2_K, deq_q2_k},
    {DType::Q3_K, deq_q3_k},     {DType::Q4_K, deq_q4_k},     {DType::Q5_K, deq_q5_k},
    {DType::Q6_K, deq_q6_k},     {DType::Q8_K, deq_q8_k},     {DType::IQ2_XXS, deq_iq2_xxs},
    {DType::IQ2_XS, deq_iq2_xs}, {DType::IQ2_S, deq_iq2_s},   {DType::IQ3_XXS, deq_iq3_xxs},
    {DType::IQ3_S, deq_iq3_s},   {DType::IQ1_S, deq_iq1_s},   {DType::IQ1_M, deq_iq1_m},
    {DType::IQ4_NL, deq_iq4_nl}, {DType::IQ4_XS, deq_iq4_xs}, {DType::TQ1_0, deq_tq1_0},
    {DType::TQ2_0, deq_tq2_0},   {DType::MXFP4, deq_mxfp4},   {DType::NVFP4, deq_nvfp4},
};

const DequantRow& dequant_row(const TensorInfo& t) {
  for (const auto& r : kDequant)
    if (r.type == t.dtype) return r;
  fail("tensor '", t.name, "' has type ", dtype_name(t.dtype),
       ", which cannot be converted to fp32");
}

}  // namespace

void tensor_rows_to_f32(const TensorInfo& t, int64_t row_begin, int64_t row_end, float* dst) {
  if (t.dtype == DType::ELUTQ) {  // our quantized blobs carry their own format
    try {
      quantized_blob_rows_to_f32(t.data, t.nbytes, row_begin, row_end, dst);
    } catch (const Error& e) {
      fail("tensor '", t.name, "': ", e.what());
    }
    return;
  }
  const DequantRow& r = dequant_row(t);
  const int64_t cols = t.cols(), rows = t.rows();
  require(row_begin >= 0 && row_begin <= row_end && row_end <= rows, "tensor '", t.name,
          "': rows [", row_begin, ", ", row_end, ") are outside its ", rows, " rows");
  const uint64_t row_bytes = dtype_row_bytes(t.dtype, cols);
  require(t.data != nullptr && t.nbytes >= row_bytes * static_cast<uint64_t>(rows), "tensor '",
          t.name, "' holds ", t.nbytes, " bytes, less than its shape needs");
  const int64_t blocks = cols / dtype_block_elems(t.dtype);
  for (int64_t i = row_begin; i < row_end; ++i)
    r.to_f32(t.data + static_cast<uint64_t>(i) * row_bytes, blocks, dst + (i - row_begin) * cols);
}

void tensor_to_f32(const TensorInfo& t, float* dst) { tensor_rows_to_f32(t, 0, t.rows(), dst); }

}  // namespace elutq
