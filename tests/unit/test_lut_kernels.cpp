// LUT kernels: the packed layout round-trips, every SIMD path this machine runs equals the scalar
// reference bit for bit (integer sums and fma order are identical by construction), threads do not
// change results, and the result stays within a stated error of the fp32 matmul of the
// dequantized weights.
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/cpu_features.h"
#include "core/error.h"
#include "core/fp16.h"
#include "core/thread_pool.h"
#include "kernels/lut_isa.h"
#include "kernels/lut_matmul.h"
#include "kernels/packed_matrix.h"
#include "tensor/qformat.h"

namespace elutq {
namespace {

// Relative L2 error of the LUT product vs fp32 on dequantized weights, for Gaussian activations.
// The only approximation is the int8 rounding of the activation tables (one scale per group):
// about 0.3-0.6% in practice; 2% leaves room for small groups and few rows.
constexpr double kMaxRelErrorVsFp32 = 0.02;
// The same with int16 tables (largest |sum| -> 32767 instead of 127, so ~258x finer steps):
// measured at most 0.0061% on the small ragged shapes below (int8: 1.04%), 0.0025% at 4096
// inputs; the bound leaves 5x room.
constexpr double kMaxRelErrorVsFp32Int16 = 3e-4;
// int12 tables (largest |sum| -> 2047, ~16x finer than int8): measured at most 0.072% on the
// small ragged shapes below, 0.038-0.047% at 4096 inputs; the bound leaves 4x room.
constexpr double kMaxRelErrorVsFp32Int12 = 3e-3;

constexpr LutTables kAllTables[] = {LutTables::Int8, LutTables::Int12, LutTables::Int16};
constexpr LutTables kWideTables[] = {LutTables::Int12, LutTables::Int16};

// p in the unit layout isa's kernels read (a view of p where that is p's own layout).
PackedMatrix laid_out_for(const PackedMatrix& p, Isa isa) {
  return lut_matrix_for(PackedMatrix::view(p.data(), p.size_bytes()), isa);
}

QuantizedMatrix random_matrix(QuantKind kind, int bits, int group, int64_t rows, int64_t cols,
                              uint32_t seed) {
  std::mt19937 rng(seed);
  QuantizedMatrix q;
  q.spec.kind = kind;
  q.spec.bits = bits;
  q.spec.group = group;
  q.rows = rows;
  q.cols = cols;
  q.codes.resize(size_t(rows * cols));
  std::uniform_int_distribution<int> code(0, (1 << bits) - 1);
  for (auto& c : q.codes) c = uint8_t(code(rng));
  const int64_t n = rows * q.spec.groups_per_row(cols);
  const int P = q.spec.params_per_group();
  q.params.resize(size_t(n * P));
  std::uniform_real_distribution<float> u(0.5f, 1.5f), z(-1.0f, 1.0f);
  for (int64_t i = 0; i < n; ++i) {
    float* p = q.params.data() + i * P;
    const float base = 0.01f * u(rng);
    if (kind == QuantKind::Uniform) {
      p[0] = base;
      p[1] = -base * ((1 << bits) - 1) / 2.0f + 0.002f * z(rng);
    } else if (kind == QuantKind::HLQC) {
      continue;  // below, once the codebook exists
    } else {
      float sum = 0;
      for (int b = 0; b < bits; ++b) sum += p[b] = base * float(1 << b) * u(rng);
      p[bits] = -sum / 2.0f + 0.002f * z(rng);
    }
  }
  round_params_to_fp16(q.params);
  if (kind == QuantKind::HLQC) {  // ratios around 2^b, random codes, expanded parameters
    q.ratio_codebook.resize(size_t((bits - 1) * kHlqcRatios));
    for (int b = 1; b < bits; ++b)
      for (int k = 0; k < kHlqcRatios; ++k)
        q.ratio_codebook[size_t((b - 1) * kHlqcRatios + k)] = float(1 << b) * u(rng);
    q.ratio_codes.resize(size_t(n * (bits - 1)));
    std::uniform_int_distribution<int> rc(0, kHlqcRatios - 1);
    for (auto& k : q.ratio_codes) k = uint8_t(rc(rng));
    for (int64_t i = 0; i < n; ++i) {
      const float s0 = fp16_to_f32(f32_to_fp16(0.01f * u(rng)));
      float* p = q.params.data() + i * P;
      const float mid = fp16_to_f32(f32_to_fp16(0.002f * z(rng)));  // the group's midpoint
      hlqc_expand(bits, s0, mid, q.ratio_codes.data() + i * (bits - 1), q.ratio_codebook.data(), p);
    }
  }
  return q;
}

std::vector<float> random_activations(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = d(rng);
  return x;
}

// Y (n, rows) = X (n, cols) dequantize(W)^T in double.
std::vector<double> reference(const QuantizedMatrix& q, const std::vector<float>& X, int64_t n) {
  std::vector<float> w(size_t(q.rows * q.cols));
  dequantize(q, w.data());
  std::vector<double> y(size_t(n * q.rows), 0.0);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < q.rows; ++r) {
      double acc = 0;
      for (int64_t c = 0; c < q.cols; ++c) acc += double(w[r * q.cols + c]) * X[t * q.cols + c];
      y[t * q.rows + r] = acc;
    }
  return y;
}

double rel_error(const std::vector<float>& y, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    num += (y[i] - ref[i]) * (y[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

std::vector<Isa> runnable_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon})
    if (isa_available(isa)) out.push_back(isa);
  return out;
}

struct Case {
  QuantKind kind;
  int bits, group;
  int64_t rows, cols;
};

std::vector<Case> cases() {
  std::vector<Case> out;
  // Ragged shapes: rows not a multiple of 32, cols not a multiple of 4, 16 or the group.
  const int64_t shapes[][2] = {{33, 128}, {70, 200}, {5, 37}, {96, 256}};
  int i = 0;
  for (QuantKind kind : {QuantKind::HLQ, QuantKind::Uniform, QuantKind::HLQC})
    for (int bits = 1; bits <= 4; ++bits)
      for (int group : {32, 64, 128, 0, 24}) {
        const auto& s = shapes[i++ % 4];
        out.push_back({kind, bits, group, s[0], s[1]});
      }
  return out;
}

TEST(LutPacked, RoundTripsCodesAndChecksBlobs) {
  for (const Case& c : cases()) {
    QuantizedMatrix q = random_matrix(c.kind, c.bits, c.group, c.rows, c.cols, 7);
    PackedMatrix p = PackedMatrix::pack(q);
    EXPECT_EQ(p.unpack_codes(), q.codes) << q.spec.name() << " " << c.rows << "x" << c.cols;
    PackedMatrix v = PackedMatrix::view(p.data(), p.size_bytes());
    EXPECT_EQ(v.rows(), c.rows);
    EXPECT_EQ(v.cols(), c.cols);
    EXPECT_THROW(PackedMatrix::view(p.data(), p.size_bytes() - 1), Error);
    std::vector<uint8_t> bad(p.data(), p.data() + p.size_bytes());
    bad[0] = 'X';
    EXPECT_THROW(PackedMatrix::view(bad.data(), bad.size()), Error);
  }
  QuantizedMatrix cb = random_matrix(QuantKind::Uniform, 4, 32, 4, 32, 1);
  cb.spec.kind = QuantKind::Codebook;
  EXPECT_THROW(PackedMatrix::pack(cb), Error);
}

// The AVX2 kernels' unit order holds the same codes; re-laying back gives the original bytes;
// views accept both orders and nothing else; a kernel given the other order refuses it.
TEST(LutPacked, RelaidUnitsHoldTheSameCodes) {
  for (const Case& c : cases()) {
    QuantizedMatrix q = random_matrix(c.kind, c.bits, c.group, c.rows, c.cols, 17);
    const PackedMatrix p = PackedMatrix::pack(q);
    ASSERT_EQ(p.layout(), UnitLayout::Tables4);
    PackedMatrix r = PackedMatrix::relaid(PackedMatrix::view(p.data(), p.size_bytes()),
                                          UnitLayout::Rows32);
    ASSERT_EQ(r.layout(), UnitLayout::Rows32);
    EXPECT_EQ(r.unpack_codes(), q.codes) << q.spec.name() << " " << c.rows << "x" << c.cols;
    EXPECT_NE(0, std::memcmp(r.data() + 64, p.data() + 64, p.size_bytes() - 64));
    const PackedMatrix rv = PackedMatrix::view(r.data(), r.size_bytes());
    EXPECT_EQ(rv.layout(), UnitLayout::Rows32);
    const PackedMatrix back = PackedMatrix::relaid(PackedMatrix::view(r.data(), r.size_bytes()),
                                                   UnitLayout::Tables4);
    ASSERT_EQ(back.size_bytes(), p.size_bytes());
    EXPECT_EQ(0, std::memcmp(back.data(), p.data(), p.size_bytes()));
  }
  QuantizedMatrix q = random_matrix(QuantKind::HLQ, 2, 32, 8, 64, 3);
  const PackedMatrix p = PackedMatrix::pack(q);
  std::vector<uint8_t> bad(p.data(), p.data() + p.size_bytes());
  bad[offsetof(PackedHeader, layout)] = 2;
  EXPECT_THROW(PackedMatrix::view(bad.data(), bad.size()), Error);
  const PackedMatrix r = PackedMatrix::relaid(PackedMatrix::view(p.data(), p.size_bytes()),
                                              UnitLayout::Rows32);
  std::vector<float> x(64, 1.0f), y(8);
  EXPECT_THROW(lut_gemm_isa(Isa::Scalar, r, x.data(), 1, y.data(), nullptr), Error);
  if (isa_available(Isa::Avx2)) {
    EXPECT_THROW(lut_gemm_isa(Isa::Avx2, p, x.data(), 1, y.data(), nullptr), Error);
  }
}

// Prefill paths cut tokens into blocks whose tables fit in L2 (a few tokens when rows are very
// wide) and split tiles into pieces claimed by pool threads: neither may change a single bit.
TEST(LutKernels, TokenBlocksAndThreadsEqualScalarExactly) {
  ThreadPool pool(3);
  uint32_t seed = 900;
  for (auto [kind, bits] : {std::pair{QuantKind::HLQ, 3}, {QuantKind::Uniform, 4}}) {
    QuantizedMatrix q = random_matrix(kind, bits, 128, 70, 44000, ++seed);
    PackedMatrix p = PackedMatrix::pack(q);
    const int64_t n = 13;
    const std::vector<float> X = random_activations(n * q.cols, seed);
    for (LutTables tables : kAllTables) {
      std::vector<float> want(size_t(n * q.rows));
      lut_gemm_isa(Isa::Scalar, p, X.data(), n, want.data(), nullptr, tables);
      for (Isa isa : runnable_isas()) {
        for (ThreadPool* tp : {static_cast<ThreadPool*>(nullptr), &pool}) {
          std::vector<float> got(size_t(n * q.rows), -1.0f);
          lut_gemm_isa(isa, laid_out_for(p, isa), X.data(), n, got.data(), tp, tables);
          ASSERT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)))
              << isa_name(isa) << " " << q.spec.name() << " " << lut_tables_name(tables)
              << (tp ? " threaded" : "");
          lut_gemm_isa(isa, laid_out_for(p, isa), X.data(), 1, got.data(), tp, tables);
          ASSERT_EQ(0, std::memcmp(got.data(), want.data(), size_t(q.rows) * sizeof(float)))
              << isa_name(isa) << " " << q.spec.name() << " " << lut_tables_name(tables)
              << " one token" << (tp ? " threaded" : "");
        }
      }
    }
  }
}

// Matrices on one input (Q/K/V, gate/up) run as one job: one set of tables, their tiles in one
// range cut into pieces that may span two matrices. Each output must equal the matrix run alone,
// bit for bit, on every ISA, threaded or not, for one token and for several passes of tokens.
TEST(LutKernels, MatricesOnOneInputEqualEachAlone) {
  ThreadPool pool(3);
  auto check = [&](const std::vector<QuantizedMatrix>& qs, std::initializer_list<int64_t> ns,
                   LutTables tables, uint32_t seed) {
    const int64_t cols = qs[0].cols, m = int64_t(qs.size());
    std::vector<PackedMatrix> packed;
    for (const QuantizedMatrix& q : qs) packed.push_back(PackedMatrix::pack(q));
    for (int64_t n : ns) {
      const std::vector<float> X = random_activations(n * cols, seed + uint32_t(n));
      for (Isa isa : runnable_isas()) {
        std::vector<PackedMatrix> laid;
        std::vector<const PackedMatrix*> ws;
        for (const PackedMatrix& p : packed) laid.push_back(laid_out_for(p, isa));
        for (const PackedMatrix& p : laid) ws.push_back(&p);
        std::vector<std::vector<float>> want(static_cast<size_t>(m));
        for (int64_t i = 0; i < m; ++i) {
          want[size_t(i)].resize(size_t(n * qs[size_t(i)].rows));
          lut_gemm_isa(isa, laid[size_t(i)], X.data(), n, want[size_t(i)].data(), nullptr, tables);
        }
        for (ThreadPool* tp : {static_cast<ThreadPool*>(nullptr), &pool}) {
          std::vector<std::vector<float>> got(static_cast<size_t>(m));
          std::vector<float*> ys;
          for (int64_t i = 0; i < m; ++i) {
            got[size_t(i)].assign(want[size_t(i)].size(), -1.0f);
            ys.push_back(got[size_t(i)].data());
          }
          lut_gemm_same_input_isa(isa, ws, X.data(), n, ys, tp, tables);
          for (int64_t i = 0; i < m; ++i)
            ASSERT_EQ(0, std::memcmp(got[size_t(i)].data(), want[size_t(i)].data(),
                                     want[size_t(i)].size() * sizeof(float)))
                << isa_name(isa) << " matrix " << i << " of " << m << ", " << cols << " columns, n="
                << n << " " << lut_tables_name(tables) << (tp ? " threaded" : "");
        }
      }
    }
  };
  // Ragged row counts (partial last tiles); formats and bits differ but share one table shape
  // (2-bit and 3/4-bit share only with an explicit precision: auto gives them different tables).
  uint32_t seed = 1300;
  for (LutTables tables : kAllTables) {
    check({random_matrix(QuantKind::HLQ, 3, 64, 70, 200, ++seed),
           random_matrix(QuantKind::Uniform, 4, 64, 33, 200, ++seed),
           random_matrix(QuantKind::HLQC, 2, 64, 96, 200, ++seed)},
          {1, 5, 40}, tables, seed);
  }
  // Wide rows: 13 tokens run as two passes (tables of ~176 KiB per token), so each matrix's
  // output of the second pass starts at its own offset.
  check({random_matrix(QuantKind::HLQ, 3, 128, 40, 44000, ++seed),
         random_matrix(QuantKind::HLQ, 3, 128, 33, 44000, ++seed)},
        {13}, LutTables::Int8, seed);
}

TEST(LutKernels, MatricesOnOneInputMustShareTheirTables) {
  const QuantizedMatrix a = random_matrix(QuantKind::HLQ, 3, 64, 32, 128, 1),
                        other_cols = random_matrix(QuantKind::HLQ, 3, 64, 32, 192, 2),
                        other_group = random_matrix(QuantKind::HLQ, 3, 128, 32, 128, 3),
                        two_bits = random_matrix(QuantKind::HLQ, 2, 64, 32, 128, 4);
  const PackedMatrix pa = PackedMatrix::pack(a), pc = PackedMatrix::pack(other_cols),
                     pg = PackedMatrix::pack(other_group), p2 = PackedMatrix::pack(two_bits);
  for (Isa isa : runnable_isas()) {
    EXPECT_TRUE(lut_tables_shareable(pa, p2, LutTables::Int8, isa));
    EXPECT_FALSE(lut_tables_shareable(pa, p2, LutTables::Auto, isa));  // int8 vs wide tables
    EXPECT_FALSE(lut_tables_shareable(pa, pc, LutTables::Int8, isa));
    EXPECT_FALSE(lut_tables_shareable(pa, pg, LutTables::Int8, isa));
  }
  std::vector<float> x(192, 1.0f), y1(32), y2(32);
  float* ys[] = {y1.data(), y2.data()};
  const PackedMatrix* cols_differ[] = {&pa, &pc};
  EXPECT_THROW(lut_gemm_same_input_isa(Isa::Scalar, cols_differ, x.data(), 1, ys, nullptr), Error);
  const PackedMatrix* tables_differ[] = {&pa, &p2};
  EXPECT_THROW(lut_gemm_same_input_isa(Isa::Scalar, tables_differ, x.data(), 1, ys, nullptr,
                                       LutTables::Auto),
               Error);
  float* one_output[] = {y1.data()};
  const PackedMatrix* two[] = {&pa, &p2};
  EXPECT_THROW(lut_gemm_same_input_isa(Isa::Scalar, two, x.data(), 1, one_output, nullptr), Error);
}

// Every SIMD path this machine runs gives the scalar reference's n x rows outputs bit for bit.
::testing::AssertionResult every_isa_equals_scalar(const PackedMatrix& p,
                                                   const std::vector<float>& X, int64_t n,
                                                   LutTables tables) {
  std::vector<float> want(size_t(n * p.rows()));
  lut_gemm_isa(Isa::Scalar, p, X.data(), n, want.data(), nullptr, tables);
  for (Isa isa : runnable_isas()) {
    std::vector<float> got(want.size(), -1.0f);
    lut_gemm_isa(isa, laid_out_for(p, isa), X.data(), n, got.data(), nullptr, tables);
    if (std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) != 0)
      return ::testing::AssertionFailure() << isa_name(isa) << " differs from scalar, n=" << n
                                           << ", " << lut_tables_name(tables) << " tables";
  }
  return ::testing::AssertionSuccess();
}

TEST(LutKernels, EverySimdPathEqualsScalarExactly) {
  const std::vector<Isa> isas = runnable_isas();
  ASSERT_GE(isas.size(), 1u);
#if defined(__aarch64__)
  ASSERT_TRUE(isa_available(Isa::Neon)) << "the NEON path must run on every aarch64 CPU";
#endif
  std::string names;
  for (Isa isa : isas) names += std::string(" ") + isa_name(isa);
  std::printf("instruction sets checked against the scalar reference:%s\n", names.c_str());
  uint32_t seed = 100;
  for (const Case& c : cases()) {
    QuantizedMatrix q = random_matrix(c.kind, c.bits, c.group, c.rows, c.cols, ++seed);
    PackedMatrix p = PackedMatrix::pack(q);
    // n = 5 and 9 leave token remainders after the AVX-512 prefill's register blocks (6 tokens
    // with int8 tables, 4 with int16).
    for (int64_t n : {1, 3, 5, 6, 9}) {
      const std::vector<float> X = random_activations(n * c.cols, seed * 7 + uint32_t(n));
      for (LutTables tables : kAllTables)
        ASSERT_TRUE(every_isa_equals_scalar(p, X, n, tables))
            << q.spec.name() << " " << c.rows << "x" << c.cols;
    }
  }
}

// Decode over many tiles: pieces of several tiles per thread, which the AVX-512 GEMV reads as
// interleaved streams (odd tile counts leave a last step with one stream), must not change a bit.
TEST(LutKernels, OneTokenOverManyTilesEqualsScalarExactly) {
  ThreadPool pool2(2), pool3(3);
  uint32_t seed = 1300;
  for (auto [kind, bits, group] : {std::tuple{QuantKind::HLQ, 3, 128}, {QuantKind::HLQC, 4, 64},
                                   {QuantKind::Uniform, 2, 32}}) {
    QuantizedMatrix q = random_matrix(kind, bits, group, 3100, 160, ++seed);  // 97 tiles, ragged
    PackedMatrix p = PackedMatrix::pack(q);
    const std::vector<float> x = random_activations(q.cols, seed);
    for (LutTables tables : kAllTables) {
      std::vector<float> want(size_t(q.rows));
      lut_gemm_isa(Isa::Scalar, p, x.data(), 1, want.data(), nullptr, tables);
      for (Isa isa : runnable_isas())
        for (ThreadPool* tp : {static_cast<ThreadPool*>(nullptr), &pool2, &pool3}) {
          std::vector<float> got(size_t(q.rows), -1.0f);
          lut_gemm_isa(isa, laid_out_for(p, isa), x.data(), 1, got.data(), tp, tables);
          ASSERT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)))
              << isa_name(isa) << " " << q.spec.name() << " " << lut_tables_name(tables)
              << (tp ? " threads " + std::to_string(tp->size()) : std::string(" one thread"));
        }
    }
  }
}

// Wide tables with activations at the extremes of their range: one huge entry per group sets a
// scale under which all others round to a few units, entries at exactly +-32767 (int16) or +-2047
// (int12: all four activations of a chunk equal to the group's largest), zeros. Every path must
// still match.
TEST(LutKernels, WideTablesExtremeActivationsEqualScalarExactly) {
  const std::vector<Isa> isas = runnable_isas();
  uint32_t seed = 300;
  for (LutTables tables : kWideTables)
  for (int bits : {1, 4}) {
    QuantizedMatrix q = random_matrix(QuantKind::HLQ, bits, 64, 45, 200, ++seed);
    PackedMatrix p = PackedMatrix::pack(q);
    const int64_t n = 7;
    std::vector<float> X = random_activations(n * q.cols, seed);
    for (int64_t t = 0; t < n; ++t) {
      float* x = X.data() + t * q.cols;
      x[3] = 1e4f * float(t + 1);                                 // outlier: |T| ~ 1e4
      for (int c = 64; c < 68; ++c) x[c] = -3.0f;                // max |T| hit exactly, p = 0
      for (int c = 128; c < 132; ++c) x[c] = 5.0f;               // and at p = 15
      for (int c = 132; c < 196; ++c) x[c] = t % 2 ? 0.0f : x[c];  // zero chunks
    }
    std::vector<float> want(size_t(n * q.rows));
    lut_gemm_isa(Isa::Scalar, p, X.data(), n, want.data(), nullptr, tables);
    for (Isa isa : isas) {
      for (int64_t m : {int64_t(1), n}) {
        std::vector<float> got(size_t(m * q.rows), -1.0f);
        lut_gemm_isa(isa, laid_out_for(p, isa), X.data(), m, got.data(), nullptr, tables);
        ASSERT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)))
            << isa_name(isa) << " B=" << bits << " n=" << m << " " << lut_tables_name(tables);
      }
    }
  }
}

TEST(LutKernels, TablePrecisionParses) {
  EXPECT_EQ(parse_lut_tables("int8"), LutTables::Int8);
  EXPECT_EQ(parse_lut_tables("int16"), LutTables::Int16);
  EXPECT_STREQ(lut_tables_name(LutTables::Int16), "int16");
  EXPECT_EQ(parse_lut_tables("int12"), LutTables::Int12);
  EXPECT_STREQ(lut_tables_name(LutTables::Int12), "int12");
  EXPECT_EQ(parse_lut_tables("auto"), LutTables::Auto);
  EXPECT_THROW(parse_lut_tables("int4"), Error);
  EXPECT_THROW(parse_lut_tables(""), Error);
}

// Auto runs 1- and 2-bit matrices with wide tables (int12 on AVX2, int16 on the other ISAs) and
// 3- and 4-bit ones with int8: on every ISA its output is bit for bit the one of the precision it
// stands for there (and differs from the others).
TEST(LutKernels, AutoTablesAreWideUpToTwoBitsAndInt8Above) {
  uint32_t seed = 900;
  for (Isa isa : runnable_isas())
    for (int bits = 1; bits <= 4; ++bits) {
      QuantizedMatrix q = random_matrix(QuantKind::HLQ, bits, 64, 40, 256, ++seed);
      const PackedMatrix packed = PackedMatrix::pack(q);
      const PackedMatrix p = laid_out_for(packed, isa);
      const std::vector<float> x = random_activations(3 * q.cols, ++seed);
      auto run = [&](LutTables t) {
        std::vector<float> y(size_t(3 * q.rows));
        lut_gemm_isa(isa, p, x.data(), 3, y.data(), nullptr, t);
        return y;
      };
      const LutTables wide = isa == Isa::Avx2 ? LutTables::Int12 : LutTables::Int16;
      const LutTables want = bits <= 2 ? wide : LutTables::Int8;
      EXPECT_EQ(resolve_lut_tables(LutTables::Auto, bits, 64, isa), want) << isa_name(isa);
      const std::vector<float> automatic = run(LutTables::Auto);
      for (LutTables t : kAllTables) {
        if (t == want) {
          EXPECT_EQ(automatic, run(t)) << isa_name(isa) << " B=" << bits;
        } else {
          EXPECT_NE(automatic, run(t)) << isa_name(isa) << " B=" << bits << " "
                                       << lut_tables_name(t);
        }
      }
    }
  // A whole-row group too long for wide sums falls back to int8 instead of failing.
  for (Isa isa : {Isa::Scalar, Isa::Avx2})
    EXPECT_EQ(resolve_lut_tables(LutTables::Auto, 2, int64_t(1) << 26, isa), LutTables::Int8);
  for (LutTables t : kAllTables) EXPECT_EQ(resolve_lut_tables(t, 2, 64, Isa::Avx2), t);
}

TEST(LutKernels, WithinStatedErrorOfFp32Matmul) {
  uint32_t seed = 500;
  double worst = 0, worst16 = 0, worst12 = 0;
  for (const Case& c : cases()) {
    QuantizedMatrix q = random_matrix(c.kind, c.bits, c.group, c.rows, c.cols, ++seed);
    PackedMatrix p = PackedMatrix::pack(q);
    const int64_t n = 2;
    const std::vector<float> X = random_activations(n * c.cols, seed);
    const std::vector<double> ref = reference(q, X, n);
    std::vector<float> y(size_t(n * c.rows));
    lut_gemm(laid_out_for(p, active_isa()), X.data(), n, y.data(), nullptr);
    const double err = rel_error(y, ref);
    worst = std::max(worst, err);
    EXPECT_LT(err, kMaxRelErrorVsFp32) << q.spec.name() << " " << c.rows << "x" << c.cols;
    lut_gemm(laid_out_for(p, active_isa()), X.data(), n, y.data(), nullptr, LutTables::Int16);
    const double err16 = rel_error(y, ref);
    worst16 = std::max(worst16, err16);
    EXPECT_LT(err16, kMaxRelErrorVsFp32Int16) << q.spec.name() << " " << c.rows << "x" << c.cols;
    lut_gemm(laid_out_for(p, active_isa()), X.data(), n, y.data(), nullptr, LutTables::Int12);
    const double err12 = rel_error(y, ref);
    worst12 = std::max(worst12, err12);
    EXPECT_LT(err12, kMaxRelErrorVsFp32Int12) << q.spec.name() << " " << c.rows << "x" << c.cols;
  }
  std::printf("worst relative L2 error vs fp32: int8 tables %.4f, int12 tables %.5f, int16 tables "
              "%.6f\n", worst, worst12, worst16);
}

// At LLaMA width (4096 inputs, g128), the figures the notes quote (docs/notes/, int16 and int12
// tables): Gaussian activations, and the same with 8 outlier channels scaled x50 (as LLM
// activations have), which set the table scale of their groups and so coarsen every other entry
// there. int16 tables must be >= 50x more accurate in both cases (measured: ~250x Gaussian, ~260x
// with outliers), int12 >= 8x (measured: 15-19x).
TEST(LutKernels, ErrorAtLlamaWidth) {
  for (bool outliers : {false, true}) {
    for (auto [kind, bits] : {std::pair{QuantKind::HLQ, 2}, {QuantKind::HLQ, 3},
                              {QuantKind::HLQ, 4}, {QuantKind::Uniform, 4}}) {
      QuantizedMatrix q = random_matrix(kind, bits, 128, 64, 4096, 11);
      PackedMatrix p = PackedMatrix::pack(q);
      std::vector<float> x = random_activations(q.cols, 12);
      if (outliers)
        for (int64_t c : {7, 300, 901, 1500, 2048, 2900, 3333, 4000}) x[size_t(c)] *= 50.0f;
      const std::vector<double> ref = reference(q, x, 1);
      std::vector<float> y8(size_t(q.rows)), y12(size_t(q.rows)), y16(size_t(q.rows));
      lut_gemv(laid_out_for(p, active_isa()), x.data(), y8.data(), nullptr, LutTables::Int8);
      lut_gemv(laid_out_for(p, active_isa()), x.data(), y12.data(), nullptr, LutTables::Int12);
      lut_gemv(laid_out_for(p, active_isa()), x.data(), y16.data(), nullptr, LutTables::Int16);
      const double err8 = rel_error(y8, ref), err12 = rel_error(y12, ref),
                   err16 = rel_error(y16, ref);
      std::printf("%s 64x4096%s: relative L2 error vs fp32: int8 tables %.5f, int12 %.6f (%.0fx "
                  "smaller), int16 %.7f (%.0fx smaller)\n",
                  q.spec.name().c_str(), outliers ? ", 8 outlier channels x50" : "", err8, err12,
                  err8 / err12, err16, err8 / err16);
      EXPECT_LT(err8, outliers ? 0.1 : kMaxRelErrorVsFp32) << q.spec.name();
      EXPECT_LT(err12, outliers ? 0.1 / 8 : kMaxRelErrorVsFp32Int12) << q.spec.name();
      EXPECT_LT(err16, kMaxRelErrorVsFp32Int16) << q.spec.name();
      EXPECT_GT(err8 / err12, 8.0) << q.spec.name() << (outliers ? " with outliers" : "");
      EXPECT_GT(err8 / err16, 50.0) << q.spec.name() << (outliers ? " with outliers" : "");
    }
  }
}

// The largest groups int16 tables take without risking int32 overflow (lut_isa.h): whole-row
// groups this wide still compute (with a smaller table maximum) and match the fp32 product; int12
// tables keep their maximum there and match too.
TEST(LutKernels, WideTablesOnAVeryLongGroup) {
  QuantizedMatrix q = random_matrix(QuantKind::HLQ, 2, 0, 3, 270000, 21);
  PackedMatrix p = PackedMatrix::pack(q);
  const std::vector<float> x = random_activations(q.cols, 22);
  for (LutTables tables : kWideTables) {
    std::vector<float> want(size_t(q.rows)), got(size_t(q.rows));
    lut_gemm_isa(Isa::Scalar, p, x.data(), 1, want.data(), nullptr, tables);
    for (Isa isa : runnable_isas()) {
      lut_gemm_isa(isa, laid_out_for(p, isa), x.data(), 1, got.data(), nullptr, tables);
      EXPECT_EQ(got, want) << isa_name(isa) << " " << lut_tables_name(tables);
    }
    EXPECT_LT(rel_error(want, reference(q, x, 1)),
              tables == LutTables::Int16 ? kMaxRelErrorVsFp32Int16 : kMaxRelErrorVsFp32Int12);
  }
}

// Every lookup at the table's extreme (all codes set, all activations +1 or -1: each entry is
// +-127, +-2047 with int12 tables, +-32767 with int16) over a long whole-row group: the SIMD
// paths that sum in narrower integers first (AVX2 sums bytes in 16 bits for up to 64 quads, and
// int12 unit sums in bytes) must not overflow.
TEST(LutKernels, ExtremeEntriesOverALongGroupEqualScalarExactly) {
  for (int bits : {1, 2, 4}) {
    QuantizedMatrix q = random_matrix(QuantKind::HLQ, bits, 0, 40, 8192, 31);
    std::fill(q.codes.begin(), q.codes.end(), uint8_t((1 << bits) - 1));
    const PackedMatrix p = PackedMatrix::pack(q);
    for (float sign : {1.0f, -1.0f}) {
      const int64_t n = 2;
      const std::vector<float> X(size_t(n * q.cols), sign);
      for (LutTables tables : kAllTables) {
        std::vector<float> want(size_t(n * q.rows));
        lut_gemm_isa(Isa::Scalar, p, X.data(), n, want.data(), nullptr, tables);
        for (Isa isa : runnable_isas())
          for (int64_t m : {int64_t(1), n}) {
            std::vector<float> got(size_t(m * q.rows));
            lut_gemm_isa(isa, laid_out_for(p, isa), X.data(), m, got.data(), nullptr, tables);
            EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)))
                << isa_name(isa) << " B=" << bits << " n=" << m << " sign " << sign << " "
                << lut_tables_name(tables);
          }
        // The sums are right, not merely equal: every weight is z + sum_b s_b.
        double expect = 0;
        const int P = q.spec.params_per_group();
        for (int b = 0; b < bits; ++b) expect += q.params[size_t(b)];
        expect = sign * double(q.cols) * (expect + q.params[size_t(P - 1)]);
        EXPECT_NEAR(want[0], expect, 0.01 * std::abs(expect)) << lut_tables_name(tables);
      }
    }
  }
}

// Random codes over whole-row groups longer than one flush of the 16-bit byte sums (64 quads =
// 1024 columns): the prefill loops that hold several planes' sums at once (AVX2, int8 tables)
// flush them together every 64 quads; the decode loops flush plane by plane. Both must stay exact.
TEST(LutKernels, LongWholeRowGroupsEqualScalarExactly) {
  uint32_t seed = 1700;
  for (QuantKind kind : {QuantKind::HLQ, QuantKind::Uniform, QuantKind::HLQC})
    for (int bits : {3, 4}) {
      QuantizedMatrix q = random_matrix(kind, bits, 0, 70, 2100, ++seed);  // 131.25 quads a row
      const PackedMatrix p = PackedMatrix::pack(q);
      for (int64_t n : {1, 7}) {
        const std::vector<float> X = random_activations(n * q.cols, seed * 3 + uint32_t(n));
        for (LutTables tables : kAllTables)
          EXPECT_TRUE(every_isa_equals_scalar(p, X, n, tables)) << q.spec.name();
      }
    }
}

TEST(LutKernels, ThreadsAndGemvMatchSingleThreadedGemm) {
  ThreadPool pool(2);
  QuantizedMatrix q = random_matrix(QuantKind::HLQ, 3, 64, 200, 320, 9);
  PackedMatrix p = PackedMatrix::pack(q);
  const int64_t n = 9;
  const std::vector<float> X = random_activations(n * q.cols, 10);
  for (LutTables tables : kAllTables) {
    std::vector<float> one(size_t(n * q.rows)), two(size_t(n * q.rows)), gemv(size_t(q.rows));
    lut_gemm(laid_out_for(p, active_isa()), X.data(), n, one.data(), nullptr, tables);
    lut_gemm(laid_out_for(p, active_isa()), X.data(), n, two.data(), &pool, tables);
    EXPECT_EQ(one, two) << lut_tables_name(tables);
    for (int64_t t = 0; t < n; ++t) {
      lut_gemv(laid_out_for(p, active_isa()), X.data() + t * q.cols, gemv.data(), &pool, tables);
      EXPECT_TRUE(std::equal(gemv.begin(), gemv.end(), one.begin() + t * q.rows))
          << "token " << t << " " << lut_tables_name(tables);
    }
  }
}

TEST(LutKernels, ZeroActivationsGiveZero) {
  QuantizedMatrix q = random_matrix(QuantKind::HLQ, 2, 32, 40, 64, 3);
  PackedMatrix p = PackedMatrix::pack(q);
  for (LutTables tables : kAllTables) {
    std::vector<float> x(64, 0.0f), y(40, 1.0f);
    lut_gemv(laid_out_for(p, active_isa()), x.data(), y.data(), nullptr, tables);
    for (float v : y) EXPECT_EQ(v, 0.0f) << lut_tables_name(tables);
  }
}

}  // namespace
}  // namespace elutq

namespace elutq {
namespace {

// Decode prefetches the block it reads next (gemv_next_block); a wrong answer would only cost
// speed, so this checks the order directly: from each block of the stream walk, the next one the
// GEMV loop reads, and the end after the last, for ranges that do and do not divide into streams.
TEST(GemvWalk, NextBlockIsTheOneReadNext) {
  for (const auto& [begin, end, groups] :
       {std::tuple<int64_t, int64_t, int64_t>{0, 1, 1}, {0, 4, 3}, {5, 12, 2}, {3, 20, 4},
        {0, 9, 1}, {7, 8, 5}, {0, 344, 32}}) {
    std::vector<std::pair<int64_t, int64_t>> order;  // (tile, group) as the GEMV loop reads them
    std::vector<GemvBlockPos> predicted;
    const int64_t steps = gemv_stream_steps(begin, end);
    for (int64_t i = 0; i < steps; ++i) {
      int64_t tiles[kGemvStreams];
      const int streams = gemv_stream_tiles(begin, end, i, tiles);
      for (int64_t g = 0; g < groups; ++g)
        for (int k = 0; k < streams; ++k) {
          order.push_back({tiles[k], g});
          predicted.push_back(gemv_next_block(begin, steps, i, tiles, streams, k, g, groups));
        }
    }
    ASSERT_EQ(order.size(), size_t((end - begin) * groups)) << begin << ".." << end;
    for (size_t n = 0; n + 1 < order.size(); ++n) {
      EXPECT_EQ(predicted[n].tile, order[n + 1].first) << begin << ".." << end << " at " << n;
      EXPECT_EQ(predicted[n].group, order[n + 1].second) << begin << ".." << end << " at " << n;
    }
    EXPECT_EQ(predicted.back().tile, -1) << begin << ".." << end;
  }
}

TEST(LutPacked, SyntheticMatrixIsAValidBlob) {
  QuantSpec spec = parse_quant_spec("hlq-w3g128");
  PackedMatrix p = PackedMatrix::synthetic(spec, 70, 300, 5, lut_unit_layout(active_isa()));
  PackedMatrix v = PackedMatrix::view(p.data(), p.size_bytes());
  EXPECT_EQ(v.rows(), 70);
  EXPECT_EQ(v.header().bits, 3);
  std::vector<float> x(300, 1.0f), y(70);
  lut_gemv(v, x.data(), y.data(), nullptr);
  for (float f : y) EXPECT_TRUE(std::isfinite(f));
  EXPECT_THROW(PackedMatrix::synthetic(parse_quant_spec("codebook-w3"), 4, 32, 1), Error);
}

}  // namespace
}  // namespace elutq
