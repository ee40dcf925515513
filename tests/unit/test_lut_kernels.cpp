// LUT kernels: the packed layout round-trips, every SIMD path this machine runs equals the scalar
// reference bit for bit (integer sums and fma order are identical by construction), threads do not
// change results, and the result stays within a stated error of the fp32 matmul of the
// dequantized weights.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/cpu_features.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/lut_matmul.h"
#include "kernels/packed_matrix.h"
#include "quant/qformat.h"

namespace elutq {
namespace {

// Relative L2 error of the LUT product vs fp32 on dequantized weights, for Gaussian activations.
// The only approximation is the int8 rounding of the activation tables (one scale per group):
// about 0.3-0.6% in practice; 2% leaves room for small groups and few rows.
constexpr double kMaxRelErrorVsFp32 = 0.02;

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
    } else {
      float sum = 0;
      for (int b = 0; b < bits; ++b) sum += p[b] = base * float(1 << b) * u(rng);
      p[bits] = -sum / 2.0f + 0.002f * z(rng);
    }
  }
  round_params_to_fp16(q.params);
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
  for (QuantKind kind : {QuantKind::HLQ, QuantKind::Uniform})
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
    std::vector<float> want(size_t(n * q.rows));
    lut_gemm_isa(Isa::Scalar, p, X.data(), n, want.data(), nullptr);
    for (Isa isa : runnable_isas()) {
      for (ThreadPool* tp : {static_cast<ThreadPool*>(nullptr), &pool}) {
        std::vector<float> got(size_t(n * q.rows), -1.0f);
        lut_gemm_isa(isa, p, X.data(), n, got.data(), tp);
        ASSERT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)))
            << isa_name(isa) << " " << q.spec.name() << (tp ? " threaded" : "");
        lut_gemm_isa(isa, p, X.data(), 1, got.data(), tp);
        ASSERT_EQ(0, std::memcmp(got.data(), want.data(), size_t(q.rows) * sizeof(float)))
            << isa_name(isa) << " " << q.spec.name() << " one token" << (tp ? " threaded" : "");
      }
    }
  }
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
    for (int64_t n : {1, 3, 6}) {
      const std::vector<float> X = random_activations(n * c.cols, seed * 7 + uint32_t(n));
      std::vector<float> want(size_t(n * c.rows));
      lut_gemm_isa(Isa::Scalar, p, X.data(), n, want.data(), nullptr);
      for (Isa isa : isas) {
        std::vector<float> got(size_t(n * c.rows), -1.0f);
        lut_gemm_isa(isa, p, X.data(), n, got.data(), nullptr);
        ASSERT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)))
            << isa_name(isa) << " " << q.spec.name() << " " << c.rows << "x" << c.cols << " n=" << n;
      }
    }
  }
}

TEST(LutKernels, WithinStatedErrorOfFp32Matmul) {
  uint32_t seed = 500;
  double worst = 0;
  for (const Case& c : cases()) {
    QuantizedMatrix q = random_matrix(c.kind, c.bits, c.group, c.rows, c.cols, ++seed);
    PackedMatrix p = PackedMatrix::pack(q);
    const int64_t n = 2;
    const std::vector<float> X = random_activations(n * c.cols, seed);
    std::vector<float> y(size_t(n * c.rows));
    lut_gemm(p, X.data(), n, y.data(), nullptr);
    const double err = rel_error(y, reference(q, X, n));
    worst = std::max(worst, err);
    EXPECT_LT(err, kMaxRelErrorVsFp32) << q.spec.name() << " " << c.rows << "x" << c.cols;
  }
  std::printf("worst relative L2 error vs fp32: %.4f\n", worst);
}

// At LLaMA width (4096 inputs, g128) with Gaussian activations, the figure docs/RESULTS.md quotes.
TEST(LutKernels, ErrorAtLlamaWidth) {
  for (auto [kind, bits] : {std::pair{QuantKind::HLQ, 2}, {QuantKind::HLQ, 3}, {QuantKind::HLQ, 4},
                            {QuantKind::Uniform, 4}}) {
    QuantizedMatrix q = random_matrix(kind, bits, 128, 64, 4096, 11);
    PackedMatrix p = PackedMatrix::pack(q);
    const std::vector<float> x = random_activations(q.cols, 12);
    std::vector<float> y(size_t(q.rows));
    lut_gemv(p, x.data(), y.data(), nullptr);
    const double err = rel_error(y, reference(q, x, 1));
    std::printf("%s 64x4096: relative L2 error vs fp32 %.4f\n", q.spec.name().c_str(), err);
    EXPECT_LT(err, kMaxRelErrorVsFp32) << q.spec.name();
  }
}

TEST(LutKernels, ThreadsAndGemvMatchSingleThreadedGemm) {
  ThreadPool pool(2);
  QuantizedMatrix q = random_matrix(QuantKind::HLQ, 3, 64, 200, 320, 9);
  PackedMatrix p = PackedMatrix::pack(q);
  const int64_t n = 9;
  const std::vector<float> X = random_activations(n * q.cols, 10);
  std::vector<float> one(size_t(n * q.rows)), two(size_t(n * q.rows)), gemv(size_t(q.rows));
  lut_gemm(p, X.data(), n, one.data(), nullptr);
  lut_gemm(p, X.data(), n, two.data(), &pool);
  EXPECT_EQ(one, two);
  for (int64_t t = 0; t < n; ++t) {
    lut_gemv(p, X.data() + t * q.cols, gemv.data(), &pool);
    EXPECT_TRUE(std::equal(gemv.begin(), gemv.end(), one.begin() + t * q.rows)) << "token " << t;
  }
}

TEST(LutKernels, ZeroActivationsGiveZero) {
  QuantizedMatrix q = random_matrix(QuantKind::HLQ, 2, 32, 40, 64, 3);
  PackedMatrix p = PackedMatrix::pack(q);
  std::vector<float> x(64, 0.0f), y(40, 1.0f);
  lut_gemv(p, x.data(), y.data(), nullptr);
  for (float v : y) EXPECT_EQ(v, 0.0f);
}

}  // namespace
}  // namespace elutq

namespace elutq {
namespace {

TEST(LutPacked, SyntheticMatrixIsAValidBlob) {
  QuantSpec spec = parse_quant_spec("hlq-w3g128");
  PackedMatrix p = PackedMatrix::synthetic(spec, 70, 300, 5);
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
