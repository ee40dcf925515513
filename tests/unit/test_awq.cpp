// AWQ: the scale search returns the alpha of least callback error, the scales are normalised as
// the paper's, folding keeps the float function unchanged, and clip search never raises the error.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "quant/awq.h"
#include "quant/hessian.h"
#include "quant/rtn.h"
#include "quant_test_util.h"

namespace elutq {
namespace {

TEST(Awq, ScalesAreNormalised) {
  std::vector<float> m = {0.1f, 2.0f, 0.5f, 0.0f};
  std::vector<float> s0 = awq_scales(m, 0.0f);
  for (float v : s0) EXPECT_FLOAT_EQ(v, 1.0f);
  std::vector<float> s = awq_scales(m, 0.5f);
  float mx = *std::max_element(s.begin(), s.end()), mn = *std::min_element(s.begin(), s.end());
  EXPECT_NEAR(mx * mn, 1.0f, 1e-5);
  EXPECT_NEAR(s[1] / s[0], std::sqrt(20.0f), 1e-4);  // 2.0 / 0.1, to the power 0.5
}

// A layer with loud channels: the callback quantizes W diag(s) with RTN w3g32 and measures
// ||W X^T - Q(W diag s) (X diag(1/s))^T||^2. The search must return the grid point of least error
// (checked by evaluating every alpha independently) and, on such inputs, beat alpha = 0.
TEST(Awq, PicksAlphaThatMinimisesTheCallback) {
  std::mt19937 rng(21);
  const int rows = 32, cols = 64, n = 256;
  std::vector<float> X = test::correlated_inputs(rng, n, cols), W(rows * cols);
  for (int r = 0; r < rows; ++r) {
    auto g = test::random_group(rng, cols, 0);
    std::copy(g.begin(), g.end(), W.begin() + r * cols);
  }
  std::vector<float> mean_abs(cols, 0.0f);
  for (int s = 0; s < n; ++s)
    for (int j = 0; j < cols; ++j) mean_abs[j] += std::fabs(X[s * cols + j]) / n;
  QuantSpec spec = parse_quant_spec("uniform-w3g32");
  int calls = 0;
  auto err = [&](const std::vector<float>& s) {
    ++calls;
    std::vector<float> Ws = W, D(rows * cols);
    scale_columns(Ws.data(), rows, cols, s.data());
    dequantize(quantize_rtn(Ws.data(), rows, cols, spec), D.data());
    for (int r = 0; r < rows; ++r)
      for (int j = 0; j < cols; ++j) D[r * cols + j] /= s[j];  // (Q(W s)) (x / s)
    return test::output_error(W, D, X, rows, cols);
  };
  AwqSearchResult res = awq_search_scales(mean_abs, err);
  EXPECT_EQ(calls, 20);
  ASSERT_EQ(res.errors.size(), 20u);
  double best = 1e300;
  float best_alpha = -1;
  for (int k = 0; k < 20; ++k) {
    double e = err(awq_scales(mean_abs, float(k) / 20.0f));
    EXPECT_NEAR(e, res.errors[k], 1e-9 * e);
    if (e < best) {
      best = e;
      best_alpha = float(k) / 20.0f;
    }
  }
  EXPECT_FLOAT_EQ(res.alpha, best_alpha);
  EXPECT_GT(res.alpha, 0.0f);
  EXPECT_LT(best, res.errors[0]);
  std::printf("alpha %.2f: error %.4g vs %.4g at alpha 0\n", res.alpha, best, res.errors[0]);
}

// y = W (g * xhat): scaling W's columns by s and dividing g by s leaves y unchanged; likewise for
// a preceding linear whose output rows are divided by s.
TEST(Awq, FoldingKeepsTheFunction) {
  std::mt19937 rng(22);
  const int rows = 8, cols = 16, prev_in = 12;
  std::vector<float> W = test::random_group(rng, rows * cols, 0), g(cols), x(cols), s(cols);
  std::vector<float> Wp = test::random_group(rng, cols * prev_in, 0), u(prev_in);
  for (int j = 0; j < cols; ++j) {
    g[j] = 1.0f + 0.1f * j;
    x[j] = std::sin(float(j));
    s[j] = 0.5f + 0.25f * (j % 5);
  }
  for (int i = 0; i < prev_in; ++i) u[i] = std::cos(float(i));
  auto apply = [&](const std::vector<float>& Wm, const std::vector<float>& in) {
    std::vector<float> y(rows, 0.0f);
    for (int r = 0; r < rows; ++r)
      for (int j = 0; j < cols; ++j) y[r] += Wm[r * cols + j] * in[j];
    return y;
  };
  std::vector<float> gx(cols);
  for (int j = 0; j < cols; ++j) gx[j] = g[j] * x[j];
  std::vector<float> y0 = apply(W, gx);
  std::vector<float> Ws = W, g2 = g;
  scale_columns(Ws.data(), rows, cols, s.data());
  fold_into_norm(g2.data(), cols, s.data());
  for (int j = 0; j < cols; ++j) gx[j] = g2[j] * x[j];
  std::vector<float> y1 = apply(Ws, gx);
  for (int r = 0; r < rows; ++r) EXPECT_NEAR(y0[r], y1[r], 1e-5f);
  // Preceding linear: h = Wp u (cols), y = W h.
  auto hid = [&](const std::vector<float>& P) {
    std::vector<float> h(cols, 0.0f);
    for (int j = 0; j < cols; ++j)
      for (int i = 0; i < prev_in; ++i) h[j] += P[j * prev_in + i] * u[i];
    return h;
  };
  std::vector<float> Wp2 = Wp;
  fold_into_linear_rows(Wp2.data(), cols, prev_in, s.data());
  std::vector<float> ya = apply(W, hid(Wp)), yb = apply(Ws, hid(Wp2));
  for (int r = 0; r < rows; ++r) EXPECT_NEAR(ya[r], yb[r], 1e-5f);
}

TEST(Awq, ClipSearchNeverRaisesGroupOutputError) {
  std::mt19937 rng(23);
  const int rows = 16, cols = 64;
  std::vector<float> X = test::correlated_inputs(rng, 256, cols), W(rows * cols);
  for (int r = 0; r < rows; ++r) {
    auto g = test::random_group(rng, cols, 3);  // outliers: clipping should help somewhere
    std::copy(g.begin(), g.end(), W.begin() + r * cols);
  }
  HessianAccumulator acc(cols);
  acc.add(X.data(), 256);
  std::vector<float> G = acc.hessian();
  QuantSpec spec = parse_quant_spec("uniform-w3g32");
  std::vector<float> Wc = W, D0(rows * cols), D1(rows * cols);
  std::vector<float> ratios = awq_clip_search(Wc.data(), rows, cols, G, spec);
  dequantize(quantize_rtn(W.data(), rows, cols, spec), D0.data());
  dequantize(quantize_rtn(Wc.data(), rows, cols, spec), D1.data());
  double e0 = test::output_error(W, D0, X, rows, cols), e1 = test::output_error(W, D1, X, rows, cols);
  EXPECT_LE(e1, e0 * (1 + 1e-6));
  EXPECT_TRUE(std::any_of(ratios.begin(), ratios.end(), [](float r) { return r < 1.0f; }));
  std::printf("clip search: output error %.4g -> %.4g\n", e0, e1);
}

}  // namespace
}  // namespace elutq
