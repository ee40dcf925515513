#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <fstream>
#include <vector>

#include "core/aligned_vector.h"
#include "core/error.h"
#include "core/fp16.h"
#include "core/mapped_file.h"
#include "core/thread_pool.h"
#include "test_util.h"

namespace elutq {
namespace {

TEST(AlignedVector, StartsOnACacheLineAtEverySizeAndAfterGrowing) {
  for (size_t n : {size_t(1), size_t(17), size_t(4096), size_t(1) << 20}) {
    AlignedVector<int8_t> v(n, 3);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(v.data()) % 64, 0u) << n;
    v.resize(3 * n + 5, 4);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(v.data()) % 64, 0u) << n;
    EXPECT_EQ(v[0], 3);
    EXPECT_EQ(v.back(), 4);
  }
}

TEST(ThreadPool, CoversEveryIndexOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 7, 1000}) {
      std::vector<std::atomic<int>> hits(n);
      pool.parallel_for(n, [&](int64_t i) { hits[i]++; });
      for (int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 1) << "n=" << n << " i=" << i;
    }
  }
}

TEST(ThreadPool, RunsOnEveryThread) {
  ThreadPool pool(4);
  std::vector<std::atomic<int>> seen(4);
  for (int rep = 0; rep < 100; ++rep) pool.on_each_thread([&](int t) { seen[t]++; });
  for (auto& s : seen) EXPECT_EQ(s.load(), 100);
}

TEST(Fp16, RoundTripsEveryHalf) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = fp16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(f32_to_fp16(f), h) << "h=" << h;
  }
}

TEST(Fp16, RoundsToNearestEven) {
  EXPECT_EQ(fp16_to_f32(f32_to_fp16(1.0f + 1.0f / 2048)), 1.0f);  // tie goes to even
  EXPECT_EQ(fp16_to_f32(f32_to_fp16(1.0f + 3.0f / 2048)), 1.0f + 2.0f / 1024);
  EXPECT_TRUE(std::isinf(fp16_to_f32(f32_to_fp16(70000.0f))));
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.5f)), 1.5f);
}

TEST(MappedFile, RejectsRangesPastTheEnd) {
  test::TempDir dir;
  std::ofstream(dir.file("x")) << "hello";
  MappedFile f(dir.file("x"));
  EXPECT_EQ(f.size(), 5u);
  EXPECT_NO_THROW(f.check_range(0, 5, "data"));
  EXPECT_THROW(f.check_range(3, 3, "data"), Error);
  EXPECT_THROW(f.check_range(~0ull, 2, "data"), Error);
  EXPECT_THROW(MappedFile(dir.file("missing")), Error);
}

}  // namespace
}  // namespace elutq
