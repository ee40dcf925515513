// `elutq bench -m FILE`: decode and prefill speed of a real model file through the full forward
// pass (embedding, every block with attention, final norm and output head), with the quantized
// layers on the LUT kernels (--kernel lut) or dequantized to fp32 (--kernel dequant). The roofline
// counts the bytes one decode step must read: every projection's weights, the output head and the
// KV cache read by attention at the benchmark's positions.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "bench_common.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/memory_bandwidth.h"
#include "model/model.h"
#include "tensor/model_source.h"
#if __has_include("runtime/quantized_linear_factory.h")
#include "runtime/open_model.h"
#include "runtime/quantized_linear_factory.h"
#define ELUTQ_HAVE_QUANTIZED_FACTORY 1
#endif

namespace elutq::cli {

void size_for_bench(const BenchOptions& o, ModelOptions* opt) {
  const int prefill = o.prefill_runs > 0 ? o.prefill_tokens : 0;
  opt->n_threads = o.threads;
  // Batched decode keeps its sequences in one KV cache, 8 + decode_tokens rows each.
  opt->max_ctx = std::max({prefill, 8 + o.decode_tokens, o.batch * (8 + o.decode_tokens)});
  opt->max_batch = std::max({1, std::min(prefill > 0 ? prefill : 1, 512), o.batch, 8});
}

int run_model_bench(const BenchOptions& o) {
  auto src = open_model(o.model);
  ModelOptions opt;
  size_for_bench(o, &opt);
#if defined(ELUTQ_HAVE_QUANTIZED_FACTORY)
  opt.linear_factory =
      linear_factory_for(*src, parse_kernel_choice(o.kernel), parse_lut_tables(o.lut_tables));
#else
  require(o.kernel == "dequant", "--kernel lut needs quantized model file support, which this "
                                 "build lacks; use --kernel dequant");
#endif
  Model m(*src, opt);
  return bench_loaded_model(m, o.model, o);
}

int bench_loaded_model(Model& m, const std::string& label, const BenchOptions& o) {
  const int prefill = o.prefill_runs > 0 ? o.prefill_tokens : 0;
  const int ctx_needed = std::max(prefill, 8 + o.decode_tokens);
  require(m.max_ctx() >= ctx_needed, "the model's context (", m.max_ctx(),
          " tokens) is shorter than this benchmark needs (", ctx_needed,
          "); lower --prefill-tokens or --decode-tokens");
  const ModelConfig& c = m.config();

  double weight_bytes = double(m.output().weight_bytes());
  std::string kinds = m.linear(0, LinearSlot::Q).describe();
  for (int l = 0; l < c.n_layers; ++l)
    for (int s = 0; s < kLinearSlots; ++s) weight_bytes += double(m.linear(l, LinearSlot(s)).weight_bytes());
  // Attention reads K and V (fp32) of every earlier position; decode runs at positions 8..8+T-1.
  const double kv_bytes = 2.0 * c.n_layers * c.n_kv_heads * c.head_dim * 4.0 *
                          (8 + 0.5 * o.decode_tokens);
  const double bytes = weight_bytes + kv_bytes;
  std::printf("model: %s (%s, %d layers, dim %d, vocab %d); kernel %s, e.g. %s; %d threads\n",
              label.c_str(), c.arch.c_str(), c.n_layers, c.dim, c.vocab_size, o.kernel.c_str(),
              kinds.c_str(), m.pool().size());
  std::printf("bytes read per decode token: %.1f MB (weights and output head %.1f MB, KV cache "
              "%.2f MB)\n",
              bytes * 1e-6, weight_bytes * 1e-6, kv_bytes * 1e-6);
  std::printf("load average at start: %s on %d hardware threads\n", load_average().c_str(),
              hardware_threads());

  // Token ids: any valid ids do; speed does not depend on them.
  std::vector<int> ids(size_t(std::max(prefill, 8 + o.decode_tokens)));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int((i * 7919 + 13) % size_t(c.vocab_size));

  auto decode_run = [&] {
    m.prefill_logits(ids.data(), 8, 0);
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < o.decode_tokens; ++i) m.decode_logits(ids[size_t(8 + i)], 8 + i);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return double(o.decode_tokens) / s;
  };
  ReadBandwidthProbe probe;
  decode_run();  // warm-up: page faults of the mapped weights, scratch
  std::vector<RunSample> dec;
  for (int r = 0; r < o.runs; ++r) {
    RunSample s;
    s.bandwidth_gbs = probe.measure(m.pool());
    s.tokens_per_s = decode_run();
    dec.push_back(s);
  }
  report_decode(dec, bytes);
  if (o.batch > 1) {
    // Batched decode as the server runs it: every step one token of each of o.batch sequences
    // (own KV rows, own positions) goes through the model together, logits for all of them.
    const int n = o.batch, rows = 8 + o.decode_tokens;
    std::vector<int> tok(static_cast<size_t>(n)), pos(tok), row0(tok), out(tok);
    std::vector<float> logits(size_t(n) * size_t(c.vocab_size));
    auto batch_run = [&] {
      for (int i = 0; i < n; ++i) {  // each sequence's first 8 tokens, no logits
        std::vector<int> p(8), r(8, i * rows);  // positions 0..7 at this sequence's rows
        for (int k = 0; k < 8; ++k) p[size_t(k)] = k;
        m.forward_batch(ids.data(), p.data(), r.data(), 8, nullptr, 0, nullptr);
      }
      const auto t0 = std::chrono::steady_clock::now();
      for (int k = 0; k < o.decode_tokens; ++k) {
        for (int i = 0; i < n; ++i) {
          tok[size_t(i)] = ids[size_t(8 + (k + i) % o.decode_tokens)];
          pos[size_t(i)] = 8 + k;
          row0[size_t(i)] = i * rows;
          out[size_t(i)] = i;
        }
        m.forward_batch(tok.data(), pos.data(), row0.data(), n, out.data(), n, logits.data());
      }
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      return double(n) * o.decode_tokens / s;
    };
    batch_run();  // warm-up
    std::vector<double> rates, d;
    for (int r = 0; r < o.runs; ++r) rates.push_back(batch_run());
    for (const RunSample& s : dec) d.push_back(s.tokens_per_s);
    std::sort(rates.begin(), rates.end());
    std::printf("batched decode (%d sequences a step, logits of each): %.2f tok/s median of %d "
                "(min %.2f, max %.2f); %.2fx decode\n",
                n, median(rates), o.runs, rates.front(), rates.back(), median(rates) / median(d));
  }
  if (prefill > 0) {
    std::vector<double> rates;
    for (int r = 0; r < o.prefill_runs; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      m.prefill_logits(ids.data(), prefill, 0);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      rates.push_back(double(prefill) / s);
    }
    std::vector<double> d;
    for (const RunSample& s : dec) d.push_back(s.tokens_per_s);
    report_prefill(rates, prefill, median(d));
  }
  std::printf("load average at end: %s\n", load_average().c_str());
  return 0;
}

}  // namespace elutq::cli
