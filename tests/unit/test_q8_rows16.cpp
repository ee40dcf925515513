// The Q8_0 rows16 form against int16 activations (kernels/q8_rows16.h): the scalar kernel on the
// re-laid bytes equals the same arithmetic written out on the original Q8_0 blocks bit for bit
// (so the re-layout loses nothing), every SIMD kernel equals the scalar one bit for bit, the
// activations' rounding stays within half a step, and the result stays within that rounding's
// bound of the exact product.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/cpu_features.h"
#include "core/fp16.h"
#include "kernels/dispatch.h"
#include "kernels/q8_rows16.h"

namespace elutq {
namespace {

// Random Q8_0 (rows, n): scales of mixed magnitude, codes over the whole int8 range (-128 too).
std::vector<uint8_t> random_q8_0(int64_t rows, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> scale(1e-4f, 0.05f);
  std::uniform_int_distribution<int> code(-128, 127);
  std::vector<uint8_t> b(size_t(rows * n / 32 * 34));
  for (size_t off = 0; off < b.size(); off += 34) {
    const uint16_t d = f32_to_fp16(scale(rng));
    std::memcpy(&b[off], &d, 2);
    for (int j = 0; j < 32; ++j) b[off + 2 + size_t(j)] = uint8_t(int8_t(code(rng)));
  }
  return b;
}

// Activations with blocks of very different magnitude, a zero block and a negative extreme.
std::vector<float> random_x(int tokens, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> x(size_t(tokens * n));
  for (size_t i = 0; i < x.size(); ++i) x[i] = nd(rng) * (i % 96 < 32 ? 30.0f : 0.01f);
  for (int k = 0; k < 32 && n >= 64; ++k) x[size_t(32 + k)] = 0.0f;  // token 0, block 1
  return x;
}

struct Quantized {
  std::vector<int16_t> q;
  std::vector<float> d;
};

Quantized quantize(const std::vector<float>& x, int tokens, int64_t n) {
  Quantized a{std::vector<int16_t>(x.size()), std::vector<float>(x.size() / 32)};
  for (int t = 0; t < tokens; ++t)
    quantize_activations_i16(x.data() + t * n, n, a.q.data() + t * n, a.d.data() + t * n / 32);
  return a;
}

// The arithmetic of q8_rows16.h written out on the Q8_0 blocks themselves.
float written_out(const uint8_t* q8, int64_t r, int64_t n, const int16_t* xq, const float* dx) {
  float acc = 0.0f;
  for (int64_t b = 0; b < n / 32; ++b) {
    const uint8_t* blk = q8 + (r * (n / 32) + b) * 34;
    uint16_t dh;
    std::memcpy(&dh, blk, 2);
    int32_t s = 0;
    for (int k = 0; k < 32; ++k) s += int32_t(int8_t(blk[2 + k])) * xq[b * 32 + k];
    acc = std::fma(float(s), fp16_to_f32(dh) * dx[b], acc);
  }
  return acc;
}

TEST(Q8Rows16, ActivationsRoundWithinHalfAStepAndKeepZerosAndNonFinite) {
  std::vector<float> x = random_x(1, 128, 1);
  x[100] = -1e3f;  // block 3's extreme, negative: must map to -32767
  Quantized a = quantize(x, 1, 128);
  EXPECT_EQ(a.d[1], 0.0f);
  for (int k = 32; k < 64; ++k) EXPECT_EQ(a.q[size_t(k)], 0);
  EXPECT_EQ(a.q[100], -32767);
  for (int64_t b = 0; b < 4; ++b) {
    float amax = 0.0f;
    for (int k = 0; k < 32; ++k) amax = std::max(amax, std::fabs(x[size_t(b * 32 + k)]));
    EXPECT_EQ(a.d[size_t(b)], amax / 32767.0f);
    for (int k = 0; k < 32; ++k) {
      const size_t i = size_t(b * 32 + k);
      EXPECT_LE(std::fabs(double(a.q[i]) * a.d[size_t(b)] - x[i]), 0.5001 * a.d[size_t(b)] + 1e-30)
          << i;
    }
  }
  x[5] = INFINITY;
  x[70] = NAN;
  a = quantize(x, 1, 128);
  EXPECT_TRUE(std::isnan(a.d[0]));
  EXPECT_TRUE(std::isnan(a.d[2]));
  EXPECT_FALSE(std::isnan(a.d[3]));
  // A non-finite activation makes every output it meets NaN, as the fp32 product would.
  const std::vector<uint8_t> w = random_q8_0(3, 128, 2);
  std::vector<uint8_t> packed(size_t(q8_rows16_bytes(3, 128)));
  q8_rows16_pack(w.data(), 3, 128, packed.data());
  std::vector<float> y(3);
  kern::q8_rows16_i16_scalar(packed.data(), 3, 128, a.q.data(), a.d.data(), 1, 0, 1, y.data(), 3);
  for (float v : y) EXPECT_TRUE(std::isnan(v));
}

TEST(Q8Rows16, ScalarKernelOnTheRelaidBytesEqualsTheArithmeticOnTheBlocks) {
  for (int64_t rows : {int64_t(1), int64_t(16), int64_t(37)})
    for (int64_t n : {int64_t(32), int64_t(96), int64_t(160)}) {
      const std::vector<uint8_t> w = random_q8_0(rows, n, uint32_t(rows * 7 + n));
      std::vector<uint8_t> packed(size_t(q8_rows16_bytes(rows, n)));
      EXPECT_EQ(packed.size(), w.size() / size_t(rows) * size_t((rows + 15) / 16 * 16));
      q8_rows16_pack(w.data(), rows, n, packed.data());
      const int tokens = 5;
      const std::vector<float> x = random_x(tokens, n, uint32_t(n));
      const Quantized a = quantize(x, tokens, n);
      const int64_t stride = rows + 2;
      std::vector<float> y(size_t(tokens * stride), -7.0f);
      const int64_t groups = (rows + 15) / 16;
      kern::q8_rows16_i16_scalar(packed.data(), rows, n, a.q.data(), a.d.data(), tokens, 0, groups,
                                 y.data(), stride);
      for (int t = 0; t < tokens; ++t) {
        for (int64_t r = 0; r < rows; ++r) {
          const float want = written_out(w.data(), r, n, a.q.data() + t * n, a.d.data() + t * n / 32);
          const float got = y[size_t(t * stride + r)];
          ASSERT_EQ(std::memcmp(&got, &want, 4), 0) << rows << "x" << n << " token " << t << " row " << r;
        }
        for (int64_t r = rows; r < stride; ++r)
          ASSERT_EQ(y[size_t(t * stride + r)], -7.0f) << "padding row written";
      }
    }
}

TEST(Q8Rows16, ResultStaysWithinTheActivationRoundingOfTheExactProduct) {
  const int64_t rows = 40, n = 192;
  const std::vector<uint8_t> w = random_q8_0(rows, n, 9);
  std::vector<uint8_t> packed(size_t(q8_rows16_bytes(rows, n)));
  q8_rows16_pack(w.data(), rows, n, packed.data());
  const std::vector<float> x = random_x(1, n, 4);
  const Quantized a = quantize(x, 1, n);
  std::vector<float> y(static_cast<size_t>(rows));
  kern::q8_rows16_i16_scalar(packed.data(), rows, n, a.q.data(), a.d.data(), 1, 0, 3, y.data(), rows);
  for (int64_t r = 0; r < rows; ++r) {
    double exact = 0, bound = 0;
    for (int64_t k = 0; k < n; ++k) {
      const uint8_t* blk = w.data() + (r * (n / 32) + k / 32) * 34;
      uint16_t dh;
      std::memcpy(&dh, blk, 2);
      const double wk = double(fp16_to_f32(dh)) * int8_t(blk[2 + k % 32]);
      exact += wk * x[size_t(k)];
      bound += std::fabs(wk) * (0.5 * a.d[size_t(k / 32)] + 1e-6 * std::fabs(x[size_t(k)]));
    }
    EXPECT_NEAR(y[size_t(r)], exact, bound + 1e-30) << r;
  }
}

TEST(Q8Rows16, EverySimdKernelEqualsTheScalarOneBitForBit) {
  std::vector<std::pair<const char*, kern::Rows16Fn>> kernels;
  for (Isa isa : {Isa::Avx2, Isa::Avx512, Isa::Neon})
    if (isa_available(isa) && isa_kernels(isa).q8_rows16_i16)
      kernels.push_back({isa_name(isa), isa_kernels(isa).q8_rows16_i16});
  if (kernels.empty()) GTEST_SKIP() << "no SIMD rows16 kernel on this CPU (AVX2, AVX-512 and NEON have one)";
  for (int64_t rows : {int64_t(5), int64_t(48), int64_t(53)})
    for (int64_t n : {int64_t(32), int64_t(64), int64_t(576)}) {
      const std::vector<uint8_t> w = random_q8_0(rows, n, uint32_t(rows + n));
      std::vector<uint8_t> packed(size_t(q8_rows16_bytes(rows, n)));
      q8_rows16_pack(w.data(), rows, n, packed.data());
      const int max_tokens = 9;  // tiles of 4, 3, 2 and 1
      const std::vector<float> x = random_x(max_tokens, n, uint32_t(rows));
      const Quantized a = quantize(x, max_tokens, n);
      const int64_t groups = (rows + 15) / 16, g0 = groups > 1 ? 1 : 0, stride = rows + 1;
      for (int tokens = 1; tokens <= max_tokens; ++tokens) {
        std::vector<float> want(size_t(tokens * stride), -3.0f), got(want.size(), -3.0f);
        kern::q8_rows16_i16_scalar(packed.data(), rows, n, a.q.data(), a.d.data(), tokens, g0,
                                   groups, want.data(), stride);
        for (const auto& [name, fn] : kernels) {
          std::fill(got.begin(), got.end(), -3.0f);
          fn(packed.data(), rows, n, a.q.data(), a.d.data(), tokens, g0, groups, got.data(), stride);
          ASSERT_EQ(std::memcmp(got.data(), want.data(), got.size() * 4), 0)
              << name << " rows=" << rows << " n=" << n << " tokens=" << tokens;
        }
      }
    }
}

}  // namespace
}  // namespace elutq
