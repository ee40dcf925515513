// K-quant rows against int8 activations (kernels/kquant_gemm.h) on one thread, per ISA: an
// 8960 x 1536 matrix (Qwen2.5-1.5B's gate/up shape; 7.7 MB in Q4_K, cache-resident, so the
// kernels' own speed) and a 64-matrix stack of the same (500 MB, from memory: what decode sees),
// for 1, 4 and 64 tokens. items/s = weights x tokens (multiply-adds).
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <vector>

#include "core/cpu_features.h"
#include "core/fp16.h"
#include "kernels/dispatch.h"
#include "kernels/kquant_gemm.h"
#include "tensor/dtype.h"

namespace elutq {
namespace {

constexpr int64_t kRows = 8960, kCols = 1536;

int64_t block_bytes(DType t) { return t == DType::Q4_K ? kQ4KBlockBytes : kQ6KBlockBytes; }

std::vector<uint8_t> random_rows(DType t, int64_t rows) {
  const int64_t bb = block_bytes(t);
  std::vector<uint8_t> w(size_t(rows * kCols / kQK * bb));
  std::mt19937 rng(1);
  for (auto& v : w) v = uint8_t(rng());
  const uint16_t d = f32_to_fp16(0.001f);
  for (size_t off = 0; off < w.size(); off += size_t(bb)) {
    if (t == DType::Q6_K) {
      std::memcpy(&w[off + 208], &d, 2);
    } else {
      std::memcpy(&w[off], &d, 2);
      std::memcpy(&w[off + 2], &d, 2);
    }
  }
  return w;
}

void run(benchmark::State& state, Isa isa, DType t, int tokens, int64_t stack) {
  if (!isa_available(isa)) return state.SkipWithError("ISA not available on this CPU");
  const IsaKernels& k = isa_kernels(isa);
  const kern::KQuantGemmFn fn = kquant_kernel(k, t);
  const std::vector<uint8_t> w = random_rows(t, kRows * stack);
  std::vector<float> x(size_t(tokens * kCols));
  std::mt19937 rng(2);
  std::normal_distribution<float> nd;
  for (float& v : x) v = nd(rng);
  std::vector<int8_t> q(x.size());
  std::vector<float> d(x.size() / kQK);
  std::vector<int16_t> bs(x.size() / 16);
  for (int tk = 0; tk < tokens; ++tk)
    quantize_activations_q8k(x.data() + tk * kCols, kCols, q.data() + tk * kCols,
                             d.data() + tk * kCols / kQK, bs.data() + tk * kCols / 16);
  const Q8KActivations a{q.data(), d.data(), bs.data(), kCols, tokens};
  std::vector<float> y(size_t(tokens * kRows));
  int64_t m = 0;
  for (auto _ : state) {
    fn(w.data() + (m % stack) * kRows * kCols / kQK * block_bytes(t), a, 0, kRows, y.data(), kRows);
    benchmark::DoNotOptimize(y.data());
    ++m;
  }
  state.SetItemsProcessed(state.iterations() * kRows * kCols * tokens);
  state.SetBytesProcessed(state.iterations() * kRows * kCols / kQK * block_bytes(t));
}

void register_all() {
  for (Isa isa : {Isa::Scalar, Isa::Avx2})
    for (DType t : {DType::Q4_K, DType::Q6_K})
      for (int tokens : {1, 4, 64})
        for (int64_t stack : {int64_t(1), int64_t(64)}) {
          if (isa == Isa::Scalar && (tokens > 1 || stack > 1)) continue;
          const std::string name = std::string("KQuant/") + isa_name(isa) + "/" + dtype_name(t) +
                                   "/tokens:" + std::to_string(tokens) +
                                   (stack > 1 ? "/from_memory" : "/in_cache");
          benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& s) {
            run(s, isa, t, tokens, stack);
          })->Unit(benchmark::kMillisecond);
        }
}

const int registered = (register_all(), 0);

}  // namespace
}  // namespace elutq
