// The machine's memory read bandwidth, measured the way a GEMV reads weights: every thread of the
// pool streams its share of a buffer far larger than the caches, with the widest vector loads the
// CPU has (memory_bandwidth_isa.h), so that the roofline it gives decode is an upper bound.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/huge_page_buffer.h"

namespace elutq {

class ThreadPool;

// Best of `repeats` passes over a `bytes` buffer (allocated and touched once), in GB/s (1e9).
double measure_read_bandwidth(ThreadPool& pool, size_t bytes = size_t(1) << 30, int repeats = 5);

// The same probe with its buffer kept, for measuring again between benchmark runs: on a shared
// machine the bandwidth available changes from moment to moment, so each run is compared with a
// probe taken right before it.
class ReadBandwidthProbe {
 public:
  explicit ReadBandwidthProbe(size_t bytes = size_t(512) << 20);
  // Best of `repeats` passes, in GB/s (1e9).
  double measure(ThreadPool& pool, int repeats = 2);

 private:
  // On huge pages exactly when the packed weights are (ELUTQ_HUGE_PAGES=1), so both are read
  // through the same kind of pages. Touched once so its pages are mapped.
  HugePageBuffer buf_;
};

}  // namespace elutq
