// The Q8_0 output head of SmolLM2 (49152 x 576) for 1 and 4 tokens on one thread, per ISA: what
// a decode step and a 4-slot server step pay for the logits. items/s = rows.
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <vector>

#include "core/cpu_features.h"
#include "core/fp16.h"
#include "kernels/dispatch.h"
#include "kernels/q8_rows16.h"

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

// The same head re-laid for the int16-activation kernel (what StoredLinear runs where it exists);
// the activations' rounding is counted too.
void run_rows16(benchmark::State& state, Isa isa, int tokens) {
  if (!isa_available(isa) || !isa_kernels(isa).q8_rows16_i16)
    return state.SkipWithError("no rows16 kernel for this ISA on this CPU");
  static const std::vector<uint8_t> packed = [] {
    std::vector<uint8_t> p(size_t(q8_rows16_bytes(kRows, kCols)));
    q8_rows16_pack(head().data(), kRows, kCols, p.data());
    return p;
  }();
  std::vector<float> x(size_t(tokens * kCols), 0.5f), y(size_t(tokens * kRows));
  std::vector<int16_t> xq(x.size());
  std::vector<float> dx(x.size() / 32);
  for (auto _ : state) {
    for (int t = 0; t < tokens; ++t)
      quantize_activations_i16(x.data() + t * kCols, kCols, xq.data() + t * kCols,
                               dx.data() + t * kCols / 32);
    isa_kernels(isa).q8_rows16_i16(packed.data(), kRows, kCols, xq.data(), dx.data(), tokens, 0,
                                   kRows / 16, y.data(), kRows);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetItemsProcessed(state.iterations() * kRows);
}

void BM_Q8HeadAvx512T1(benchmark::State& s) { run(s, Isa::Avx512, 1); }
void BM_Q8HeadAvx512T4(benchmark::State& s) { run(s, Isa::Avx512, 4); }
void BM_Q8HeadAvx2T1(benchmark::State& s) { run(s, Isa::Avx2, 1); }
void BM_Q8HeadAvx2T4(benchmark::State& s) { run(s, Isa::Avx2, 4); }
void BM_Q8HeadRows16Avx2T1(benchmark::State& s) { run_rows16(s, Isa::Avx2, 1); }
void BM_Q8HeadRows16Avx2T4(benchmark::State& s) { run_rows16(s, Isa::Avx2, 4); }
void BM_Q8HeadRows16Avx512T1(benchmark::State& s) { run_rows16(s, Isa::Avx512, 1); }
void BM_Q8HeadRows16Avx512T4(benchmark::State& s) { run_rows16(s, Isa::Avx512, 4); }
void BM_Q8HeadRows16Avx512T8(benchmark::State& s) { run_rows16(s, Isa::Avx512, 8); }
BENCHMARK(BM_Q8HeadRows16Avx512T1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Q8HeadRows16Avx512T4)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Q8HeadRows16Avx512T8)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Q8HeadAvx512T1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Q8HeadAvx512T4)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Q8HeadAvx2T1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Q8HeadAvx2T4)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Q8HeadRows16Avx2T1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Q8HeadRows16Avx2T4)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace elutq
