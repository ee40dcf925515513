// `elutq bench`: decode and prefill speed of the LUT kernels next to the machine's memory-bandwidth
// roofline. --synthetic ARCH builds random packed weights at a real model's shapes (its linear
// layers only), so 7B-class speed is measured without the weights; -m FILE runs a real model file
// end to end (bench_model.cpp). The bandwidth is probed again right before every timed run and
// each run is set against its own probe, because on a shared machine both move together.
#include "bench_common.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "cli.h"
#include "core/cpu_features.h"
#include "core/error.h"
#include "core/huge_page_buffer.h"
#include "core/memory_usage.h"
#include "core/thread_pool.h"
#include "format/synthetic_source.h"
#include "kernels/lut_matmul.h"
#include "kernels/memory_bandwidth.h"
#include "kernels/packed_matrix.h"
#include "model/lut_linear.h"
#include "model/model.h"
#include "runtime/quantized_linear_factory.h"
#include "tensor/qformat.h"

namespace elutq::cli {

double median(std::vector<double> v) {
  require(!v.empty(), "median of no values");
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::string load_average() {
  FILE* f = std::fopen("/proc/loadavg", "r");
  if (!f) return "unknown";
  double a = 0, b = 0, c = 0;
  const int got = std::fscanf(f, "%lf %lf %lf", &a, &b, &c);
  std::fclose(f);
  if (got != 3) return "unknown";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f %.2f %.2f", a, b, c);
  return buf;
}

void print_huge_page_line(double weight_bytes) {
  if (!huge_pages_requested()) return;  // off by default: see core/huge_page_buffer.h
  const std::string mode = transparent_huge_page_mode();
  std::printf("huge pages (ELUTQ_HUGE_PAGES=1): %.2f GB of this process's memory (packed weights "
              "%.2f GB); transparent huge pages '%s'\n",
              double(anon_huge_page_bytes()) * 1e-9, weight_bytes * 1e-9,
              mode.empty() ? "unknown" : mode.c_str());
}

void report_decode(const std::vector<RunSample>& runs, double bytes_per_token) {
  std::vector<double> rate, bw, frac;
  for (const RunSample& r : runs) {
    rate.push_back(r.tokens_per_s);
    bw.push_back(r.bandwidth_gbs);
    frac.push_back(r.tokens_per_s * bytes_per_token * 1e-9 / r.bandwidth_gbs);
  }
  const double med = median(rate);
  std::printf("memory read bandwidth (probed before each run): median %.1f GB/s (min %.1f, max %.1f)"
              " -> decode roofline %.2f tok/s\n",
              median(bw), *std::min_element(bw.begin(), bw.end()),
              *std::max_element(bw.begin(), bw.end()), median(bw) * 1e9 / bytes_per_token);
  std::printf("decode: %.2f tok/s median of %zu (min %.2f, max %.2f); %.1f GB/s of weights; "
              "%.0f%% of the roofline (median of per-run fractions; min %.0f%%, max %.0f%%)\n",
              med, runs.size(), *std::min_element(rate.begin(), rate.end()),
              *std::max_element(rate.begin(), rate.end()), med * bytes_per_token * 1e-9,
              100.0 * median(frac), 100.0 * *std::min_element(frac.begin(), frac.end()),
              100.0 * *std::max_element(frac.begin(), frac.end()));
}

void report_prefill(const std::vector<double>& rates, int tokens, double decode_median) {
  const double pmed = median(rates);
  std::printf("prefill (%d tokens): %.2f tok/s median of %zu (min %.2f, max %.2f); %.1fx decode\n",
              tokens, pmed, rates.size(), *std::min_element(rates.begin(), rates.end()),
              *std::max_element(rates.begin(), rates.end()), pmed / decode_median);
}

namespace {

struct ArchShape {
  const char* name;
  int64_t dim, hidden, layers, kv_dim;
  int heads, vocab;
  const char* arch;
  float rope_theta;
};
// Published configs: LLaMA-2-7B, LLaMA-3-8B (GQA, 8 KV heads), Qwen2.5-7B (GQA, 4 KV heads).
constexpr ArchShape kArchs[] = {
    {"llama2-7b", 4096, 11008, 32, 4096, 32, 32000, "llama", 10000.0f},
    {"llama3-8b", 4096, 14336, 32, 1024, 32, 128256, "llama", 500000.0f},
    {"qwen2.5-7b", 3584, 18944, 28, 512, 28, 152064, "qwen2", 1000000.0f},
};

const ArchShape& find_arch(const std::string& name) {
  for (const ArchShape& s : kArchs)
    if (name == s.name) return s;
  fail("unknown --synthetic architecture '", name, "'; use llama2-7b, llama3-8b or qwen2.5-7b");
}

// The whole model at the architecture's shapes (SyntheticSource), every projection and the
// output head random packed matrices of the format on the LUT kernels.
int run_synthetic_full(const BenchOptions& o) {
  const ArchShape& a = find_arch(o.synthetic);
  ModelConfig c;
  c.arch = a.arch;
  c.n_layers = int(a.layers);
  c.dim = int(a.dim);
  c.hidden_dim = int(a.hidden);
  c.n_heads = a.heads;
  c.head_dim = int(a.dim) / a.heads;
  c.n_kv_heads = int(a.kv_dim) / c.head_dim;
  c.vocab_size = a.vocab;
  c.max_seq_len = 4096;
  c.rope_theta = a.rope_theta;
  c.attn_bias = std::string(a.arch) == "qwen2";
  const SyntheticSource src(c, 7);
  const QuantSpec spec = parse_quant_spec(o.format);
  const Isa isa = o.isa.empty() ? active_isa() : parse_isa(o.isa);
  const LutTables tables = parse_lut_tables(o.lut_tables);
  const UnitLayout layout = lut_unit_layout(isa);
  uint64_t seed = 1;
  ModelOptions mo;
  size_for_bench(o, &mo);
  mo.linear_factory = [&](const ModelSource&, const TensorInfo& t) -> std::unique_ptr<Linear> {
    require(SyntheticSource::weightless(t), "internal: synthetic tensor ", t.name, " has bytes");
    PackedMatrix w = PackedMatrix::synthetic(spec, t.shape[0], t.shape[1], seed++, layout);
    const LutTables tb = resolve_lut_tables(tables, spec.bits, w.header().group_padded, isa);
    return std::make_unique<LutLinear>(std::move(w), isa, tb);
  };
  std::printf("synthetic %s, whole model (embedding, attention with its KV cache, norms, "
              "SwiGLU, output head); every projection and the head random %s\n",
              a.name, spec.name().c_str());
  Model m(src, mo);
  print_huge_page_line(0);
  return bench_loaded_model(m, std::string("synthetic ") + a.name, o);
}

// One transformer layer's linear weights. They run as the runtime runs them (model.cpp): Q, K
// and V as one job on the same input (forward_same_input -> lut_gemm_same_input_isa), then O,
// then gate and up as one job, then down.
struct Layer {
  PackedMatrix q, k, v, o, gate, up, down;
};

int run_synthetic(const BenchOptions& o) {
  if (o.full) return run_synthetic_full(o);
  const ArchShape* a = &find_arch(o.synthetic);
  const QuantSpec spec = parse_quant_spec(o.format);
  const Isa isa = o.isa.empty() ? active_isa() : parse_isa(o.isa);
  const LutTables tables = parse_lut_tables(o.lut_tables);
  ThreadPool pool(o.threads);

  std::printf("model: synthetic %s linear layers (Q/K/V as one job, O, gate/up as one job, down; "
              "attention, norms and the output head not included), %lld layers, dim %lld, hidden "
              "%lld, kv dim %lld; format %s\n",
              a->name, (long long)a->layers, (long long)a->dim, (long long)a->hidden,
              (long long)a->kv_dim, spec.name().c_str());
  std::printf("load average at start: %s on %d hardware threads\n", load_average().c_str(),
              hardware_threads());
  std::vector<Layer> layers(size_t(a->layers));
  double bytes = 0, weights = 0;
  const UnitLayout layout = lut_unit_layout(isa);  // random bits: made in the kernels' order
  for (int64_t l = 0; l < a->layers; ++l) {
    Layer& L = layers[size_t(l)];
    auto make = [&](int64_t rows, int64_t cols, int slot) {
      return PackedMatrix::synthetic(spec, rows, cols, uint64_t(7 * l + slot + 1), layout);
    };
    L.q = make(a->dim, a->dim, 0);
    L.k = make(a->kv_dim, a->dim, 1);
    L.v = make(a->kv_dim, a->dim, 2);
    L.o = make(a->dim, a->dim, 3);
    L.gate = make(a->hidden, a->dim, 4);
    L.up = make(a->hidden, a->dim, 5);
    L.down = make(a->dim, a->hidden, 6);
    for (const PackedMatrix* m : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) {
      bytes += double(m->weight_bytes());
      weights += double(m->rows() * m->cols());
    }
  }
  std::printf("linear weights: %.2f G, %.2f GB packed (%.3f bits/weight); kernels: %s, %s tables, "
              "%d threads\n",
              weights * 1e-9, bytes * 1e-9, bytes * 8 / weights, isa_name(isa),
              lut_tables_name(resolve_lut_tables(tables, spec.bits,
                                                 layers[0].down.header().group_padded, isa)),
              pool.size());
  print_huge_page_line(bytes);

  // Activations (tokens, features), random: speed does not depend on the values.
  const int64_t max_n = std::max<int64_t>(1, o.prefill_runs > 0 ? o.prefill_tokens : 1);
  std::vector<float> x(size_t(max_n * std::max(a->dim, a->hidden)));
  std::vector<float> y1(size_t(max_n * std::max(a->dim, a->hidden)));
  std::vector<float> y2(y1.size()), y3(y1.size());
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  for (float& v : x) v = nd(rng);
  auto forward = [&](int64_t n) {
    for (const Layer& L : layers) {
      const PackedMatrix* qkv[] = {&L.q, &L.k, &L.v};
      float* qkv_out[] = {y1.data(), y2.data(), y3.data()};
      lut_gemm_same_input_isa(isa, qkv, x.data(), n, qkv_out, &pool, tables);
      lut_gemm_isa(isa, L.o, x.data(), n, y1.data(), &pool, tables);
      const PackedMatrix* gate_up[] = {&L.gate, &L.up};
      float* gate_up_out[] = {y1.data(), y2.data()};
      lut_gemm_same_input_isa(isa, gate_up, x.data(), n, gate_up_out, &pool, tables);
      lut_gemm_isa(isa, L.down, x.data(), n, y1.data(), &pool, tables);
    }
  };
  auto seconds = [&](int64_t n) {
    const auto t0 = std::chrono::steady_clock::now();
    forward(n);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };

  ReadBandwidthProbe probe;
  forward(1);  // warm-up: page faults, scratch buffers
  std::vector<RunSample> dec;
  for (int r = 0; r < o.runs; ++r) {
    RunSample s;
    s.bandwidth_gbs = probe.measure(pool);
    s.tokens_per_s = 1.0 / seconds(1);
    dec.push_back(s);
  }
  report_decode(dec, bytes);
  if (o.prefill_runs > 0) {
    forward(std::min<int64_t>(o.prefill_tokens, 8));  // warm-up of the prefill scratch
    std::vector<double> pre;
    for (int r = 0; r < o.prefill_runs; ++r) pre.push_back(double(o.prefill_tokens) / seconds(o.prefill_tokens));
    std::vector<double> rates;
    for (const RunSample& s : dec) rates.push_back(s.tokens_per_s);
    report_prefill(pre, o.prefill_tokens, median(rates));
  }
  std::printf("load average at end: %s\n", load_average().c_str());
  return 0;
}

int run_bench(int argc, char** argv) {
  CLI::App app(
      "Measure decode (batch 1) and prefill speed next to the memory-bandwidth roofline (read "
      "bandwidth / bytes of weights read per token), either for a quantized model file (-m) or for "
      "random weights at a published model's shapes (--synthetic). Environment: ELUTQ_ISA forces "
      "a kernel path for -m; ELUTQ_HUGE_PAGES=1 puts --synthetic weights and the bandwidth probe's "
      "buffer on 2 MiB transparent huge pages (off by default: no gain measured, slower start).",
      argv[0]);
  BenchOptions o;
  auto* model_opt = app.add_option("-m,--model", o.model,
                                   "elutq quantized model file (or any model elutq loads): runs "
                                   "the full forward pass, attention and output head included");
  auto* synth_opt = app.add_option("--synthetic", o.synthetic,
                                   "random weights at the linear-layer shapes of llama2-7b, "
                                   "llama3-8b or qwen2.5-7b");
  model_opt->excludes(synth_opt);
  app.add_option("--format", o.format, "--synthetic only: format, e.g. hlq-w2g128, uniform-w4g128")
      ->capture_default_str();
  app.add_flag("--full", o.full,
               "--synthetic only: run the whole forward pass (embedding, attention with its KV "
               "cache, norms, SwiGLU, the output head in --format too), not only the linear "
               "layers");
  app.add_option("--kernel", o.kernel, "-m only: lut (bit-serial LUT kernels) or dequant (fp32)")
      ->capture_default_str();
  app.add_option("--lut-tables", o.lut_tables,
                 std::string(kLutTablesOptionHelp) + " (--synthetic, or -m with --kernel lut)")
      ->check(CLI::IsMember({"int8", "int12", "int16", "auto"}))
      ->capture_default_str();
  app.add_option("--threads", o.threads, "threads, the calling one included (0 = all cores)")
      ->capture_default_str();
  app.add_option("--runs", o.runs, "timed decode runs; median and spread are reported")
      ->capture_default_str();
  app.add_option("--decode-tokens", o.decode_tokens, "-m only: tokens generated per decode run")
      ->capture_default_str();
  app.add_option("--prefill-tokens", o.prefill_tokens, "tokens per prefill run")
      ->capture_default_str();
  app.add_option("--prefill-runs", o.prefill_runs, "timed prefill runs (0 = skip prefill)")
      ->capture_default_str();
  app.add_option("--batch", o.batch,
                 "also measure batched decode: this many sequences advance one token per step "
                 "together, with logits for each (what 'elutq serve --parallel N' runs); 1 = off")
      ->capture_default_str();
  app.add_option("--isa", o.isa,
                 "--synthetic only: force scalar, avx2, avx512 or neon (for -m set ELUTQ_ISA)");
  int code = 0;
  if (!parse(app, argc, argv, &code)) return code;
  require(!o.model.empty() || !o.synthetic.empty(),
          "give a model file with -m FILE or a shape set with --synthetic ARCH");
  require(o.batch >= 1 && o.batch <= 64, "--batch must be 1..64, got ", o.batch);
  require(o.runs >= 1 && o.prefill_runs >= 0 && o.prefill_tokens >= 1 && o.decode_tokens >= 1,
          "--runs, --decode-tokens and --prefill-tokens must be at least 1, --prefill-runs at "
          "least 0");
  return o.model.empty() ? run_synthetic(o) : run_model_bench(o);
}

const VerbRegistrar reg({"bench", "measure decode/prefill speed against the memory roofline",
                         run_bench});

}  // namespace
}  // namespace elutq::cli
