// Small vector kernels on every ISA this CPU runs: the attention inner loops
// (kernels/attention_kernels.h) against sums in double, GPTQ's y -= a x against the scalar loop bit
// for bit; and the vectorizable exp of kernels/vec_math.h against std::exp.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "core/cpu_features.h"
#include "kernels/dispatch.h"
#include "kernels/vec_math.h"

namespace elutq {
namespace {

std::vector<Isa> runnable_isas() {
  std::vector<Isa> v;
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon})
    if (isa_available(isa)) v.push_back(isa);
  return v;
}

TEST(AttentionKernels, ScoresAndWeightedSumsMatchDoubleSumsOnEveryIsa) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (Isa isa : runnable_isas()) {
    const IsaKernels& k = isa_kernels(isa);
    for (int hd : {8, 12, 64, 80, 128, 136}) {
      for (int64_t count : {1, 3, 4, 5, 8, 33, 70}) {
        SCOPED_TRACE(testing::Message() << "isa " << int(isa) << " hd " << hd << " count " << count);
        const int64_t stride = 3 * hd + 5;  // rows of a cache holding other heads between them
        std::vector<float> q(static_cast<size_t>(hd)), kv(static_cast<size_t>(stride * count)),
            w(static_cast<size_t>(count));
        for (auto& x : q) x = nd(rng);
        for (auto& x : kv) x = nd(rng);
        for (auto& x : w) x = std::abs(nd(rng));
        std::vector<float> scores(size_t(count) + 1, -7.0f), out(size_t(hd) + 1, -7.0f);
        k.attention_scores(q.data(), kv.data(), stride, count, hd, 0.125f, scores.data());
        std::fill(out.begin(), out.end() - 1, 0.5f);  // the sums are added to what out holds
        k.attention_weighted_sum_add(w.data(), kv.data(), stride, count, hd, out.data());
        // In two pieces, [0, m) then [m, count): the same bits (the runtime's key blocks), and
        // scores of rows from a multiple of 4 on are those of the whole call.
        for (int64_t m : {int64_t(4), count / 2 / 4 * 4}) {
          if (m <= 0 || m >= count) continue;
          std::vector<float> parts(size_t(hd), 0.5f), tail(size_t(count - m));
          k.attention_weighted_sum_add(w.data(), kv.data(), stride, m, hd, parts.data());
          k.attention_weighted_sum_add(w.data() + m, kv.data() + m * stride, stride, count - m, hd,
                                       parts.data());
          ASSERT_EQ(std::memcmp(parts.data(), out.data(), size_t(hd) * 4), 0) << "split at " << m;
          k.attention_scores(q.data(), kv.data() + m * stride, stride, count - m, hd, 0.125f,
                             tail.data());
          ASSERT_EQ(std::memcmp(tail.data(), scores.data() + m, tail.size() * 4), 0)
              << "scores from row " << m;
        }
        for (int64_t j = 0; j < count; ++j) {
          double want = 0, mag = 0;
          for (int d = 0; d < hd; ++d) {
            want += double(q[size_t(d)]) * kv[size_t(j * stride + d)];
            mag += std::abs(double(q[size_t(d)]) * kv[size_t(j * stride + d)]);
          }
          ASSERT_NEAR(scores[size_t(j)], 0.125 * want, 1e-6 * mag) << "row " << j;
        }
        EXPECT_EQ(scores[size_t(count)], -7.0f) << "wrote past count";
        for (int d = 0; d < hd; ++d) {
          double want = 0, mag = 0;
          for (int64_t j = 0; j < count; ++j) {
            want += double(w[size_t(j)]) * kv[size_t(j * stride + d)];
            mag += std::abs(double(w[size_t(j)]) * kv[size_t(j * stride + d)]);
          }
          ASSERT_NEAR(out[size_t(d)], 0.5 + want, 1e-6 * (mag + 0.5)) << "dim " << d;
        }
        EXPECT_EQ(out[size_t(hd)], -7.0f) << "wrote past hd";
      }
    }
  }
}

// Every ISA's y -= a x equals the scalar kernel's bit for bit; on x86 (no fused multiply-add in the
// baseline build) that is the rounded product subtracted, which a fused kernel would miss.
TEST(VectorKernels, SubScaledEqualsTheScalarLoopBitForBit) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int64_t n : {0, 1, 7, 8, 15, 16, 17, 127, 1000}) {
    std::vector<float> x(static_cast<size_t>(n) + 1), y(x.size());
    for (auto& v : x) v = nd(rng);
    for (auto& v : y) v = nd(rng);
    const float a = nd(rng);
    std::vector<float> want = y;
    isa_kernels(Isa::Scalar).sub_scaled_f32(want.data(), x.data(), a, n);
#if defined(ELUTQ_X86)
    for (int64_t j = 0; j < n; ++j) {
      volatile float t = a * x[size_t(j)];  // rounded, then subtracted
      ASSERT_EQ(std::bit_cast<uint32_t>(want[size_t(j)]), std::bit_cast<uint32_t>(y[size_t(j)] - t));
    }
#endif
    EXPECT_EQ(want[size_t(n)], y[size_t(n)]) << "wrote past n";
    for (Isa isa : runnable_isas()) {
      std::vector<float> got = y;
      isa_kernels(isa).sub_scaled_f32(got.data(), x.data(), a, n);
      for (size_t j = 0; j < got.size(); ++j)
        ASSERT_EQ(std::bit_cast<uint32_t>(got[j]), std::bit_cast<uint32_t>(want[j]))
            << "isa " << int(isa) << " n " << n << " at " << j;
    }
  }
}

TEST(VectorKernels, AddScaledToDoublesEqualsTheScalarLoopBitForBit) {
  std::mt19937 rng(4);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int64_t n : {0, 1, 3, 4, 5, 7, 8, 9, 17, 128, 1000})
    for (double a : {1.0, -1.0, 3.0, double(nd(rng))}) {
      std::vector<float> x(static_cast<size_t>(n) + 1);
      std::vector<double> y(x.size());
      for (auto& v : x) v = nd(rng);
      for (auto& v : y) v = nd(rng);
      std::vector<double> want = y;
      isa_kernels(Isa::Scalar).add_scaled_f32_f64(want.data(), x.data(), a, n);
      for (int64_t j = 0; j < n; ++j) {
        volatile double t = a * double(x[size_t(j)]);  // rounded, then added
        ASSERT_EQ(std::bit_cast<uint64_t>(want[size_t(j)]), std::bit_cast<uint64_t>(y[size_t(j)] + t));
      }
      EXPECT_EQ(want[size_t(n)], y[size_t(n)]) << "wrote past n";
      for (Isa isa : runnable_isas()) {
        std::vector<double> got = y;
        isa_kernels(isa).add_scaled_f32_f64(got.data(), x.data(), a, n);
        for (size_t j = 0; j < got.size(); ++j)
          ASSERT_EQ(std::bit_cast<uint64_t>(got[j]), std::bit_cast<uint64_t>(want[j]))
              << "isa " << int(isa) << " n " << n << " at " << j;
      }
    }
}

TEST(VecMath, ExpOfNonPositiveValuesIsCloseToExp) {
  std::vector<float> x;
  for (float v = -86.9f; v <= 0.0f; v += 0.0137f) x.push_back(v);
  x.push_back(0.0f);
  std::vector<float> e = x;
  exp_nonpositive_inplace(e.data(), int64_t(e.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    const double want = std::exp(double(x[i]));
    ASSERT_NEAR(e[i], want, 3e-7 * want) << x[i];
  }
  EXPECT_EQ(e.back(), 1.0f);
  std::vector<float> low = {-87.0f, -100.0f, -INFINITY};
  exp_nonpositive_inplace(low.data(), 3);
  for (float v : low) EXPECT_EQ(v, 0.0f);
}

}  // namespace
}  // namespace elutq
