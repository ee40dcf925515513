// HugePageBuffer: zero-filled memory of the asked size that survives moves, with and without huge
// pages; when they are asked for (Linux), 2 MiB-aligned and actually backed by huge pages where THP
// allows it.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "core/huge_page_buffer.h"
#include "core/memory_usage.h"

namespace elutq {
namespace {

constexpr size_t kMiB = size_t(1) << 20;

bool all_zero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (p[i] != 0) return false;
  return true;
}

TEST(HugePageBuffer, SmallAndLargeBuffersAreZeroedAndWritable) {
  for (bool huge : {false, true})
  for (size_t n : {size_t(1), size_t(4095), size_t(64) << 10, 2 * kMiB, 5 * kMiB + 123}) {
    HugePageBuffer b(n, huge);
    ASSERT_EQ(b.size(), n);
    ASSERT_NE(b.data(), nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % 64, 0u) << n << (huge ? " huge" : "");
    EXPECT_TRUE(all_zero(b.data(), n)) << n << (huge ? " huge" : "");
    std::memset(b.data(), 0xab, n);  // every byte writable (ASan checks the bounds)
    EXPECT_EQ(b.data()[n - 1], 0xab);
  }
  HugePageBuffer empty;
  EXPECT_TRUE(empty.empty());
  EXPECT_EQ(HugePageBuffer(0).size(), 0u);
}

TEST(HugePageBuffer, MovesKeepTheBytesAndEmptyTheSource) {
  HugePageBuffer a(3 * kMiB, true);
  a.data()[12345] = 7;
  const uint8_t* p = a.data();
  HugePageBuffer b(std::move(a));
  EXPECT_EQ(b.data(), p);
  EXPECT_EQ(b.data()[12345], 7);
  EXPECT_TRUE(a.empty());
  HugePageBuffer c(10);
  c = std::move(b);
  EXPECT_EQ(c.data(), p);
  EXPECT_EQ(c.size(), 3 * kMiB);
  EXPECT_TRUE(b.empty());
}

#if defined(__linux__)
TEST(HugePageBuffer, LargeBuffersStartOnAHugePageBoundary) {
  HugePageBuffer b(4 * kMiB, true);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % (2 * kMiB), 0u);
}

TEST(HugePageBuffer, IsBackedByHugePagesWhereTheSystemAllowsThem) {
  const std::string mode = transparent_huge_page_mode();
  if (mode != "always" && mode != "madvise") {
    GTEST_SKIP() << "transparent huge pages are '" << mode << "' here (need always or madvise)";
  }
  const uint64_t before = anon_huge_page_bytes();
  HugePageBuffer b(64 * kMiB, true);
  std::memset(b.data(), 1, b.size());  // fault the pages in
  const uint64_t after = anon_huge_page_bytes();
  // Not all 32 huge pages need be granted (fragmented memory); most should be.
  EXPECT_GE(after, before + 32 * kMiB) << "huge pages before " << before << ", after " << after;
}
#endif

}  // namespace
}  // namespace elutq
