// The format trait table: one row per QuantKind, in enum order, and every row's name, size and
// reference decoding agree with what the formats are defined to be (tensor/qformat.h).
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace elutq
