// Read-bandwidth probe (see memory_bandwidth.h).
#include "kernels/memory_bandwidth.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

#include "core/thread_pool.h"

namespace elutq {

ReadBandwidthProbe::ReadBandwidthProbe(size_t bytes) : buf_(bytes / 8, 1) {}

double ReadBandwidthProbe::measure(ThreadPool& pool, int repeats) {
  const int64_t words = int64_t(buf_.size());
  const uint64_t* buf = buf_.data();
  std::vector<uint64_t> sums(size_t(pool.size()), 0);
  double best = 0.0;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.run(words, [&](int t, int64_t begin, int64_t end) {
      uint64_t a = 0, b = 0, c = 0, d = 0;  // independent sums keep several loads in flight
      int64_t i = begin;
      for (; i + 4 <= end; i += 4) {
        a += buf[i];
        b += buf[i + 1];
        c += buf[i + 2];
        d += buf[i + 3];
      }
      for (; i < end; ++i) a += buf[i];
      sums[size_t(t)] = a + b + c + d;
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, double(words) * 8.0 / s * 1e-9);
  }
  volatile uint64_t sink = 0;
  for (uint64_t v : sums) sink = sink + v;
  return best;
}

double measure_read_bandwidth(ThreadPool& pool, size_t bytes, int repeats) {
  ReadBandwidthProbe probe(bytes);
  return probe.measure(pool, repeats);
}

}  // namespace elutq
