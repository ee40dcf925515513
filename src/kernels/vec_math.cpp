// See vec_math.h. Compiled with the build's baseline flags: the loops vectorize at whatever width
// that allows (SSE2 on a generic x86-64 build).
#include "kernels/vec_math.h"

#include <bit>

namespace elutq {
namespace {
// 2^n * e^r with n = round(x / ln 2) and |r| <= ln(2) / 2, e^r by its degree-6 Taylor polynomial
// (relative error below 2e-7 there). For x in [-87, 0].
inline float exp_in_range(float x) {
  const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float t = x * 1.44269504f + shifter;
  const float nf = t - shifter;
  const float r = (x - nf * 0.693145752f) - nf * 1.42860677e-6f;  // ln 2 in two parts
  float p = 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t n = std::bit_cast<int32_t>(t) - 0x4B400000;  // the integer in t's low bits
  return p * std::bit_cast<float>((n + 127) << 23);
}
}  // namespace

// The clamp and the zeroing are two passes: GCC 12 vectorizes neither loop with both conditions.
void exp_nonpositive_inplace(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] < -87.0f ? -87.0f : x[i];
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t zero = 0u - uint32_t(x[i] == -87.0f);
    x[i] = std::bit_cast<float>(std::bit_cast<uint32_t>(exp_in_range(x[i])) & ~zero);
  }
}

}  // namespace elutq
