// PackedCodes: every width gives back every code, over ranges that start and end inside a byte.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "core/error.h"
#include "tensor/packed_codes.h"

namespace elutq {
namespace {

TEST(PackedCodes, EveryWidthRoundTripsOverUnalignedRanges) {
  std::mt19937 rng(7);
  for (int bits = 1; bits <= 8; ++bits) {
    const int64_t n = 1000 + bits;  // not a multiple of any codes-per-byte
    std::vector<uint8_t> codes(static_cast<size_t>(n));
    for (uint8_t& c : codes) c = uint8_t(rng() % (1u << bits));
    const PackedCodes p(codes.data(), n, bits);
    const int width = bits <= 1 ? 1 : bits <= 2 ? 2 : bits <= 4 ? 4 : 8;
    EXPECT_EQ(p.width(), width) << bits;
    EXPECT_EQ(p.bytes(), uint64_t((n * width + 7) / 8)) << bits;
    for (auto [b, e] : {std::pair<int64_t, int64_t>{0, n}, {3, 3}, {1, 2}, {5, 998}, {7, n}}) {
      std::vector<uint8_t> out(static_cast<size_t>(e - b), 0xAA);
      p.unpack(b, e, out.data());
      EXPECT_EQ(out, std::vector<uint8_t>(codes.begin() + b, codes.begin() + e))
          << bits << " bits, [" << b << ", " << e << ")";
    }
  }
}

TEST(PackedCodes, RefusesCodesThatDoNotFitAndRangesOutside) {
  const std::vector<uint8_t> codes = {0, 1, 2, 4};
  EXPECT_THROW(PackedCodes(codes.data(), 4, 2), Error);  // 4 needs 3 bits
  EXPECT_THROW(PackedCodes(codes.data(), 4, 0), Error);
  EXPECT_THROW(PackedCodes(codes.data(), 4, 9), Error);
  const PackedCodes p(codes.data(), 4, 3);
  std::vector<uint8_t> out(8);
  EXPECT_THROW(p.unpack(2, 5, out.data()), Error);
  EXPECT_THROW(p.unpack(3, 2, out.data()), Error);
}

}  // namespace
}  // namespace elutq
