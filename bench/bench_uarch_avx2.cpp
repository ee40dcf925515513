// What the AVX2 LUT kernels run against on this CPU: the throughput of the instructions their
// inner loops are made of. Each benchmark runs eight independent chains of one instruction (or of
// two kinds, four chains each) and reports counter "time/op", the time per instruction.
// uarch/avx2/add_latency runs one dependent chain of 1-cycle adds instead: its time/op is about
// the core's cycle time, and the others' time/op divided by it is cycles per instruction. On Zen 3,
// for example, vpshufb and vpsrlw share two pipes while vpaddw has four, and 256-bit loads go two
// a cycle, so a unit's lookups (4 vpshufb, 4 vpsrlw, 8 vpaddw) need at least 4 cycles
// (docs/notes/2026-12-04-avx2-prefill-zen3.md).
// Registered only where the CPU runs AVX2; the functions carry their own target attribute, so this
// file needs no AVX2 compiler flag.
#if defined(__x86_64__)
#include <benchmark/benchmark.h>
#include <immintrin.h>

#include <cstdint>

#include "core/cpu_features.h"

namespace elutq {
namespace {

constexpr int64_t kTurns = 1 << 16;  // loop turns per benchmark iteration

#define ELUTQ_AVX2 __attribute__((target("avx2")))

// Eight registers (named, not an array: GCC kept an array in memory) the compiler must keep and
// update every turn; the empty asm hides their values.
#define ELUTQ_KEEP8() \
  asm volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5), "+x"(a6), "+x"(a7))
#define ELUTQ_USE8() asm volatile("" : : "x"(a0), "x"(a1), "x"(a2), "x"(a3), "x"(a4), "x"(a5), "x"(a6), "x"(a7))

// Uses a register's final value without taking its address (benchmark::DoNotOptimize would, and
// GCC then kept the chain in memory: a store and a reload each turn).
#define ELUTQ_USE(v) asm volatile("" : : "x"(v))

void report(benchmark::State& state, int ops_per_turn) {
  // A rate inverted: seconds per instruction (printed with an SI prefix, e.g. 86.1ps).
  state.counters["time/op"] =
      benchmark::Counter(double(state.iterations()) * double(kTurns) * ops_per_turn,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

ELUTQ_AVX2 void add_latency(benchmark::State& state) {
  const __m256i k = _mm256_set1_epi16(3);
  __m256i x = _mm256_setzero_si256();
  for (auto _ : state)
    for (int64_t i = 0; i < kTurns; ++i) {
      x = _mm256_add_epi16(x, k);
      asm volatile("" : "+x"(x));
    }
  ELUTQ_USE(x);
  report(state, 1);
}

// kind: 0 vpaddw, 1 vpsrlw, 2 vpshufb, 3 four vpshufb + four vpsrlw, 4 four vpshufb + four vpaddw
template <int kind>
ELUTQ_AVX2 inline __m256i op(__m256i v, __m256i k, bool first_half) {
  if (kind == 0 || (kind == 4 && !first_half)) return _mm256_add_epi16(v, k);
  if (kind == 1 || (kind == 3 && !first_half)) return _mm256_srli_epi16(v, 1);
  return _mm256_shuffle_epi8(v, k);
}

template <int kind>
ELUTQ_AVX2 void eight_chains(benchmark::State& state) {
  const __m256i k = _mm256_set1_epi16(3);
  __m256i a0 = _mm256_set1_epi16(1), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  for (auto _ : state)
    for (int64_t i = 0; i < kTurns; ++i) {
      a0 = op<kind>(a0, k, true);
      a1 = op<kind>(a1, k, true);
      a2 = op<kind>(a2, k, true);
      a3 = op<kind>(a3, k, true);
      a4 = op<kind>(a4, k, false);
      a5 = op<kind>(a5, k, false);
      a6 = op<kind>(a6, k, false);
      a7 = op<kind>(a7, k, false);
      ELUTQ_KEEP8();
    }
  ELUTQ_USE8();
  report(state, 8);
}

// Eight loads per turn from an L1-resident buffer: 256-bit (vmovdqu) or a 128-bit broadcast to
// both lanes (vbroadcasti128, how the kernels load a table).
template <bool kBroadcast>
ELUTQ_AVX2 inline __m256i load(const int8_t* p, int j) {
  return kBroadcast
             ? _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(p + 16 * j)))
             : _mm256_load_si256(reinterpret_cast<const __m256i*>(p + 32 * j));
}

template <bool kBroadcast>
ELUTQ_AVX2 void eight_loads(benchmark::State& state) {
  alignas(64) static int8_t buf[1024] = {};
  const int8_t* p = buf;
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
          a7 = a0;
  for (auto _ : state)
    for (int64_t i = 0; i < kTurns; ++i) {
      a0 = load<kBroadcast>(p, 0);
      a1 = load<kBroadcast>(p, 1);
      a2 = load<kBroadcast>(p, 2);
      a3 = load<kBroadcast>(p, 3);
      a4 = load<kBroadcast>(p, 4);
      a5 = load<kBroadcast>(p, 5);
      a6 = load<kBroadcast>(p, 6);
      a7 = load<kBroadcast>(p, 7);
      ELUTQ_KEEP8();
      asm volatile("" : "+r"(p));  // the loads are redone every turn
    }
  ELUTQ_USE8();
  report(state, 8);
}

const bool registered = [] {
  if (!cpu_features().avx2) return false;
  benchmark::RegisterBenchmark("uarch/avx2/add_latency", add_latency);
  benchmark::RegisterBenchmark("uarch/avx2/vpaddw", eight_chains<0>);
  benchmark::RegisterBenchmark("uarch/avx2/vpsrlw", eight_chains<1>);
  benchmark::RegisterBenchmark("uarch/avx2/vpshufb", eight_chains<2>);
  benchmark::RegisterBenchmark("uarch/avx2/vpshufb+vpsrlw", eight_chains<3>);
  benchmark::RegisterBenchmark("uarch/avx2/vpshufb+vpaddw", eight_chains<4>);
  benchmark::RegisterBenchmark("uarch/avx2/load256", eight_loads<false>);
  benchmark::RegisterBenchmark("uarch/avx2/broadcast128", eight_loads<true>);
  return true;
}();

}  // namespace
}  // namespace elutq
#endif  // __x86_64__
