// The machine's memory read bandwidth, measured the way a GEMV reads weights: every thread of the
// pool streams its share of a buffer far larger than the caches. It is the roofline for decode.
#pragma once

#include <cstddef>

namespace elutq {

class ThreadPool;

// Best of `repeats` passes over a `bytes` buffer (allocated and touched once), in GB/s (1e9).
double measure_read_bandwidth(ThreadPool& pool, size_t bytes = size_t(1) << 30, int repeats = 5);

}  // namespace elutq
