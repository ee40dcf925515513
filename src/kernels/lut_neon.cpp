// ARM NEON LUT kernels: tbl with four registers (vqtbl4q_s8) looks up 16 bytes of a unit in its
// 64-byte, 4-table register set; sdot (or pairwise widening adds without the dot-product
// extension) sums each row's 4 entries into int32. Wide (int16, int12) tables do the same in their
// low-part (unsigned: udot / unsigned widening adds) and high-part halves.
#include <arm_neon.h>

#include <algorithm>
#include <vector>

#include "core/aligned_vector.h"
#include "core/cpu_features.h"
#include "kernels/lut_isa.h"

namespace elutq {
namespace {

void build_tables_neon(const float* xpad, const float* inv_scale, int64_t n_groups,
                       int64_t chunks_per_group, int8_t* tables) {
  float sg[4][16];  // entry p of sign_j: +1 if bit j of p is set, else -1
  for (int j = 0; j < 4; ++j)
    for (int p = 0; p < 16; ++p) sg[j][p] = (p >> j & 1) ? 1.0f : -1.0f;
  for (int64_t g = 0; g < n_groups; ++g) {
    const float32x4_t inv = vdupq_n_f32(inv_scale[g]);
    for (int64_t c = 0; c < chunks_per_group; ++c) {
      const float* x = xpad + (g * chunks_per_group + c) * 4;
      int32x4_t q[4];
      for (int k = 0; k < 4; ++k) {  // entries 4k..4k+3; products with +-1 are exact
        float32x4_t v = vmulq_f32(vdupq_n_f32(x[0]), vld1q_f32(sg[0] + 4 * k));
        v = vaddq_f32(v, vmulq_f32(vdupq_n_f32(x[1]), vld1q_f32(sg[1] + 4 * k)));
        v = vaddq_f32(v, vmulq_f32(vdupq_n_f32(x[2]), vld1q_f32(sg[2] + 4 * k)));
        v = vaddq_f32(v, vmulq_f32(vdupq_n_f32(x[3]), vld1q_f32(sg[3] + 4 * k)));
        q[k] = vcvtnq_s32_f32(vmulq_f32(v, inv));  // round to nearest even
      }
      const int16x8_t a = vcombine_s16(vqmovn_s32(q[0]), vqmovn_s32(q[1]));
      const int16x8_t b = vcombine_s16(vqmovn_s32(q[2]), vqmovn_s32(q[3]));
      vst1q_s8(tables + (g * chunks_per_group + c) * 16, vcombine_s8(vqmovn_s16(a), vqmovn_s16(b)));
    }
  }
}

// Wide tables: the int32 entries (|v| <= 32767) narrow to int16 exactly; the low part is v masked
// to low_bits bits, the high part v shifted right (arithmetic) by low_bits, each narrowed to bytes.
void build_tables_wide_neon(const float* xpad, const float* inv_scale, int64_t n_groups,
                            int64_t chunks_per_group, int low_bits, int8_t* tables) {
  const int16x8_t mask = vdupq_n_s16(int16_t((1 << low_bits) - 1));
  const int16x8_t shift = vdupq_n_s16(int16_t(-low_bits));  // vshl by a negative count: >>
  float sg[4][16];
  for (int j = 0; j < 4; ++j)
    for (int p = 0; p < 16; ++p) sg[j][p] = (p >> j & 1) ? 1.0f : -1.0f;
  const int64_t quads = chunks_per_group / 4;
  for (int64_t g = 0; g < n_groups; ++g) {
    const float32x4_t inv = vdupq_n_f32(inv_scale[g]);
    for (int64_t c = 0; c < chunks_per_group; ++c) {
      const float* x = xpad + (g * chunks_per_group + c) * 4;
      int32x4_t q[4];
      for (int k = 0; k < 4; ++k) {
        float32x4_t v = vmulq_f32(vdupq_n_f32(x[0]), vld1q_f32(sg[0] + 4 * k));
        v = vaddq_f32(v, vmulq_f32(vdupq_n_f32(x[1]), vld1q_f32(sg[1] + 4 * k)));
        v = vaddq_f32(v, vmulq_f32(vdupq_n_f32(x[2]), vld1q_f32(sg[2] + 4 * k)));
        v = vaddq_f32(v, vmulq_f32(vdupq_n_f32(x[3]), vld1q_f32(sg[3] + 4 * k)));
        q[k] = vcvtnq_s32_f32(vmulq_f32(v, inv));
      }
      const int16x8_t a = vcombine_s16(vqmovn_s32(q[0]), vqmovn_s32(q[1]));
      const int16x8_t b = vcombine_s16(vqmovn_s32(q[2]), vqmovn_s32(q[3]));
      int8_t* out = tables + (g * quads + c / 4) * 128 + (c % 4) * 16;
      vst1q_s8(out, vcombine_s8(vmovn_s16(vandq_s16(a, mask)), vmovn_s16(vandq_s16(b, mask))));
      vst1q_s8(out + 64,
               vcombine_s8(vmovn_s16(vshlq_s16(a, shift)), vmovn_s16(vshlq_s16(b, shift))));
    }
  }
}

template <bool kDot>
inline int32x4_t sum_quads(int32x4_t acc, int8x16_t v) {
  if constexpr (kDot) {
    return vdotq_s32(acc, v, vdupq_n_s8(1));
  } else {
    return vaddq_s32(acc, vpaddlq_s16(vpaddlq_s8(v)));
  }
}

// The same for unsigned bytes (the low-byte tables of int16 entries).
template <bool kDot>
inline uint32x4_t sum_quads_u(uint32x4_t acc, uint8x16_t v) {
  if constexpr (kDot) {
    return vdotq_u32(acc, v, vdupq_n_u8(1));
  } else {
    return vaddq_u32(acc, vpaddlq_u16(vpaddlq_u8(v)));
  }
}

// Wide tables (kWide: int16, int12): every lookup also in the high-part tables, summed separately
// (low parts as unsigned) and combined per plane as (high << low_bits) + low.
template <bool kDot, bool kWide>
void matmul_tiles_neon(const PackedMatrix& w, const LutActivations& a, int64_t tile_begin,
                       int64_t tile_end, float* Y) {
  const PackedHeader& h = w.header();
  const int B = h.bits;
  const int64_t quads = a.quads_per_group;
  thread_local AlignedVector<float> ybuf;  // (n, 32)
  ybuf.resize(size_t(a.n * 32));
  const uint8x16_t low = vdupq_n_u8(0x0F);
  const uint8x16_t pos = vreinterpretq_u8_u32(vdupq_n_u32(0x30201000u));  // (i % 4) << 4
  for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
    std::fill(ybuf.begin(), ybuf.end(), 0.0f);
    for (int64_t g = 0; g < h.n_groups; ++g) {
      const uint8_t* blk = w.block(tile, g);
      const __fp16* p = reinterpret_cast<const __fp16*>(blk);  // (P, 32) fp16
      float32x4_t s[4][8], zp[8];  // per plane, rows 4k..4k+3
      const bool hlqc = h.kind == uint8_t(QuantKind::HLQC);
      float ratio[4][kLutTileRows];
      if (hlqc) hlqc_block_ratios(w, tile, g, ratio);
      for (int k = 0; k < 8; ++k) {
        float32x4_t z;
        if (hlqc) {
          const float32x4_t scale = vcvt_f32_f16(vld1_f16(p + 4 * k));
          z = vcvt_f32_f16(vld1_f16(p + 32 + 4 * k));
          s[0][k] = scale;
          for (int b = 1; b < B; ++b) s[b][k] = vmulq_f32(scale, vld1q_f32(ratio[b] + 4 * k));
          zp[k] = z;  // HLQC stores the midpoint z' itself
          continue;
        } else if (h.kind == uint8_t(QuantKind::Uniform)) {
          const float32x4_t scale = vcvt_f32_f16(vld1_f16(p + 4 * k));
          z = vcvt_f32_f16(vld1_f16(p + 32 + 4 * k));
          for (int b = 0; b < B; ++b) s[b][k] = vmulq_f32(scale, vdupq_n_f32(float(1 << b)));
        } else {
          for (int b = 0; b < B; ++b) s[b][k] = vcvt_f32_f16(vld1_f16(p + 32 * b + 4 * k));
          z = vcvt_f32_f16(vld1_f16(p + 32 * B + 4 * k));
        }
        for (int b = 0; b < B; ++b) z = vfmaq_f32(z, vdupq_n_f32(0.5f), s[b][k]);
        zp[k] = z;
      }
      const uint8_t* bits = blk + h.params_per_group * 64;
      for (int64_t t = 0; t < a.n; ++t) {
        const int8_t* tab = a.tables + (t * a.n_groups + g) * quads * a.quad_bytes;
        float32x4_t gacc[8];
        for (int k = 0; k < 8; ++k) gacc[k] = vdupq_n_f32(0.0f);
        for (int b = 0; b < B; ++b) {
          int32x4_t acc[8];  // [k]: rows 4k..4k+3 (k < 4), rows 16 + 4(k-4).. (k >= 4)
          [[maybe_unused]] uint32x4_t acc_low[8];  // kWide: sums of the low bytes
          for (int k = 0; k < 8; ++k) acc[k] = vdupq_n_s32(0);
          if constexpr (kWide)
            for (int k = 0; k < 8; ++k) acc_low[k] = vdupq_n_u32(0);
          for (int64_t q = 0; q < quads; ++q) {
            const uint8_t* unit = bits + (q * B + b) * 64;
            if constexpr (kWide) {
              const uint8x16x4_t tl = vld1q_u8_x4(reinterpret_cast<const uint8_t*>(tab) + q * 128);
              const int8x16x4_t th = vld1q_s8_x4(tab + q * 128 + 64);
              for (int k = 0; k < 4; ++k) {
                const uint8x16_t wv = vld1q_u8(unit + 16 * k);
                const uint8x16_t ilo = vorrq_u8(vandq_u8(wv, low), pos);
                const uint8x16_t ihi = vorrq_u8(vshrq_n_u8(wv, 4), pos);
                acc_low[k] = sum_quads_u<kDot>(acc_low[k], vqtbl4q_u8(tl, ilo));
                acc_low[4 + k] = sum_quads_u<kDot>(acc_low[4 + k], vqtbl4q_u8(tl, ihi));
                acc[k] = sum_quads<kDot>(acc[k], vqtbl4q_s8(th, ilo));
                acc[4 + k] = sum_quads<kDot>(acc[4 + k], vqtbl4q_s8(th, ihi));
              }
            } else {
              const int8x16x4_t tv = vld1q_s8_x4(tab + q * 64);
              for (int k = 0; k < 4; ++k) {
                const uint8x16_t wv = vld1q_u8(unit + 16 * k);
                const uint8x16_t ilo = vorrq_u8(vandq_u8(wv, low), pos);
                const uint8x16_t ihi = vorrq_u8(vshrq_n_u8(wv, 4), pos);
                acc[k] = sum_quads<kDot>(acc[k], vqtbl4q_s8(tv, ilo));
                acc[4 + k] = sum_quads<kDot>(acc[4 + k], vqtbl4q_s8(tv, ihi));
              }
            }
          }
          if constexpr (kWide)  // (high << low_bits) + low; the low sums are < 2^31: exact cast
            for (int k = 0; k < 8; ++k)
              acc[k] = vmlaq_n_s32(vreinterpretq_s32_u32(acc_low[k]), acc[k], 1 << a.low_bits);
          for (int k = 0; k < 8; ++k) gacc[k] = vfmaq_f32(gacc[k], vcvtq_f32_s32(acc[k]), s[b][k]);
        }
        const float32x4_t sh = vdupq_n_f32(a.scale_half[t * a.n_groups + g]);
        const float32x4_t sx = vdupq_n_f32(a.sum_x[t * a.n_groups + g]);
        float* y = ybuf.data() + t * 32;
        for (int k = 0; k < 8; ++k) {
          const float32x4_t yk = vfmaq_f32(vld1q_f32(y + 4 * k), gacc[k], sh);
          vst1q_f32(y + 4 * k, vfmaq_f32(yk, zp[k], sx));
        }
      }
    }
    const int64_t rows_here = std::min<int64_t>(32, h.rows - tile * 32);
    for (int64_t t = 0; t < a.n; ++t)
      std::copy(ybuf.begin() + t * 32, ybuf.begin() + t * 32 + rows_here, Y + t * h.rows + tile * 32);
  }
}

template <bool kDot>
void matmul_tiles_any(const PackedMatrix& w, const LutActivations& a, int64_t tile_begin,
                      int64_t tile_end, float* Y) {
  if (a.wide) return matmul_tiles_neon<kDot, true>(w, a, tile_begin, tile_end, Y);
  matmul_tiles_neon<kDot, false>(w, a, tile_begin, tile_end, Y);
}

}  // namespace

const LutIsaKernels& lut_kernels_neon() {
  static const LutIsaKernels with_dot = {build_tables_neon, build_tables_wide_neon,
                                         matmul_tiles_any<true>};
  static const LutIsaKernels without_dot = {build_tables_neon, build_tables_wide_neon,
                                            matmul_tiles_any<false>};
  return cpu_features().neon_dotprod ? with_dot : without_dot;
}

}  // namespace elutq
