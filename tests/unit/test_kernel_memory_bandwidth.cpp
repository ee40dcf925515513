// The bandwidth probe: every read loop the CPU runs sums the same words (so each really reads all
// of them), and a probe measurement is a positive, finite rate.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/cpu_features.h"
#include "core/thread_pool.h"
#include "kernels/dispatch.h"
#include "kernels/memory_bandwidth.h"
#include "kernels/memory_bandwidth_isa.h"

namespace elutq {
namespace {

uint64_t plain_sum(const std::vector<uint64_t>& w, int64_t begin, int64_t n) {
  uint64_t s = 0;
  for (int64_t i = begin; i < begin + n; ++i) s += w[size_t(i)];
  return s;
}

TEST(MemoryBandwidth, EveryReadLoopSumsEveryWord) {
  std::mt19937_64 rng(3);
  std::vector<uint64_t> w(5000);
  for (uint64_t& v : w) v = rng();
  std::vector<uint64_t (*)(const uint64_t*, int64_t)> loops = {stream_read_portable,
                                                                active_kernels().stream_read};
#if defined(__x86_64__)
  if (isa_available(Isa::Avx2)) loops.push_back(stream_read_avx2);
  if (isa_available(Isa::Avx512)) loops.push_back(stream_read_avx512);
#endif
  // Odd starts and lengths: tails shorter than one vector step, unaligned loads.
  for (int64_t begin : {0, 1, 3, 7})
    for (int64_t n : {0, 1, 15, 16, 31, 32, 33, 100, 4093})
      for (auto loop : loops)
        EXPECT_EQ(loop(w.data() + begin, n), plain_sum(w, begin, n)) << begin << " " << n;
}

TEST(MemoryBandwidth, ProbeGivesAPositiveRate) {
  ThreadPool pool(2);
  ReadBandwidthProbe probe(size_t(8) << 20);
  const double gbs = probe.measure(pool, 2);
  EXPECT_GT(gbs, 0.0);
  EXPECT_TRUE(std::isfinite(gbs));
}

}  // namespace
}  // namespace elutq
