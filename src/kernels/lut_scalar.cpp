// The plain scalar reference of the LUT kernels: the specification every SIMD path must match
// bit for bit (same integer sums, same fma order).
#include <cmath>
#include <vector>

#include "core/fp16.h"
#include "kernels/lut_isa.h"

namespace elutq {
namespace {

void build_tables_scalar(const float* xpad, const float* inv_scale, int64_t n_groups,
                         int64_t chunks_per_group, int8_t* tables) {
  for (int64_t g = 0; g < n_groups; ++g) {
    const float inv = inv_scale[g];
    for (int64_t c = 0; c < chunks_per_group; ++c) {
      const float* x = xpad + (g * chunks_per_group + c) * 4;  // (4)
      int8_t* t = tables + (g * chunks_per_group + c) * 16;   // (16)
      for (int p = 0; p < 16; ++p) {
        float v = (p & 1) ? x[0] : -x[0];
        v = v + ((p & 2) ? x[1] : -x[1]);
        v = v + ((p & 4) ? x[2] : -x[2]);
        v = v + ((p & 8) ? x[3] : -x[3]);
        t[p] = int8_t(std::nearbyint(v * inv));
      }
    }
  }
}

// Wide tables: the same sums scaled to int16 (low_bits 8) or 12 bits (low_bits 6), each entry v
// split into a low part v & (2^low_bits - 1) (unsigned) and a high part (v - low) / 2^low_bits
// (signed), so that v = (high << low_bits) + low exactly.
void build_tables_wide_scalar(const float* xpad, const float* inv_scale, int64_t n_groups,
                              int64_t chunks_per_group, int low_bits, int8_t* tables) {
  const int32_t mask = (1 << low_bits) - 1;
  const int64_t quads = chunks_per_group / 4;
  for (int64_t g = 0; g < n_groups; ++g) {
    const float inv = inv_scale[g];
    for (int64_t c = 0; c < chunks_per_group; ++c) {
      const float* x = xpad + (g * chunks_per_group + c) * 4;  // (4)
      uint8_t* lo = reinterpret_cast<uint8_t*>(tables) + (g * quads + c / 4) * 2 * kLutUnitBytes +
                    (c % 4) * 16;  // (16) low parts
      int8_t* hi = reinterpret_cast<int8_t*>(lo + kLutUnitBytes);  // (16) high parts
      for (int p = 0; p < 16; ++p) {
        float v = (p & 1) ? x[0] : -x[0];
        v = v + ((p & 2) ? x[1] : -x[1]);
        v = v + ((p & 4) ? x[2] : -x[2]);
        v = v + ((p & 8) ? x[3] : -x[3]);
        const int32_t q = int32_t(std::nearbyint(v * inv));  // |q| <= lut_wide_max
        lo[p] = uint8_t(q & mask);
        hi[p] = int8_t((q - int32_t(lo[p])) / (mask + 1));
      }
    }
  }
}

// Per-plane scales s_b and z' = z + sum_b s_b / 2 of the 32 rows of one block.
void decode_params(const PackedMatrix& w, int64_t tile, int64_t g, float s[4][kLutTileRows],
                   float zp[kLutTileRows]) {
  const PackedHeader& h = w.header();
  const uint16_t* p = reinterpret_cast<const uint16_t*>(w.block(tile, g));  // (P, 32) fp16
  float ratio[4][kLutTileRows];
  if (h.kind == uint8_t(QuantKind::HLQC)) hlqc_block_ratios(w, tile, g, ratio);
  for (int r = 0; r < kLutTileRows; ++r) {
    float z;
    if (h.kind == uint8_t(QuantKind::Uniform)) {
      const float scale = fp16_to_f32(p[r]);
      z = fp16_to_f32(p[kLutTileRows + r]);
      for (int b = 0; b < h.bits; ++b) s[b][r] = scale * float(1 << b);
    } else if (h.kind == uint8_t(QuantKind::HLQC)) {
      const float scale = fp16_to_f32(p[r]);
      z = fp16_to_f32(p[kLutTileRows + r]);
      s[0][r] = scale;
      for (int b = 1; b < h.bits; ++b) s[b][r] = scale * ratio[b][r];
      zp[r] = z;  // HLQC stores the midpoint z' itself
      continue;
    } else {
      for (int b = 0; b < h.bits; ++b) s[b][r] = fp16_to_f32(p[b * kLutTileRows + r]);
      z = fp16_to_f32(p[h.bits * kLutTileRows + r]);
    }
    for (int b = 0; b < h.bits; ++b) z = std::fma(0.5f, s[b][r], z);
    zp[r] = z;
  }
}

void matmul_tiles_scalar(const PackedMatrix& w, const LutActivations& a, int64_t tile_begin,
                         int64_t tile_end, float* Y) {
  const PackedHeader& h = w.header();
  const int B = h.bits;
  const int64_t quads = a.quads_per_group;
  thread_local std::vector<float> ybuf;  // (n, 32)
  ybuf.resize(size_t(a.n * kLutTileRows));
  float s[4][kLutTileRows], zp[kLutTileRows];
  for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
    std::fill(ybuf.begin(), ybuf.end(), 0.0f);
    for (int64_t g = 0; g < h.n_groups; ++g) {
      const uint8_t* blk = w.block(tile, g);
      decode_params(w, tile, g, s, zp);
      const uint8_t* bits = blk + h.params_per_group * kLutUnitBytes;  // (quads, B, 64)
      for (int64_t t = 0; t < a.n; ++t) {
        const int8_t* tab = a.tables + (t * a.n_groups + g) * quads * a.quad_bytes;
        float gacc[kLutTileRows] = {};
        for (int b = 0; b < B; ++b) {
          int32_t isum[kLutTileRows] = {};
          for (int64_t q = 0; q < quads; ++q) {
            const uint8_t* unit = bits + (q * B + b) * kLutUnitBytes;
            const int8_t* tq = tab + q * a.quad_bytes;
            for (int i = 0; i < kLutUnitBytes; ++i) {
              const int e_lo = (i % 4) * 16 + (unit[i] & 15), e_hi = (i % 4) * 16 + (unit[i] >> 4);
              if (a.wide) {  // entry = (high part << low_bits) + low part
                const uint8_t* low = reinterpret_cast<const uint8_t*>(tq);
                const int8_t* high = tq + kLutUnitBytes;
                const int32_t unit_high = int32_t(1) << a.low_bits;
                isum[i / 4] += unit_high * int32_t(high[e_lo]) + int32_t(low[e_lo]);
                isum[16 + i / 4] += unit_high * int32_t(high[e_hi]) + int32_t(low[e_hi]);
              } else {
                isum[i / 4] += tq[e_lo];
                isum[16 + i / 4] += tq[e_hi];
              }
            }
          }
          for (int r = 0; r < kLutTileRows; ++r) gacc[r] = std::fma(float(isum[r]), s[b][r], gacc[r]);
        }
        const float sh = a.scale_half[t * a.n_groups + g], sx = a.sum_x[t * a.n_groups + g];
        float* y = ybuf.data() + t * kLutTileRows;
        for (int r = 0; r < kLutTileRows; ++r) {
          y[r] = std::fma(gacc[r], sh, y[r]);
          y[r] = std::fma(zp[r], sx, y[r]);
        }
      }
    }
    for (int64_t t = 0; t < a.n; ++t) {
      for (int r = 0; r < kLutTileRows; ++r) {
        const int64_t row = tile * kLutTileRows + r;
        if (row < h.rows) Y[t * h.rows + row] = ybuf[size_t(t * kLutTileRows + r)];
      }
    }
  }
}

}  // namespace

const LutIsaKernels& lut_kernels_scalar() {
  static const LutIsaKernels k = {build_tables_scalar, build_tables_wide_scalar,
                                  matmul_tiles_scalar};
  return k;
}

}  // namespace elutq
