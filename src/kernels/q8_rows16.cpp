// The rows16 re-layout of Q8_0, the int16 activations, and the scalar reference kernel
// (q8_rows16.h).
#include "kernels/q8_rows16.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/fp16.h"

namespace elutq {

int64_t q8_rows16_bytes(int64_t rows, int64_t n) {
  return (rows + kRows16 - 1) / kRows16 * (n / 32) * kRows16BlockBytes;
}

void q8_rows16_pack(const uint8_t* q8_0, int64_t rows, int64_t n, uint8_t* out) {
  const int64_t nb = n / 32, groups = (rows + kRows16 - 1) / kRows16;
  std::memset(out, 0, size_t(q8_rows16_bytes(rows, n)));  // padding rows: d = 0, q = 0
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* dst = out + (g * nb + b) * kRows16BlockBytes;
      for (int r = 0; r < kRows16 && g * kRows16 + r < rows; ++r) {
        const uint8_t* blk = q8_0 + ((g * kRows16 + r) * nb + b) * 34;
        std::memcpy(dst + 2 * r, blk, 2);
        for (int p = 0; p < 16; ++p) {
          dst[32 + p * 32 + 2 * r] = blk[2 + 2 * p];
          dst[32 + p * 32 + 2 * r + 1] = blk[2 + 2 * p + 1];
        }
      }
    }
}

void quantize_activations_i16(const float* x, int64_t n, int16_t* xq, float* dx) {
  for (int64_t b = 0; b < n / 32; ++b) {
    const float* v = x + b * 32;
    float amax = 0.0f;
    bool finite = true;
    for (int k = 0; k < 32; ++k) {
      finite = finite && std::isfinite(v[k]);
      amax = std::max(amax, std::fabs(v[k]));
    }
    const float d = amax / 32767.0f;
    dx[b] = finite ? d : NAN;
    for (int k = 0; k < 32; ++k) {
      long q = 0;
      if (finite && d > 0.0f) q = std::clamp(std::lrint(v[k] / d), -32767L, 32767L);
      xq[b * 32 + k] = int16_t(q);
    }
  }
}

namespace kern {

void q8_rows16_i16_scalar(const uint8_t* W, int64_t rows, int64_t n, const int16_t* xq,
                          const float* dx, int tokens, int64_t g0, int64_t g1, float* y,
                          int64_t y_stride) {
  const int64_t nb = n / 32;
  for (int64_t g = g0; g < g1; ++g)
    for (int r = 0; r < kRows16 && g * kRows16 + r < rows; ++r)
      for (int t = 0; t < tokens; ++t) {
        const int16_t* xt = xq + t * n;
        float acc = 0.0f;
        for (int64_t b = 0; b < nb; ++b) {
          const uint8_t* blk = W + (g * nb + b) * kRows16BlockBytes;
          uint16_t dh;
          std::memcpy(&dh, blk + 2 * r, 2);
          int32_t s = 0;
          for (int p = 0; p < 16; ++p)
            for (int j = 0; j < 2; ++j)
              s += int32_t(int8_t(blk[32 + p * 32 + 2 * r + j])) * xt[b * 32 + 2 * p + j];
          acc = std::fma(float(s), fp16_to_f32(dh) * dx[t * nb + b], acc);
        }
        y[t * y_stride + g * kRows16 + r] = acc;
      }
}

}  // namespace kern
}  // namespace elutq
