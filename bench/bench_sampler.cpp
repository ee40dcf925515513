// One draw from a 49152-token vocabulary (SmolLM2's), as the server makes for every token of every
// request: temperature 0.7 with no truncation (the OpenAI defaults), with top-p 0.95, and with
// top-k 40. Logits: normal with sd 2, plus a few tokens well above the rest as a language model
// puts them ("peaked"), or without them ("flat", where a draw reaches deep into the vocabulary).
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "generate/sampler.h"

namespace elutq {
namespace {

constexpr int kVocab = 49152;

std::vector<float> logits(bool peaked) {
  std::mt19937 g(3);
  std::normal_distribution<float> d(0.f, 2.f);
  std::vector<float> l(kVocab);
  for (auto& x : l) x = d(g);
  if (peaked)
    for (int i = 0; i < 8; ++i) l[size_t(g() % kVocab)] = 14.f - float(i);
  return l;
}

void run(benchmark::State& state, SamplerOptions o, bool peaked) {
  const std::vector<float> l = logits(peaked);
  Sampler s(o);
  for (auto _ : state) benchmark::DoNotOptimize(s.sample(l.data(), kVocab));
  state.SetItemsProcessed(state.iterations());
}

void BM_SampleUntruncatedPeaked(benchmark::State& st) { run(st, {.temperature = 0.7f, .top_k = 0, .top_p = 1.f, .min_p = 0.f}, true); }
void BM_SampleUntruncatedFlat(benchmark::State& st) { run(st, {.temperature = 0.7f, .top_k = 0, .top_p = 1.f, .min_p = 0.f}, false); }
void BM_SampleTopP95Peaked(benchmark::State& st) { run(st, {.temperature = 0.7f, .top_k = 0, .top_p = 0.95f, .min_p = 0.f}, true); }
void BM_SampleTopK40Peaked(benchmark::State& st) { run(st, {.temperature = 0.7f, .top_k = 40, .top_p = 1.f, .min_p = 0.f}, true); }
BENCHMARK(BM_SampleUntruncatedPeaked);
BENCHMARK(BM_SampleUntruncatedFlat);
BENCHMARK(BM_SampleTopP95Peaked);
BENCHMARK(BM_SampleTopK40Peaked);

}  // namespace
}  // namespace elutq
