// Helpers shared by the quantizer unit tests: random weight groups with LLM-like shapes.
#pragma once

#include <cmath>
#include <random>
#include <vector>

namespace elutq::test {

// n weights of one of a few shapes: 0 gaussian, 1 laplace, 2 uniform, 3 gaussian with outliers,
// 4 a constant group (degenerate), scaled like LLM weights (~0.02).
inline std::vector<float> random_group(std::mt19937& rng, int n, int shape) {
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::exponential_distribution<float> ed(50.0f);
  std::uniform_real_distribution<float> ud(-0.03f, 0.05f);
  std::vector<float> w(n);
  for (int i = 0; i < n; ++i) {
    switch (shape) {
      case 0: w[i] = nd(rng); break;
      case 1: w[i] = (rng() & 1 ? 1.0f : -1.0f) * ed(rng); break;
      case 2: w[i] = ud(rng); break;
      case 3: w[i] = nd(rng) * (rng() % 16 == 0 ? 8.0f : 1.0f); break;
      default: w[i] = 0.0123f; break;
    }
  }
  return w;
}

}  // namespace elutq::test

namespace elutq::test {

// Calibration inputs (n, cols) with correlated channels (X = Z M, M = I + noise) and every 17th
// channel 6x louder, as LLM activations have a few outlier channels.
inline std::vector<float> correlated_inputs(std::mt19937& rng, int n, int cols) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> M(size_t(cols) * cols), X(size_t(n) * cols, 0.0f);
  for (int i = 0; i < cols; ++i)
    for (int j = 0; j < cols; ++j) M[i * cols + j] = (i == j ? 1.0f : 0.0f) + 0.075f * nd(rng);
  std::vector<float> z(cols);
  for (int s = 0; s < n; ++s) {
    for (float& v : z) v = nd(rng);
    for (int k = 0; k < cols; ++k)
      for (int j = 0; j < cols; ++j) X[s * cols + j] += z[k] * M[k * cols + j];
    for (int j = 0; j < cols; j += 17) X[s * cols + j] *= 6.0f;
  }
  return X;
}

// ||(W - D) X^T||^2 for W, D (rows, cols) and X (n, cols).
inline double output_error(const std::vector<float>& W, const std::vector<float>& D,
                           const std::vector<float>& X, int rows, int cols) {
  int n = int(X.size() / cols);
  double e = 0;
  for (int s = 0; s < n; ++s)
    for (int r = 0; r < rows; ++r) {
      double acc = 0;
      for (int c = 0; c < cols; ++c) acc += double(W[r * cols + c] - D[r * cols + c]) * X[s * cols + c];
      e += acc * acc;
    }
  return e;
}

}  // namespace elutq::test
