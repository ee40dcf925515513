// `elutq bench`: decode and prefill speed of the LUT kernels over a model's linear layers, with the
// machine's measured memory bandwidth and the resulting roofline. --synthetic ARCH builds random
// packed weights at a real model's shapes, so 7B-class speed is measured without the weights.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "cli.h"
#include "core/cpu_features.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/lut_matmul.h"
#include "kernels/memory_bandwidth.h"
#include "kernels/packed_matrix.h"
#include "quant/qformat.h"

namespace elutq::cli {
namespace {

struct ArchShape {
  const char* name;
  int64_t dim, hidden, layers, kv_dim;
};
// Published configs: LLaMA-2-7B, LLaMA-3-8B (GQA, 8 KV heads), Qwen2.5-7B (GQA, 4 KV heads).
constexpr ArchShape kArchs[] = {
    {"llama2-7b", 4096, 11008, 32, 4096},
    {"llama3-8b", 4096, 14336, 32, 1024},
    {"qwen2.5-7b", 3584, 18944, 28, 512},
};

// One transformer layer's linear weights as the runtime runs them: Q/K/V fused, gate/up fused.
struct Layer {
  PackedMatrix qkv, o, gate_up, down;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int run_bench(int argc, char** argv) {
  CLI::App app(
      "Measure decode (1 token) and prefill (many tokens) speed of the LUT kernels over a model's "
      "linear layers (fused QKV, O, fused gate/up, down in every layer; attention, norms and the "
      "output head are not included), next to the memory-bandwidth roofline.",
      argv[0]);
  std::string arch, format = "hlq-w2g128", isa_arg;
  int threads = 0, runs = 5, prefill_tokens = 64, prefill_runs = 3;
  app.add_option("--synthetic", arch,
                 "random weights at the shapes of llama2-7b, llama3-8b or qwen2.5-7b")
      ->required();
  app.add_option("--format", format, "quantization format, e.g. hlq-w2g128, uniform-w4g128")
      ->capture_default_str();
  app.add_option("--threads", threads, "threads, the calling one included (0 = all cores)")
      ->capture_default_str();
  app.add_option("--runs", runs, "decode runs (one token each); the median is reported")
      ->capture_default_str();
  app.add_option("--prefill-tokens", prefill_tokens, "tokens per prefill run")->capture_default_str();
  app.add_option("--prefill-runs", prefill_runs, "prefill runs (0 = skip prefill)")
      ->capture_default_str();
  app.add_option("--isa", isa_arg, "force scalar, avx2, avx512 or neon (default: best available)");
  int code = 0;
  if (!parse(app, argc, argv, &code)) return code;

  const ArchShape* a = nullptr;
  for (const ArchShape& s : kArchs)
    if (arch == s.name) a = &s;
  require(a != nullptr, "unknown --synthetic architecture '", arch,
          "'; use llama2-7b, llama3-8b or qwen2.5-7b");
  const QuantSpec spec = parse_quant_spec(format);
  require(runs >= 1 && prefill_runs >= 0 && prefill_tokens >= 1,
          "--runs and --prefill-tokens must be at least 1, --prefill-runs at least 0");
  const Isa isa = isa_arg.empty() ? active_isa() : parse_isa(isa_arg);
  ThreadPool pool(threads);

  std::printf("model: synthetic %s, %lld layers, dim %lld, hidden %lld, kv dim %lld; format %s\n",
              a->name, (long long)a->layers, (long long)a->dim, (long long)a->hidden,
              (long long)a->kv_dim, spec.name().c_str());
  std::vector<Layer> layers(size_t(a->layers));
  double bytes = 0, weights = 0;
  for (int64_t l = 0; l < a->layers; ++l) {
    Layer& L = layers[size_t(l)];
    L.qkv = PackedMatrix::synthetic(spec, a->dim + 2 * a->kv_dim, a->dim, uint64_t(4 * l + 1));
    L.o = PackedMatrix::synthetic(spec, a->dim, a->dim, uint64_t(4 * l + 2));
    L.gate_up = PackedMatrix::synthetic(spec, 2 * a->hidden, a->dim, uint64_t(4 * l + 3));
    L.down = PackedMatrix::synthetic(spec, a->dim, a->hidden, uint64_t(4 * l + 4));
    for (const PackedMatrix* m : {&L.qkv, &L.o, &L.gate_up, &L.down}) {
      bytes += double(m->weight_bytes());
      weights += double(m->rows() * m->cols());
    }
  }
  std::printf("linear weights: %.2f G, %.2f GB packed (%.3f bits/weight); kernels: %s, %d threads\n",
              weights * 1e-9, bytes * 1e-9, bytes * 8 / weights, isa_name(isa), pool.size());
  const double bw = measure_read_bandwidth(pool);
  const double roofline = bw * 1e9 / bytes;
  std::printf("memory read bandwidth: %.1f GB/s -> decode roofline %.2f tok/s\n", bw, roofline);

  // Activations (tokens, features), random: speed does not depend on the values.
  const int64_t max_n = std::max<int64_t>(1, prefill_runs > 0 ? prefill_tokens : 1);
  const int64_t width = std::max(a->dim + 2 * a->kv_dim, 2 * a->hidden);
  std::vector<float> x(size_t(max_n * std::max(a->dim, a->hidden)));
  std::vector<float> y(size_t(max_n * width));
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  for (float& v : x) v = nd(rng);
  auto forward = [&](int64_t n) {
    for (const Layer& L : layers) {
      lut_gemm_isa(isa, L.qkv, x.data(), n, y.data(), &pool);
      lut_gemm_isa(isa, L.o, x.data(), n, y.data(), &pool);
      lut_gemm_isa(isa, L.gate_up, x.data(), n, y.data(), &pool);
      lut_gemm_isa(isa, L.down, x.data(), n, y.data(), &pool);
    }
  };
  auto timed = [&](int64_t n, int count) {
    forward(n);  // warm-up: page faults, scratch buffers
    std::vector<double> rates;
    for (int r = 0; r < count; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      forward(n);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      rates.push_back(double(n) / s);
    }
    return rates;
  };
  const std::vector<double> dec = timed(1, runs);
  const double dmed = median(dec);
  std::printf("decode: %.2f tok/s median of %d (min %.2f, max %.2f); %.1f GB/s of weights; "
              "%.0f%% of the roofline\n",
              dmed, runs, *std::min_element(dec.begin(), dec.end()),
              *std::max_element(dec.begin(), dec.end()), dmed * bytes * 1e-9,
              100.0 * dmed / roofline);
  if (prefill_runs > 0) {
    const std::vector<double> pre = timed(prefill_tokens, prefill_runs);
    const double pmed = median(pre);
    std::printf("prefill (%d tokens): %.2f tok/s median of %d (min %.2f, max %.2f); %.1fx decode\n",
                prefill_tokens, pmed, prefill_runs, *std::min_element(pre.begin(), pre.end()),
                *std::max_element(pre.begin(), pre.end()), pmed / dmed);
  }
  return 0;
}

const VerbRegistrar reg({"bench", "measure decode/prefill speed against the memory roofline",
                         run_bench});

}  // namespace
}  // namespace elutq::cli
