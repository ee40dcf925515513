// The per-group fits that dominate calibrated HLQ quantization (HLQ-GPTQ, HLQC-GPTQ): one
// 128-weight group fitted with each kind of importance weights: a full Hessian block (the
// refit rounds of our HLQ-GPTQ), its diagonal, or none. Names: fit/hlq|hlqc/B/full|diag|none.
// Each iteration fits 16 groups (items/s = groups/s); the hlqc rows project already fitted free
// groups onto a ratio codebook.
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "quant/hlq_fit.h"
#include "quant/hlqc_fit.h"

namespace elutq {
namespace {

constexpr int kGroup = 128;
constexpr int kGroupsPerRun = 16;  // different weights each, so no run repeats one group

struct FitInputs {
  std::vector<float> H, diag, W, codebook;  // (n, n), (n), (groups, n), (3 * kHlqcRatios)
};

const FitInputs& inputs() {
  static const FitInputs in = [] {
    FitInputs f;
    std::mt19937 rng(5);
    std::normal_distribution<float> d;
    const int rows = 2 * kGroup;
    std::vector<float> X(size_t(rows) * kGroup);
    for (auto& v : X) v = d(rng);
    f.H.resize(size_t(kGroup) * kGroup);
    for (int i = 0; i < kGroup; ++i)  // X^T X / rows + damping: a Hessian-like block
      for (int j = 0; j < kGroup; ++j) {
        double acc = 0;
        for (int t = 0; t < rows; ++t) acc += double(X[size_t(t) * kGroup + i]) * X[size_t(t) * kGroup + j];
        f.H[size_t(i) * kGroup + j] = float(acc / rows) + (i == j ? 0.01f : 0.0f);
      }
    for (int i = 0; i < kGroup; ++i) f.diag.push_back(f.H[size_t(i) * kGroup + i]);
    f.W.resize(size_t(kGroupsPerRun) * kGroup);
    for (auto& v : f.W) v = 0.02f * d(rng);
    for (int b = 1; b < 4; ++b)  // ratios near 2^b, as free HLQ fits give
      for (int k = 0; k < kHlqcRatios; ++k) f.codebook.push_back(float(1 << b) * (0.85f + 0.02f * k));
    return f;
  }();
  return in;
}

GroupWeights weights_of(const FitInputs& in, int kind) {
  GroupWeights gw;
  if (kind == 0) gw.full = in.H.data();
  if (kind == 1) gw.diag = in.diag.data();
  return gw;
}

void bench_fit(benchmark::State& state, bool hlqc, int bits, int kind) {
  const FitInputs& in = inputs();
  const GroupWeights gw = weights_of(in, kind);
  const HlqFitOptions opt;
  std::vector<float> free_p(size_t(kGroupsPerRun) * 5);
  std::vector<uint8_t> free_codes(size_t(kGroupsPerRun) * kGroup);
  if (hlqc)  // the free fits the projection starts from, made once
    for (int g = 0; g < kGroupsPerRun; ++g)
      hlq_fit_group(in.W.data() + g * kGroup, kGroup, bits, gw, opt, free_p.data() + g * 5,
                    free_codes.data() + g * kGroup);
  float p[5];
  uint8_t codes[kGroup], k[3];
  for (auto _ : state) {
    for (int g = 0; g < kGroupsPerRun; ++g) {
      const float* w = in.W.data() + g * kGroup;
      double e;
      if (hlqc) {
        std::copy(free_codes.begin() + g * kGroup, free_codes.begin() + (g + 1) * kGroup, codes);
        e = hlqc_project_group(w, kGroup, bits, gw, in.codebook.data(), free_p.data() + g * 5,
                               codes, p, k);
      } else {
        e = hlq_fit_group(w, kGroup, bits, gw, opt, p, codes);
      }
      benchmark::DoNotOptimize(e);
    }
  }
  state.SetItemsProcessed(state.iterations() * kGroupsPerRun);  // items/s: groups per second
}

const bool registered = [] {
  const char* kinds[] = {"full", "diag", "none"};
  for (bool hlqc : {false, true})
    for (int bits : {2, 3, 4})
      for (int kind = 0; kind < 3; ++kind) {
        const std::string name = std::string("fit/") + (hlqc ? "hlqc/" : "hlq/") +
                                 std::to_string(bits) + "/" + kinds[kind];
        benchmark::RegisterBenchmark(name.c_str(), bench_fit, hlqc, bits, kind)
            ->Unit(benchmark::kMicrosecond);
      }
  return true;
}();

}  // namespace
}  // namespace elutq
