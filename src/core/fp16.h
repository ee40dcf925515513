// Half-precision conversions (IEEE fp16 and bfloat16), portable scalar versions. Kernels that need
// them fast use the ISA's own instructions.
#pragma once

#include <cstdint>
#include <cstring>

namespace elutq {

inline float fp16_to_f32(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ff;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round to nearest even; overflow goes to infinity. A NaN stays NaN and keeps the top 10 bits of
// its payload (0x200, quiet, if those are all zero), so f32_to_fp16(fp16_to_f32(h)) == h for every
// fp16 bit pattern h: stored fp16 values (quantized blobs' parameters) survive a decode-encode.
inline uint16_t f32_to_fp16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000;
  const uint32_t absx = x & 0x7fffffff;
  if (absx > 0x7f800000) {
    const uint32_t payload = (absx >> 13) & 0x3ff;
    return (uint16_t)(sign | 0x7c00 | (payload ? payload : 0x200));
  }
  if (absx == 0x7f800000) return (uint16_t)(sign | 0x7c00);
  if (absx >= 0x477ff000) return (uint16_t)(sign | 0x7c00);  // rounds past 65504
  if (absx < 0x38800000) {                                    // result is subnormal or zero
    if (absx < 0x33000000) return (uint16_t)sign;
    const uint32_t exp = absx >> 23;
    const uint32_t mant = (absx & 0x7fffff) | 0x800000;
    const uint32_t shift = 126 - exp;  // 14..24
    uint32_t h = mant >> (shift);
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1))) ++h;
    return (uint16_t)(sign | h);
  }
  uint32_t h = ((absx - 0x38000000) >> 13);
  const uint32_t rem = absx & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;
  return (uint16_t)(sign | h);
}

inline float bf16_to_f32(uint16_t b) {
  uint32_t bits = (uint32_t)b << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t f32_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40);  // quiet NaN
  x += 0x7fff + ((x >> 16) & 1);
  return (uint16_t)(x >> 16);
}

}  // namespace elutq
