// The read loops of the bandwidth probe, one per instruction set (memory_bandwidth_*.cpp; the
// tables of dispatch.h pick one). Each returns the wrapping sum of words[0..n) so the loads cannot
// be optimised away; all agree. Internal to src/kernels.
#pragma once

#include <cstdint>

namespace elutq {

uint64_t stream_read_portable(const uint64_t* words, int64_t n);
uint64_t stream_read_avx2(const uint64_t* words, int64_t n);
uint64_t stream_read_avx512(const uint64_t* words, int64_t n);

}  // namespace elutq
