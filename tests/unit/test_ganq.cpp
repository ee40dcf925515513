// GANQ: the codebook step against an independent least-squares solve, the assignment's loss
// against the Hessian quadratic form, and the whole method against RTN on a random layer.
#include <gtest/gtest.h>
#include <lapacke.h>

#include <cmath>
#include <random>
#include <vector>

#include "quant/ganq.h"
#include "quant/hessian.h"
#include "quant/rtn.h"
#include "quant_test_util.h"

namespace elutq {
namespace {

std::vector<float> hessian_of(const std::vector<float>& X, int cols) {
  HessianAccumulator acc(cols);
  acc.add(X.data(), int64_t(X.size() / cols));
  return acc.hessian();
}

// T from ganq_codebook_update equals argmin_T ||(w - T S) L||^2 solved by LAPACKE dgelsd on the
// (n, K) design matrix (S L)^T, with H = L L^T from LAPACKE dpotrf.
TEST(Ganq, CodebookStepIsLeastSquares) {
  std::mt19937 rng(11);
  const int n = 48, bits = 2, K = 4;
  std::vector<float> H = hessian_of(test::correlated_inputs(rng, 256, n), n);
  std::vector<float> w = test::random_group(rng, n, 0);
  std::vector<uint8_t> codes(n);
  for (int i = 0; i < n; ++i) codes[i] = uint8_t(i % K);
  std::shuffle(codes.begin(), codes.end(), rng);
  std::vector<float> wH(n, 0.0f), T(K, 0.0f);
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < n; ++i) wH[j] += w[i] * H[i * n + j];
  ganq_codebook_update(wH.data(), H.data(), n, codes.data(), bits, T.data());

  std::vector<double> L(H.begin(), H.end());
  ASSERT_EQ(LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', n, L.data(), n), 0);
  for (int i = 0; i < n; ++i)
    for (int j = i + 1; j < n; ++j) L[i * n + j] = 0;
  std::vector<double> A(size_t(n) * K, 0.0), y(n, 0.0), s(K);  // (n, K), (n)
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < n; ++i) {
      A[j * K + codes[i]] += L[i * n + j];
      y[j] += w[i] * L[i * n + j];
    }
  lapack_int rank;
  ASSERT_EQ(LAPACKE_dgelsd(LAPACK_ROW_MAJOR, n, K, 1, A.data(), K, y.data(), 1, s.data(), 1e-12,
                           &rank),
            0);
  for (int k = 0; k < K; ++k) EXPECT_NEAR(T[k], y[k], 1e-4 * std::fabs(y[k]) + 1e-6) << k;
}

// The loss the back-substitution returns is (w - q) H (w - q)^T, and it is no worse than giving
// every weight its nearest codebook entry (the back-substitution's first candidate's rival).
TEST(Ganq, AssignmentLossIsTheQuadraticForm) {
  std::mt19937 rng(12);
  const int n = 64, bits = 3;
  std::vector<float> H = hessian_of(test::correlated_inputs(rng, 256, n), n);
  std::vector<float> L = H;
  ASSERT_EQ(LAPACKE_spotrf(LAPACK_ROW_MAJOR, 'L', n, L.data(), n), 0);
  for (int i = 0; i < n; ++i)
    for (int j = i + 1; j < n; ++j) L[i * n + j] = 0;
  std::vector<float> w = test::random_group(rng, n, 0), T(8);
  for (int k = 0; k < 8; ++k) T[k] = -0.04f + 0.08f * k / 7;
  std::vector<uint8_t> codes(n);
  double loss = ganq_assign(w.data(), L.data(), n, T.data(), bits, codes.data());
  auto quad = [&](const std::vector<uint8_t>& c) {
    double e = 0;
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) e += (w[i] - T[c[i]]) * double(H[i * n + j]) * (w[j] - T[c[j]]);
    return e;
  };
  EXPECT_NEAR(loss, quad(codes), 1e-3 * loss);
  std::vector<uint8_t> nearest(n);
  for (int i = 0; i < n; ++i) {
    int b = 0;
    for (int k = 1; k < 8; ++k)
      if (std::fabs(w[i] - T[k]) < std::fabs(w[i] - T[b])) b = k;
    nearest[i] = uint8_t(b);
  }
  EXPECT_LT(loss, quad(nearest));
}

TEST(Ganq, BeatsRowwiseRtnOnCorrelatedInputs) {
  std::mt19937 rng(13);
  const int rows = 32, cols = 96;
  std::vector<float> X = test::correlated_inputs(rng, 384, cols);
  std::vector<float> H = hessian_of(X, cols), W(rows * cols), D(rows * cols), Dr(rows * cols);
  for (int r = 0; r < rows; ++r) {
    auto g = test::random_group(rng, cols, r % 4);
    std::copy(g.begin(), g.end(), W.begin() + r * cols);
  }
  for (int bits : {2, 3}) {
    GanqResult g = ganq_quantize(W.data(), rows, cols, H, bits);
    EXPECT_EQ(g.q.spec.kind, QuantKind::Codebook);
    dequantize(g.q, D.data());
    QuantSpec us{QuantKind::Uniform, bits, 0};
    dequantize(quantize_rtn(W.data(), rows, cols, us), Dr.data());
    double e = test::output_error(W, D, X, rows, cols), er = test::output_error(W, Dr, X, rows, cols);
    std::printf("w%d: row-wise RTN %.4g, GANQ %.4g\n", bits, er, e);
    EXPECT_LT(e, 0.7 * er);
  }
}

}  // namespace
}  // namespace elutq
