// The format trait table: one row per QuantKind, in enum order, and every row's name, size and
// reference decoding agree with what the formats are defined to be (tensor/qformat.h), and
// assign_nearest picks what nearest_level picks, weight by weight.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "core/error.h"
#include "tensor/qformat.h"

namespace elutq {
namespace {

TEST(FormatTraits, OneRowPerKindAndNamesRoundTrip) {
  const auto& rows = all_format_traits();
  ASSERT_EQ(rows.size(), 4u);
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(size_t(rows[i].kind), i);
    for (int bits = 1; bits <= rows[i].max_bits; ++bits) {
      QuantSpec s;
      s.kind = rows[i].kind;
      s.bits = bits;
      s.group = rows[i].per_row ? 0 : 64;
      const QuantSpec back = parse_quant_spec(s.name());
      EXPECT_EQ(back.kind, s.kind) << s.name();
      EXPECT_EQ(back.bits, bits) << s.name();
      EXPECT_EQ(back.group, s.group) << s.name();
    }
  }
  EXPECT_THROW(format_traits(QuantKind(9)), Error);
  EXPECT_THROW(parse_quant_spec("hlq-w5g128"), Error);  // HLQ stops at 4 bits
}

TEST(FormatTraits, SizesAndDecodingFollowTheDefinitions) {
  QuantSpec s;
  s.bits = 3;
  s.group = 128;
  s.kind = QuantKind::Uniform;
  EXPECT_DOUBLE_EQ(s.bits_per_weight(4096), 3.25);  // scale + zero, fp16 each
  s.kind = QuantKind::HLQ;
  EXPECT_DOUBLE_EQ(s.bits_per_weight(4096), 3.5);  // 3 plane scales + zero
  s.kind = QuantKind::HLQC;
  EXPECT_DOUBLE_EQ(s.bits_per_weight(4096), 3.0 + 40.0 / 128);  // s_0, m, two 4-bit codes
  s.kind = QuantKind::Codebook;
  EXPECT_DOUBLE_EQ(s.bits_per_weight(4096), 3.0 + 128.0 / 4096);  // 8 fp16 entries per row

  const float hlq[4] = {0.5f, 1.0f, 2.0f, -1.0f};  // s_0..s_2, zero
  s.kind = QuantKind::HLQ;
  EXPECT_EQ(dequant_code(s, hlq, 5), -1.0f + 0.5f + 2.0f);
  s.kind = QuantKind::HLQC;  // the same levels around the midpoint
  EXPECT_EQ(dequant_code(s, hlq, 5), -1.0f + 0.25f - 0.5f + 1.0f);
  const float uni[2] = {0.25f, -1.0f};
  s.kind = QuantKind::Uniform;
  EXPECT_EQ(dequant_code(s, uni, 6), -1.0f + 1.5f);
}

// The nearest level as defined, with branches: the lowest code among the nearest levels.
int nearest_as_defined(const std::vector<float>& vals, float x) {
  int best = 0;
  for (size_t c = 1; c < vals.size(); ++c)
    if (std::fabs(x - vals[c]) < std::fabs(x - vals[size_t(best)])) best = int(c);
  return best;
}

// assign_nearest and nearest_level (branch-free) against the definition: every kind and width,
// weights exactly on the levels and half-way between two (ties go to the lowest code),
// coincident levels, infinities and NaN.
TEST(FormatTraits, AssignNearestIsTheLowestNearestCode) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (QuantKind kind : {QuantKind::Uniform, QuantKind::HLQ, QuantKind::Codebook, QuantKind::HLQC}) {
    for (int bits = 1; bits <= format_traits(kind).max_bits; ++bits) {
      const QuantSpec spec{kind, bits, format_traits(kind).per_row ? 0 : 64};
      std::vector<float> p(static_cast<size_t>(spec.params_per_group()));
      for (float& v : p) v = u(rng);
      if (spec.params_per_group() > 2) p[1] = p[0];  // coincident levels where the kind allows
      const int nv = 1 << bits;
      std::vector<float> vals(static_cast<size_t>(nv));
      for (int c = 0; c < nv; ++c) vals[size_t(c)] = dequant_code(spec, p.data(), uint8_t(c));
      std::vector<float> w;
      for (int i = 0; i < 600; ++i) w.push_back(2.0f * u(rng));
      for (int c = 0; c < nv; ++c) {
        w.push_back(vals[size_t(c)]);
        for (int d = 0; d < nv; ++d) w.push_back(0.5f * (vals[size_t(c)] + vals[size_t(d)]));
      }
      w.push_back(std::numeric_limits<float>::infinity());
      w.push_back(-std::numeric_limits<float>::infinity());
      w.push_back(std::numeric_limits<float>::quiet_NaN());
      std::vector<uint8_t> codes(w.size());
      assign_nearest(spec, p.data(), w.data(), int(w.size()), codes.data());
      for (size_t i = 0; i < w.size(); ++i) {
        ASSERT_EQ(int(codes[i]), nearest_as_defined(vals, w[i]))
            << spec.name() << " weight " << i << " = " << w[i];
        ASSERT_EQ(nearest_level(vals.data(), nv, w[i]), int(codes[i])) << spec.name();
      }
    }
  }
}

}  // namespace
}  // namespace elutq
