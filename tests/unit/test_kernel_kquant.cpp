// The K-quant kernels (kernels/kquant_gemm.h) on their own, for every ISA this build has (also
// cross-compiled for ARM and run under qemu by scripts/test_arm.sh): the activations round within
// half a step with exact 16-sums, non-finite activations reach the outputs, and every SIMD kernel
// equals the scalar reference bit for bit on random blocks, any row range and token count.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/cpu_features.h"
#include "isa_test_util.h"
#include "kquant_test_util.h"

namespace elutq {
namespace {

using test::Acts;
using test::kTypes;
using test::quantize;
using test::random_rows;
using test::random_x;

TEST(KQuantGemm, ActivationsRoundWithinHalfAStepWithTheirSixteenSums) {
  std::vector<float> x = random_x(1, 768, 1);
  x[600] = -1e3f;  // block 2's extreme, negative: must map to -127
  Acts a = quantize(x, 1, 768);
  EXPECT_EQ(a.d[1], 0.0f);
  for (int k = 256; k < 512; ++k) EXPECT_EQ(a.q[size_t(k)], 0);
  EXPECT_EQ(a.q[600], -127);
  for (int64_t b = 0; b < 3; ++b) {
    float amax = 0.0f;
    for (int k = 0; k < 256; ++k) amax = std::max(amax, std::fabs(x[size_t(b * 256 + k)]));
    EXPECT_EQ(a.d[size_t(b)], amax / 127.0f);
    for (int k = 0; k < 256; ++k) {
      const size_t i = size_t(b * 256 + k);
      EXPECT_LE(std::fabs(double(a.q[i]) * a.d[size_t(b)] - x[i]), 0.5001 * a.d[size_t(b)] + 1e-30);
    }
  }
  for (int g = 0; g < 48; ++g) {
    int s = 0;
    for (int k = 0; k < 16; ++k) s += a.q[size_t(16 * g + k)];
    EXPECT_EQ(a.bsum[size_t(g)], s) << g;
  }
  x[5] = NAN;
  a = quantize(x, 1, 768);
  EXPECT_TRUE(std::isnan(a.d[0]));
  EXPECT_FALSE(std::isnan(a.d[2]));
  // A non-finite activation turns every output it meets NaN, as the fp32 product would.
  for (DType t : kTypes) {
    const std::vector<uint8_t> w = random_rows(t, 2, 768, 3);
    std::vector<float> y(2);
    kquant_kernel(isa_kernels(Isa::Scalar), t)(w.data(), a.view(768, 1), 0, 2, y.data(), 2);
    for (float v : y) EXPECT_TRUE(std::isnan(v)) << dtype_name(t);
  }
}

TEST(KQuantGemm, EveryIsasActivationQuantizerGivesTheScalarOnesBytes) {
  std::vector<float> x = random_x(3, 768, 6);
  x[1000] = NAN;       // token 1, block 0
  x[1900] = INFINITY;  // token 2, block 1
  for (size_t i = 0; i < x.size(); i += 37) x[i] = std::nearbyint(x[i] * 4) / 4;  // ties
  const Acts want = quantize(x, 3, 768);
  for (const IsaKernels* k : test::simd_kernel_tables()) {
    const Isa isa = k->isa;
    Acts got{std::vector<int8_t>(x.size()), std::vector<float>(x.size() / kQK),
             std::vector<int16_t>(x.size() / 16)};
    for (int t = 0; t < 3; ++t)
      k->quantize_activations_q8k(x.data() + t * 768, 768, got.q.data() + t * 768,
                                  got.d.data() + t * 3, got.bsum.data() + t * 48);
    EXPECT_EQ(got.q, want.q) << isa_name(isa);
    EXPECT_EQ(got.bsum, want.bsum) << isa_name(isa);
    ASSERT_EQ(std::memcmp(got.d.data(), want.d.data(), got.d.size() * 4), 0) << isa_name(isa);
  }
}

TEST(KQuantGemm, EverySimdKernelEqualsTheScalarOneBitForBit) {
  const IsaKernels& ref = isa_kernels(Isa::Scalar);
  int compared = 0;
  for (const IsaKernels* k : test::simd_kernel_tables()) {
    const Isa isa = k->isa;
    for (DType t : kTypes) {
      if (kquant_kernel(*k, t) == kquant_kernel(ref, t)) continue;  // this ISA runs the scalar one
      for (int64_t rows : {int64_t(1), int64_t(4), int64_t(9)})
        for (int tokens : {1, 2, 5, 11, 70}) {
          // 11: more than one token group; 70 tokens of 4096 columns: more than one chunk of
          // tokens whose activations fit in a core's L2 (the AVX2 kernel's outer loop).
          const int64_t n = tokens == 70 ? 4096 : 512;
          const std::vector<uint8_t> w = random_rows(t, rows, n, uint32_t(rows * 13 + tokens));
          const std::vector<float> x = random_x(tokens, n, uint32_t(tokens));
          const Acts a = quantize(x, tokens, n);
          const int64_t stride = rows + 3;
          for (int64_t r0 : {int64_t(0), rows / 2}) {
            std::vector<float> want(size_t(tokens * stride), -7.0f), got = want;
            kquant_kernel(ref, t)(w.data(), a.view(n, tokens), r0, rows, want.data(), stride);
            kquant_kernel(*k, t)(w.data(), a.view(n, tokens), r0, rows, got.data(), stride);
            ASSERT_EQ(std::memcmp(want.data(), got.data(), got.size() * 4), 0)
                << isa_name(isa) << " " << dtype_name(t) << " rows " << rows << " tokens " << tokens
                << " from row " << r0;
          }
          ++compared;
        }
    }
  }
  if (compared == 0) GTEST_SKIP() << "no SIMD K-quant kernel on this CPU";
}

}  // namespace
}  // namespace elutq
