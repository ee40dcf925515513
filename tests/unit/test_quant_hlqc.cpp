// HLQC (HLQ with compact plane ratios): the ratio codebook and the projection of free HLQ groups.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "core/error.h"
#include "quant/hlq_fit.h"
#include "quant/hlqc_fit.h"
#include "quant/rtn.h"
#include "quant_test_util.h"
#include "tensor/qformat.h"

namespace elutq {
namespace {

double sq_error(const std::vector<float>& W, const QuantizedMatrix& q) {
  std::vector<float> D(W.size());
  dequantize(q, D.data());
  double e = 0;
  for (size_t i = 0; i < W.size(); ++i) e += double(W[i] - D[i]) * (W[i] - D[i]);
  return e;
}

TEST(QuantHlqc, NameBitsPerWeightAndParse) {
  const QuantSpec s = parse_quant_spec("hlqc-w3g128");
  EXPECT_EQ(s.kind, QuantKind::HLQC);
  EXPECT_EQ(s.name(), "hlqc-w3g128");
  EXPECT_TRUE(s.is_hlq());
  EXPECT_EQ(s.params_per_group(), 4);  // expanded in memory
  // 3 code bits + (16 + 16 + 2 x 4) / 128 stored bits per weight.
  EXPECT_DOUBLE_EQ(s.bits_per_weight(4096), 3.0 + 40.0 / 128.0);
  EXPECT_THROW(parse_quant_spec("hlqc-w5g128"), Error);
}

// Ratios drawn log-uniformly around 2^b: the codebook is ascending, positive, and every ratio has
// an entry within a small log distance (16 levels over a 0.6-wide log2 band: gaps of ~0.04).
TEST(QuantHlqc, CodebookCoversTheRatios) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-0.3f, 0.3f);
  const int B = 4, n = 5000;
  std::vector<float> params(size_t(n * (B + 1)));
  for (int g = 0; g < n; ++g) {
    float* p = params.data() + g * (B + 1);
    p[0] = 0.01f;
    for (int b = 1; b < B; ++b) p[b] = p[0] * std::exp2(float(b) + u(rng));
    p[B] = -0.05f;
  }
  params[0] = -1.0f;  // a negative s_0 and a negative ratio are skipped, not fatal
  params[6] = -0.5f;
  const std::vector<float> cb = hlqc_codebook_from_params(B, params.data(), n);
  ASSERT_EQ(cb.size(), size_t((B - 1) * kHlqcRatios));
  for (int b = 1; b < B; ++b) {
    const float* c = cb.data() + (b - 1) * kHlqcRatios;
    EXPECT_TRUE(std::is_sorted(c, c + kHlqcRatios)) << "plane " << b;
    EXPECT_GT(c[0], 0.0f);
    double worst = 0;
    for (int g = 2; g < n; ++g) {  // groups 0 and 1 hold the negative values
      const double lr = std::log2(double(params[g * (B + 1) + b]) / params[g * (B + 1)]);
      double best = 1e9;
      for (int i = 0; i < kHlqcRatios; ++i) best = std::min(best, std::fabs(std::log2(double(c[i])) - lr));
      worst = std::max(worst, best);
    }
    EXPECT_LT(worst, 0.04) << "plane " << b;
  }
}

// Data-free HLQC on LLM-like groups: valid (check_hlqc), never far from free HLQ, better than RTN.
TEST(QuantHlqc, ProjectionKeepsMostOfHlqAndBeatsRtn) {
  std::mt19937 rng(11);
  const int64_t rows = 48, cols = 512;
  std::vector<float> W;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c0 = 0; c0 < cols; c0 += 128) {
      const std::vector<float> g = test::random_group(rng, 128, int(r % 4));
      W.insert(W.end(), g.begin(), g.end());
    }
  for (int bits : {2, 3, 4}) {
    const std::string g = "w" + std::to_string(bits) + "g128";
    RtnOptions clip;
    clip.clip_search = true;
    const double e_rtn = sq_error(W, quantize_rtn(W.data(), rows, cols, parse_quant_spec("uniform-" + g), clip));
    const double e_hlq = sq_error(W, quantize_hlq(W.data(), rows, cols, parse_quant_spec("hlq-" + g)));
    const QuantizedMatrix c = quantize_hlqc(W.data(), rows, cols, parse_quant_spec("hlqc-" + g));
    EXPECT_NO_THROW(check_hlqc(c)) << g;
    const double e_c = sq_error(W, c);
    std::printf("%s squared error: RTN (clip) %.4g, HLQ %.4g, HLQC %.4g\n", g.c_str(), e_rtn, e_hlq, e_c);
    EXPECT_LT(e_c, e_rtn) << g;
    EXPECT_LT(e_c, 1.1 * e_hlq) << g;
  }
}

// check_hlqc rejects what a packer must not accept: a parameter that is not s_0 times its ratio,
// a code out of range, a bad codebook entry.
TEST(QuantHlqc, CheckRejectsInconsistentMatrices) {
  std::mt19937 rng(5);
  std::vector<float> W(32 * 64);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  for (float& w : W) w = nd(rng);
  const QuantizedMatrix good = quantize_hlqc(W.data(), 32, 64, parse_quant_spec("hlqc-w3g32"));
  EXPECT_NO_THROW(check_hlqc(good));
  QuantizedMatrix q = good;
  q.params[1] *= 1.001f;
  EXPECT_THROW(check_hlqc(q), Error);
  q = good;
  q.ratio_codes[3] = 16;
  EXPECT_THROW(check_hlqc(q), Error);
  q = good;
  q.ratio_codebook[2] = -1.0f;
  EXPECT_THROW(check_hlqc(q), Error);
  q = good;
  q.ratio_codes.pop_back();
  EXPECT_THROW(check_hlqc(q), Error);
}

}  // namespace
}  // namespace elutq
