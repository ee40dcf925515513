// The Q8_0 output head of SmolLM2 (49152 x 576) for 1 and 4 tokens on one thread, per ISA: what
// a decode step and a 4-slot server step pay for the logits. items/s = rows.
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <vector>

#include "core/cpu_features.h"
#include "core/fp16.h"
#include "kernels/dispatch.h"

namespace elutq {
namespace {

constexpr int64_t kRows = 49152, kCols = 576, kBlockBytes = 34;

const std::vector<uint8_t>& head() {
  static const std::vector<uint8_t> w = [] {
    std::vector<uint8_t> b(size_t(kRows * kCols / 32 * kBlockBytes));
    std::mt19937 rng(1);
    for (size_t i = 0; i < b.size(); i += kBlockBytes) {
      const uint16_t d = f32_to_fp16(0.01f);
      std::memcpy(&b[i], &d, 2);
      for (int j = 2; j < kBlockBytes; ++j) b[i + size_t(j)] = uint8_t(rng());
    }
    return b;
  }();
  return w;
}

void run(benchmark::State& state, Isa isa, int tokens) {
  if (!isa_available(isa)) return state.SkipWithError("ISA not available on this CPU");
  const IsaKernels& k = isa_kernels(isa);
  std::vector<float> x(size_t(tokens * kCols), 0.5f), y(size_t(tokens * kRows));
  for (auto _ : state) {
    k.gemv_rows_q8_0_tokens(head().data(), x.data(), kCols, tokens, 0, kRows, y.data(), kRows);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetItemsProcessed(state.iterations() * kRows);
}

void BM_Q8HeadAvx512T1(benchmark::State& s) { run(s, Isa::Avx512, 1); }
void BM_Q8HeadAvx512T4(benchmark::State& s) { run(s, Isa::Avx512, 4); }
void BM_Q8HeadAvx2T4(benchmark::State& s) { run(s, Isa::Avx2, 4); }
BENCHMARK(BM_Q8HeadAvx512T1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Q8HeadAvx512T4)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Q8HeadAvx2T4)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace elutq
