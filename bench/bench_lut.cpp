// Microbenchmarks of the LUT kernels at LLaMA-2-7B linear shapes: GEMV (decode, 1 token) and GEMM
// (prefill, 64 and 512 tokens) for every ISA path this machine runs, HLQ w2/w3/w4 g128 and uniform w4g128,
// on 1 and 2 threads; plus an fp32 OpenBLAS sgemv/sgemm baseline and a memory read bandwidth probe
// (the roofline for GEMV: weight bytes / bandwidth). Counter "GB/s" = weight bytes read per second.
// Names are gemv|gemm4|gemm64|gemm512|gemv_dram|gemv_l2 / ISA / [int12/|int16/] format / shape / threads:
// the int12/ and int16/ ones run with those activation tables (LutTables::Int12, Int16), the
// others with int8 tables, e.g.
//   --benchmark_filter='^gemv/avx512/(int1[26]/)?hlq-w2g128/4096x4096/' compares the three.
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/aligned_vector.h"
#include "core/cpu_features.h"
#include "core/thread_pool.h"
#include "kernels/lut_matmul.h"
#include "kernels/memory_bandwidth.h"
#include "kernels/packed_matrix.h"
#include "tensor/qformat.h"

namespace elutq {
namespace {

struct Shape {
  int64_t rows, cols;
};
constexpr Shape kShapes[] = {{4096, 4096}, {11008, 4096}, {4096, 11008}};
constexpr const char* kFormats[] = {"hlq-w2g128", "hlq-w3g128", "hlq-w4g128", "hlqc-w4g128",
                                    "uniform-w4g128"};
constexpr int64_t kPrefillTokens = 64;

ThreadPool& pool(int threads) {
  static std::map<int, std::unique_ptr<ThreadPool>> pools;
  auto& p = pools[threads];
  if (!p) p = std::make_unique<ThreadPool>(threads);
  return *p;
}

std::string shape_key(Shape s) { return std::to_string(s.rows) + "x" + std::to_string(s.cols); }

// Random codes and fp16 parameters (speed does not depend on the values), in the unit layout
// isa's kernels read.
std::string layout_key(const std::string& format, Shape s, Isa isa) {
  return format + "/" + shape_key(s) + "/layout" + std::to_string(int(lut_unit_layout(isa)));
}

const PackedMatrix& packed(const std::string& format, Shape s, Isa isa) {
  static std::map<std::string, PackedMatrix> cache;
  const std::string key = layout_key(format, s, isa);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  QuantizedMatrix q;
  q.spec = parse_quant_spec(format);
  q.rows = s.rows;
  q.cols = s.cols;
  std::mt19937 rng(1);
  q.codes.resize(size_t(s.rows * s.cols));
  for (auto& c : q.codes) c = uint8_t(rng() & ((1u << q.spec.bits) - 1));
  q.params.resize(size_t(s.rows * q.spec.groups_per_row(s.cols) * q.spec.params_per_group()));
  for (auto& p : q.params) p = 0.01f * float(rng() % 1000) / 1000.0f;
  round_params_to_fp16(q.params);
  if (q.spec.kind == QuantKind::HLQC) {  // a codebook near 2^b, random ratio codes
    const int B = q.spec.bits;
    for (int b = 1; b < B; ++b)
      for (int k = 0; k < kHlqcRatios; ++k) q.ratio_codebook.push_back(float(1 << b) * (0.9f + 0.0125f * k));
    const int64_t groups = s.rows * q.spec.groups_per_row(s.cols);
    q.ratio_codes.resize(size_t(groups * (B - 1)));
    for (auto& k : q.ratio_codes) k = uint8_t(rng() % kHlqcRatios);
    for (int64_t g = 0; g < groups; ++g) {
      float* p = q.params.data() + g * (B + 1);
      hlqc_expand(B, p[0], p[B], q.ratio_codes.data() + g * (B - 1), q.ratio_codebook.data(), p);
    }
  }
  return cache.emplace(key, lut_matrix_for(PackedMatrix::pack(q), isa)).first->second;
}

std::vector<float> activations(int64_t n) {
  std::mt19937 rng(2);
  std::normal_distribution<float> d;
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = d(rng);
  return x;
}

void bench_lut(benchmark::State& state, Isa isa, std::string format, Shape s, int64_t n,
               int threads, LutTables tables) {
  const PackedMatrix& w = packed(format, s, isa);
  const std::vector<float> X = activations(n * s.cols);
  std::vector<float> Y(static_cast<size_t>(n * s.rows));
  ThreadPool& p = pool(threads);
  for (auto _ : state) {
    lut_gemm_isa(isa, w, X.data(), n, Y.data(), &p, tables);
    benchmark::DoNotOptimize(Y.data());
  }
  const double bytes = double(w.weight_bytes());
  state.counters["GB/s"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["tok/s"] = benchmark::Counter(double(n), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["bits/w"] = bytes * 8.0 / double(s.rows * s.cols);
}

// GEMV over enough copies of the matrix (>= 256 MiB) that every call reads from DRAM, as a whole
// model's decode does; the hot-cache numbers above partly run out of the 32 MiB L3.
void bench_lut_cold(benchmark::State& state, Isa isa, std::string format, Shape s, int threads,
                    LutTables tables) {
  const PackedMatrix& w = packed(format, s, isa);
  const size_t copies = std::max<size_t>(2, (size_t(256) << 20) / w.size_bytes());
  // 64-byte aligned copies, as a model file's tensors are.
  static std::map<std::string, std::vector<AlignedVector<uint8_t>>> blobs;
  auto& mine = blobs[layout_key(format, s, isa)];  // each ISA its own unit order
  if (mine.empty())
    for (size_t i = 0; i < copies; ++i) mine.emplace_back(w.data(), w.data() + w.size_bytes());
  std::vector<PackedMatrix> views;
  for (auto& b : mine) views.push_back(PackedMatrix::view(b.data(), b.size()));
  const std::vector<float> x = activations(s.cols);
  std::vector<float> y(static_cast<size_t>(s.rows));
  ThreadPool& p = pool(threads);
  size_t i = 0;
  for (auto _ : state) {
    lut_gemm_isa(isa, views[i++ % views.size()], x.data(), 1, y.data(), &p, tables);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GB/s"] = benchmark::Counter(double(w.weight_bytes()) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["tok/s"] = benchmark::Counter(1.0, benchmark::Counter::kIsIterationInvariantRate);
}

void bench_fp32(benchmark::State& state, Shape s, int64_t n) {
  std::vector<float> W = activations(s.rows * s.cols), X = activations(n * s.cols);
  std::vector<float> Y(static_cast<size_t>(n * s.rows));
  for (auto _ : state) {
    if (n == 1) {
      cblas_sgemv(CblasRowMajor, CblasNoTrans, int(s.rows), int(s.cols), 1.0f, W.data(),
                  int(s.cols), X.data(), 1, 0.0f, Y.data(), 1);
    } else {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), int(s.rows), int(s.cols), 1.0f,
                  X.data(), int(s.cols), W.data(), int(s.cols), 0.0f, Y.data(), int(s.rows));
    }
    benchmark::DoNotOptimize(Y.data());
  }
  state.counters["GB/s"] = benchmark::Counter(double(W.size()) * 4e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["tok/s"] = benchmark::Counter(double(n), benchmark::Counter::kIsIterationInvariantRate);
}

// The read bandwidth that bounds GEMV: the same probe `elutq bench` puts under its roofline (the
// widest loads the CPU has, a 512 MiB buffer far beyond the caches), one pass per iteration; GB/s
// is the best pass, as `elutq bench` takes the best of its probe's passes.
void bench_read_bandwidth(benchmark::State& state, int threads) {
  static ReadBandwidthProbe probe;
  ThreadPool& p = pool(threads);
  double best = 0.0;
  for (auto _ : state) best = std::max(best, probe.measure(p, 1));
  state.counters["GB/s"] = best;
}

std::string shape_name(Shape s) { return shape_key(s); }

constexpr LutTables kTablePrecisions[] = {LutTables::Int8, LutTables::Int12, LutTables::Int16};
// The name part of a table precision: none for int8, "int12/" or "int16/".
std::string tables_prefix(LutTables tables) {
  return tables == LutTables::Int8 ? "" : std::string(lut_tables_name(tables)) + "/";
}

const bool registered = [] {
  for (int threads : {1, 2})
    benchmark::RegisterBenchmark(("read_bandwidth/threads:" + std::to_string(threads)).c_str(),
                                 bench_read_bandwidth, threads)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  for (Isa isa : {Isa::Avx512, Isa::Avx2, Isa::Neon, Isa::Scalar}) {
    if (!isa_available(isa)) continue;
    // The table precisions innermost: they run back to back, so on a shared machine they see the
    // same load.
    for (const char* format : kFormats)
      for (Shape s : kShapes)
        for (int64_t n : {int64_t(1), kPrefillTokens})
          for (int threads : {1, 2})
            for (LutTables tables : kTablePrecisions) {
              // The scalar reference is the specification, not a contender: one shape only.
              if (isa == Isa::Scalar && (n > 1 || s.rows != 4096 || s.cols != 4096)) continue;
              const std::string name =
                  std::string(n == 1 ? "gemv/" : "gemm64/") + isa_name(isa) + "/" +
                  tables_prefix(tables) + format + "/" + shape_name(s) +
                  "/threads:" + std::to_string(threads);
              benchmark::RegisterBenchmark(name.c_str(), bench_lut, isa, std::string(format), s,
                                           n, threads, tables)
                  ->UseRealTime()
                  ->Unit(benchmark::kMicrosecond);
            }
  }
  // A server step: four tokens (one per slot) against the weights, int8 tables; per token against
  // gemv's one is what batched decode gains.
  for (Isa isa : {Isa::Avx512, Isa::Avx2, Isa::Neon}) {
    if (!isa_available(isa)) continue;
    for (const char* format : kFormats)
      for (Shape s : kShapes)
        for (int threads : {1, 2})
          benchmark::RegisterBenchmark((std::string("gemm4/") + isa_name(isa) + "/" + format + "/" +
                                        shape_name(s) + "/threads:" + std::to_string(threads))
                                           .c_str(),
                                       bench_lut, isa, std::string(format), s, int64_t(4), threads,
                                       LutTables::Int8)
              ->UseRealTime()
              ->Unit(benchmark::kMicrosecond);
  }
  // Prefill at the end-to-end benchmark's length (512 tokens: several L2-sized token passes),
  // int8 tables.
  for (Isa isa : {Isa::Avx512, Isa::Avx2, Isa::Neon}) {
    if (!isa_available(isa)) continue;
    for (const char* format : kFormats)
      for (Shape s : kShapes)
        for (int threads : {1, 2})
          benchmark::RegisterBenchmark((std::string("gemm512/") + isa_name(isa) + "/" + format + "/" +
                                        shape_name(s) + "/threads:" + std::to_string(threads))
                                           .c_str(),
                                       bench_lut, isa, std::string(format), s, int64_t(512), threads,
                                       LutTables::Int8)
              ->UseRealTime()
              ->Unit(benchmark::kMillisecond);
  }
  for (Isa isa : {Isa::Avx512, Isa::Avx2, Isa::Neon}) {
    if (!isa_available(isa)) continue;
    for (const char* format : kFormats)
      for (int threads : {1, 2})
        for (LutTables tables : kTablePrecisions)
          benchmark::RegisterBenchmark(
              (std::string("gemv_dram/") + isa_name(isa) + "/" +
               tables_prefix(tables) + format + "/11008x4096/threads:" +
               std::to_string(threads))
                  .c_str(),
              bench_lut_cold, isa, std::string(format), kShapes[1], threads, tables)
              ->UseRealTime()
              ->Unit(benchmark::kMicrosecond);
  }
  // The GEMV's compute rate: a 128 x 4096 matrix (at most 304 KiB, within a 512 KiB L2) on one
  // thread, so neither DRAM nor L3 sets the pace; against gemv_dram it says how far decode is
  // bound by the arithmetic rather than the memory.
  for (Isa isa : {Isa::Avx512, Isa::Avx2, Isa::Neon}) {
    if (!isa_available(isa)) continue;
    for (const char* format : kFormats)
      for (LutTables tables : kTablePrecisions)
        benchmark::RegisterBenchmark((std::string("gemv_l2/") + isa_name(isa) + "/" +
                                      tables_prefix(tables) + format +
                                      "/128x4096/threads:1")
                                         .c_str(),
                                     bench_lut, isa, std::string(format), Shape{128, 4096},
                                     int64_t(1), 1, tables)
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
  }
  for (Shape s : kShapes)
    for (int64_t n : {int64_t(1), kPrefillTokens})
      benchmark::RegisterBenchmark(
          (std::string(n == 1 ? "gemv/" : "gemm64/") + "fp32-openblas/" + shape_name(s)).c_str(),
          bench_fp32, s, n)
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
  return true;
}();

}  // namespace
}  // namespace elutq
