// The int8 activations and the scalar reference kernels of kquant_gemm.h, written from the types'
// definitions (one weight at a time) so the SIMD kernels have an independent reference.
#include "kernels/kquant_gemm.h"

#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "kernels/block32_gemm.h"
#include "kernels/dispatch.h"

namespace elutq {

void quantize_activations_q8k(const float* x, int64_t n, int8_t* q, float* d, int16_t* bsum) {
  active_kernels().quantize_activations_q8k(x, n, q, d, bsum);
}

namespace kern {

void quantize_activations_q8k_scalar(const float* x, int64_t n, int8_t* q, float* d,
                                     int16_t* bsum) {
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* xb = x + b * kQK;
    int8_t* qb = q + b * kQK;
    float amax = 0.0f;
    bool finite = true;
    for (int64_t k = 0; k < kQK; ++k) {
      finite = finite && std::isfinite(xb[k]);
      amax = std::fmax(amax, std::fabs(xb[k]));
    }
    if (!finite || amax == 0.0f) {
      d[b] = finite ? 0.0f : NAN;
      std::memset(qb, 0, kQK);
      for (int g = 0; g < 16; ++g) bsum[b * 16 + g] = 0;
      continue;
    }
    d[b] = amax / 127.0f;
    const float inv = 127.0f / amax;
    for (int g = 0; g < 16; ++g) {
      int s = 0;
      for (int k = 16 * g; k < 16 * g + 16; ++k) {
        const float v = std::nearbyint(xb[k] * inv);
        const int i = v > 127.0f ? 127 : v < -127.0f ? -127 : int(v);
        qb[k] = int8_t(i);
        s += i;
      }
      bsum[b * 16 + g] = int16_t(s);
    }
  }
}

namespace {

float half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_f32(h);
}

// Q4_K/Q5_K's eight 6-bit scales and minimums, packed in 12 bytes.
void scale_min_k4(int j, const uint8_t* s, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Q4_K (kFifthBit false) and Q5_K: weight l of sub-block j is the low (even j) or high (odd j)
// nibble of qs[32 (j / 2) + l], plus 16 times bit j of qh[l] for Q5_K.
template <bool kFifthBit>
void gemm_rows_k4_scalar(const uint8_t* W, const Q8KActivations& x, int64_t r0, int64_t r1,
                         float* y, int64_t y_stride) {
  constexpr int64_t kBytes = kFifthBit ? kQ5KBlockBytes : kQ4KBlockBytes;
  constexpr int kQs = kFifthBit ? 48 : 16;
  const int64_t nb = x.n / kQK;
  for (int64_t r = r0; r < r1; ++r) {
    for (int t = 0; t < x.tokens; ++t) {
      float acc = 0.0f;
      for (int64_t i = 0; i < nb; ++i) {
        const uint8_t* b = W + (r * nb + i) * kBytes;
        const int8_t* xq = x.q + t * x.n + i * kQK;
        const int16_t* bs = x.bsum + t * (x.n / 16) + i * 16;
        int32_t S = 0, M = 0;
        for (int j = 0; j < 8; ++j) {
          int sc, m;
          scale_min_k4(j, b + 4, &sc, &m);
          const uint8_t* qs = b + kQs + 32 * (j / 2);
          int32_t s = 0;
          for (int l = 0; l < 32; ++l) {
            int q = (j & 1) ? qs[l] >> 4 : qs[l] & 0xF;
            if (kFifthBit) q |= ((b[16 + l] >> j) & 1) << 4;
            s += q * xq[32 * j + l];
          }
          S += sc * s;
          M += m * (bs[2 * j] + bs[2 * j + 1]);
        }
        const float dx = x.d[t * nb + i];
        acc = std::fma(dx * half(b), float(S), acc);
        acc = std::fma(-(dx * half(b + 2)), float(M), acc);
      }
      y[t * y_stride + r] = acc;
    }
  }
}

}  // namespace

void gemm_rows_q4_k_scalar(const uint8_t* W, const Q8KActivations& x, int64_t r0, int64_t r1,
                           float* y, int64_t y_stride) {
  gemm_rows_k4_scalar<false>(W, x, r0, r1, y, y_stride);
}

void gemm_rows_q5_k_scalar(const uint8_t* W, const Q8KActivations& x, int64_t r0, int64_t r1,
                           float* y, int64_t y_stride) {
  gemm_rows_k4_scalar<true>(W, x, r0, r1, y, y_stride);
}

// Q6_K: ql[128], qh[64], int8 scales[16], fp16 d. Weight 128 h + 32 k + l (h < 2, k < 4, l < 32)
// takes its low four bits from ql[64 h + 32 (k % 2) + l] (high nibble for k >= 2) and its top two
// from bits 2k, 2k+1 of qh[32 h + l]; its sub-block of 16 is its index / 16.
void gemm_rows_q6_k_scalar(const uint8_t* W, const Q8KActivations& x, int64_t r0, int64_t r1,
                           float* y, int64_t y_stride) {
  const int64_t nb = x.n / kQK;
  for (int64_t r = r0; r < r1; ++r) {
    for (int t = 0; t < x.tokens; ++t) {
      float acc = 0.0f;
      for (int64_t i = 0; i < nb; ++i) {
        const uint8_t* b = W + (r * nb + i) * kQ6KBlockBytes;
        const uint8_t* ql = b;
        const uint8_t* qh = b + 128;
        const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
        const int8_t* xq = x.q + t * x.n + i * kQK;
        const int16_t* bs = x.bsum + t * (x.n / 16) + i * 16;
        int32_t sub[16] = {};
        for (int h = 0; h < 2; ++h)
          for (int k = 0; k < 4; ++k)
            for (int l = 0; l < 32; ++l) {
              const uint8_t low = ql[64 * h + 32 * (k % 2) + l];
              const int q =
                  (k < 2 ? low & 0xF : low >> 4) | (((qh[32 * h + l] >> (2 * k)) & 3) << 4);
              const int pos = 128 * h + 32 * k + l;
              sub[pos / 16] += q * xq[pos];
            }
        int32_t S = 0;
        for (int g = 0; g < 16; ++g) S += sc[g] * (sub[g] - 32 * bs[g]);
        acc = std::fma(x.d[t * nb + i] * half(b + 208), float(S), acc);
      }
      y[t * y_stride + r] = acc;
    }
  }
}

// IQ4_XS: d, scales_h, scales_l[4], qs[128]. Sub-block j (weights 32j..32j+31) has the 6-bit
// scale ls_j (low four bits: nibble j % 2 of scales_l[j / 2]; top two: bits 2j, 2j+1 of scales_h);
// its weight l < 16 is the low nibble of qs[16j + l], weight 16 + l the high one, each an index
// into kIq4nlLevels.
void gemm_rows_iq4_xs_scalar(const uint8_t* W, const Q8KActivations& x, int64_t r0, int64_t r1,
                             float* y, int64_t y_stride) {
  const int64_t nb = x.n / kQK;
  for (int64_t r = r0; r < r1; ++r) {
    for (int t = 0; t < x.tokens; ++t) {
      float acc = 0.0f;
      for (int64_t i = 0; i < nb; ++i) {
        const uint8_t* b = W + (r * nb + i) * kIq4XsBlockBytes;
        uint16_t scales_h;
        std::memcpy(&scales_h, b + 2, 2);
        const uint8_t* scales_l = b + 4;
        const uint8_t* qs = b + 8;
        const int8_t* xq = x.q + t * x.n + i * kQK;
        int32_t S = 0;
        for (int j = 0; j < 8; ++j) {
          const int ls = ((scales_l[j / 2] >> (4 * (j % 2))) & 0xF) | (((scales_h >> (2 * j)) & 3) << 4);
          int32_t s = 0;
          for (int l = 0; l < 16; ++l) {
            s += kIq4nlLevels[qs[16 * j + l] & 0xF] * xq[32 * j + l];
            s += kIq4nlLevels[qs[16 * j + l] >> 4] * xq[32 * j + 16 + l];
          }
          S += (ls - 32) * s;
        }
        acc = std::fma(x.d[t * nb + i] * half(b), float(S), acc);
      }
      y[t * y_stride + r] = acc;
    }
  }
}

}  // namespace kern
}  // namespace elutq
