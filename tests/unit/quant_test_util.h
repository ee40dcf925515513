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
