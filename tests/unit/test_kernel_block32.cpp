// GGML's 32-weight block types against int16 activations (kernels/block32_gemm.h) on their own, for
// every ISA this build has (also cross-compiled for ARM by scripts/test_arm.sh): the block sums,
// every SIMD kernel equal to the scalar one bit for bit, and non-finite activations reaching the
// outputs. (The int16 activations themselves: test_q8_rows16.cpp.)
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "block32_test_util.h"
#include "core/cpu_features.h"
#include "isa_test_util.h"

namespace elutq {
namespace {

using test::B32Acts;
using test::kBlock32Types;
using test::quantize32;
using test::random_block32_rows;
using test::random_x32;

TEST(Block32Gemm, BlockSumsAddEachBlocksActivations) {
  const std::vector<float> x = random_x32(1, 96, 1);
  const B32Acts a = quantize32(x, 1, 96);
  EXPECT_EQ(a.s[1], 0);  // the zero block
  for (int b = 0; b < 3; ++b) {
    int32_t sum = 0;
    for (int k = 0; k < 32; ++k) sum += a.q[size_t(32 * b + k)];
    EXPECT_EQ(a.s[size_t(b)], sum);
  }
}

TEST(Block32Gemm, NonFiniteActivationsReachTheOutputs) {
  std::vector<float> x = random_x32(1, 64, 2);
  x[40] = NAN;
  const B32Acts a = quantize32(x, 1, 64);
  for (DType t : kBlock32Types) {
    const std::vector<uint8_t> w = random_block32_rows(t, 2, 64, 3);
    std::vector<float> y(2);
    block32_kernel(isa_kernels(Isa::Scalar), t)(w.data(), a.view(64, 1), 0, 2, y.data(), 2);
    for (float v : y) EXPECT_TRUE(std::isnan(v)) << dtype_name(t);
  }
}

TEST(Block32Gemm, EverySimdKernelEqualsTheScalarOneBitForBit) {
  const IsaKernels& ref = isa_kernels(Isa::Scalar);
  int compared = 0;
  for (const IsaKernels* k : test::simd_kernel_tables()) {
    const Isa isa = k->isa;
    for (DType t : kBlock32Types) {
      if (block32_kernel(*k, t) == block32_kernel(ref, t)) continue;
      for (int64_t rows : {int64_t(1), int64_t(4), int64_t(7)})
        for (int tokens : {1, 3, 4, 9, 150}) {
          // 150 tokens of 2048 columns: several L2 chunks of tokens, quads and a remainder.
          const int64_t n = tokens == 150 ? 2048 : 576;
          const std::vector<uint8_t> w =
              random_block32_rows(t, rows, n, uint32_t(rows * 7 + tokens));
          const std::vector<float> x = random_x32(tokens, n, uint32_t(tokens));
          const B32Acts a = quantize32(x, tokens, n);
          const int64_t stride = rows + 2;
          for (int64_t r0 : {int64_t(0), rows / 2}) {
            std::vector<float> want(size_t(tokens * stride), -7.0f), got = want;
            block32_kernel(ref, t)(w.data(), a.view(n, tokens), r0, rows, want.data(), stride);
            block32_kernel(*k, t)(w.data(), a.view(n, tokens), r0, rows, got.data(), stride);
            ASSERT_EQ(std::memcmp(want.data(), got.data(), got.size() * 4), 0)
                << isa_name(isa) << " " << dtype_name(t) << " rows " << rows << " tokens " << tokens
                << " from row " << r0;
          }
          ++compared;
        }
    }
  }
  if (compared == 0) GTEST_SKIP() << "no SIMD kernel for these types on this CPU";
}

}  // namespace
}  // namespace elutq
