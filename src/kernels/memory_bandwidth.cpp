// Read-bandwidth probe (see memory_bandwidth.h).
#include "kernels/memory_bandwidth.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/dispatch.h"
#include "kernels/memory_bandwidth_isa.h"

namespace elutq {

uint64_t stream_read_portable(const uint64_t* words, int64_t n) {
  uint64_t a = 0, b = 0, c = 0, d = 0;  // independent sums keep several loads in flight
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    a += words[i];
    b += words[i + 1];
    c += words[i + 2];
    d += words[i + 3];
  }
  for (; i < n; ++i) a += words[i];
  return a + b + c + d;
}

ReadBandwidthProbe::ReadBandwidthProbe(size_t bytes) : buf_(bytes / 8 * 8) {
  std::memset(buf_.data(), 1, buf_.size());  // fault every page in before any timing
}

double ReadBandwidthProbe::measure(ThreadPool& pool, int repeats) {
  const int64_t words = int64_t(buf_.size() / 8);
  const uint64_t* buf = reinterpret_cast<const uint64_t*>(buf_.data());
  const auto read = active_kernels().stream_read;
  std::vector<uint64_t> sums(size_t(pool.size()), 0);
  double best = 0.0;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.run(words, [&](int t, int64_t begin, int64_t end) {
      sums[size_t(t)] = read(buf + begin, end - begin);
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
