// Shared by the two halves of `elutq bench` (tools/bench.cpp: options, synthetic shapes, report;
// tools/bench_model.cpp: a real model file).
#pragma once

#include <string>
#include <vector>

#include "model/model.h"

namespace elutq::cli {

struct BenchOptions {
  std::string model, synthetic, format = "hlq-w2g128", kernel = "lut", isa, lut_tables = "auto";
  int threads = 0, runs = 5, decode_tokens = 16, prefill_tokens = 512, prefill_runs = 3;
  int batch = 1;  // > 1: also batched decode, this many sequences a step (elutq serve --parallel)
  bool full = false;  // --synthetic: the whole forward pass, not only the linear layers
};

// One timed decode run and the read bandwidth probed right before it.
struct RunSample {
  double tokens_per_s = 0, bandwidth_gbs = 0;
};

double median(std::vector<double> v);
// "/proc/loadavg"'s three averages, or "unknown".
std::string load_average();
// With ELUTQ_HUGE_PAGES=1: prints how much memory is on huge pages, next to the weights' size.
void print_huge_page_line(double weight_bytes);
// Prints bandwidth, roofline, decode rate and fraction of the roofline (per run, then median).
void report_decode(const std::vector<RunSample>& runs, double bytes_per_token);
void report_prefill(const std::vector<double>& rates, int tokens, double decode_median);

int run_model_bench(const BenchOptions& o);
// Context, batch and threads a model needs for this benchmark.
void size_for_bench(const BenchOptions& o, ModelOptions* opt);
// Decode and prefill of a built model (a file's, or a synthetic one), against the roofline.
int bench_loaded_model(Model& m, const std::string& label, const BenchOptions& o);

}  // namespace elutq::cli
