// Sampler: greedy is argmax, truncations never leave their sets, frequencies follow softmax,
// the same seed gives the same tokens.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "core/error.h"
#include "generate/sampler.h"
#include "kernels/vec_math.h"

namespace elutq {
namespace {

std::vector<float> random_logits(int n, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.f, 2.f);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(g);
  return v;
}

// Indices of the logits sorted by descending value.
std::vector<int> ranking(const std::vector<float>& l) {
  std::vector<int> idx(l.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return l[a] > l[b]; });
  return idx;
}

// Untruncated sampling draws in the order of descending logit, ties by ascending id: ties, signed
// zeros, negatives and infinities in one vocabulary.
TEST(Sampler, UntruncatedCandidatesAreInDescendingLogitThenIdOrder) {
  std::mt19937 g(9);
  std::vector<float> l(5000);
  for (auto& x : l) x = float(int(g() % 41) - 20) * 0.25f;  // many ties
  l[7] = -0.0f;
  l[8] = 0.0f;
  l[9] = -INFINITY;
  l[10] = 1e30f;
  Sampler smp({.temperature = 1.f, .top_k = 0, .top_p = 1.f, .min_p = 0.f});
  smp.sample(l.data(), int(l.size()));
  const auto& c = smp.last_candidates();
  ASSERT_EQ(c.size(), l.size());
  const std::vector<int> want = ranking(l);  // stable: equal logits keep ascending ids
  for (size_t i = 0; i < c.size(); ++i) ASSERT_EQ(c[i].first, want[i]) << "rank " << i;
}

// The whole-vocabulary draw sorts only the head it needs; its tokens must be those of the rule
// it implements written out plainly: sort everything, softmax (exp_nonpositive_inplace, sum_of_weights), cut top-p and
// min-p, renormalise after a cut, inverse CDF of the one uniform per draw. Peaked and flat
// logits, so draws end inside the first head and far past it.
int full_sort_draw(const std::vector<float>& l, float T, float top_p, float min_p, double u) {
  const float mx = *std::max_element(l.begin(), l.end());
  std::vector<float> w(l.size());
  for (size_t i = 0; i < l.size(); ++i) w[i] = (l[i] - mx) * (1.0f / T);
  exp_nonpositive_inplace(w.data(), int64_t(w.size()));
  const double sum = sum_of_weights(w);
  const std::vector<int> order = ranking(l);
  std::vector<float> p(l.size());
  for (size_t i = 0; i < l.size(); ++i) p[i] = float(w[size_t(order[i])] / sum);
  size_t keep = p.size();
  double mass = 0;
  if (top_p < 1.0f)
    for (size_t i = 0; i < p.size(); ++i)
      if ((mass += p[i]) >= top_p) {
        keep = i + 1;
        break;
      }
  if (min_p > 0.0f) {
    size_t k = 1;
    while (k < keep && p[k] >= min_p * p[0]) ++k;
    keep = k;
  }
  if (keep < p.size()) {
    double total = 0;
    for (size_t i = 0; i < keep; ++i) total += p[i];
    for (size_t i = 0; i < keep; ++i) p[i] = float(p[i] / total);
  }
  double acc = 0;
  for (size_t i = 0; i < keep; ++i)
    if (u < (acc += p[i])) return order[i];
  return order[keep - 1];
}

TEST(Sampler, WholeVocabularyDrawEqualsTheFullSortRule) {
  struct Case {
    float spread, T, top_p, min_p;
  };
  const Case cases[] = {{3.f, 0.7f, 1.f, 0.f},  {0.2f, 1.f, 1.f, 0.f},  {3.f, 1.f, 0.95f, 0.f},
                        {0.2f, 1.f, 0.99f, 0.f}, {3.f, 1.f, 1.f, 0.05f}, {0.05f, 1.f, 1.f, 0.5f},
                        {1.f, 1.5f, 0.9f, 0.01f}};
  int c_index = 0;
  for (const Case& c : cases) {
    std::mt19937 g(uint32_t(100 + c_index));
    std::normal_distribution<float> d(0.f, c.spread);
    std::vector<float> l(20000);
    for (auto& x : l) x = d(g);
    l[17] = -INFINITY;
    const uint64_t seed = uint64_t(c_index++);
    Sampler smp({.temperature = c.T, .top_k = 0, .top_p = c.top_p, .min_p = c.min_p, .seed = seed});
    std::mt19937_64 rng(seed);
    for (int draw = 0; draw < 24; ++draw) {
      const double u = double(rng() >> 11) * 0x1.0p-53;
      ASSERT_EQ(smp.sample(l.data(), int(l.size())), full_sort_draw(l, c.T, c.top_p, c.min_p, u))
          << "case " << c_index - 1 << " draw " << draw;
      l[size_t(g() % l.size())] += 1.0f;  // a new distribution each draw
    }
  }
}

TEST(Sampler, GreedyIsArgmax) {
  for (uint32_t s = 0; s < 20; ++s) {
    auto l = random_logits(1000, s);
    Sampler smp({.temperature = 0.f});
    const int want = int(std::max_element(l.begin(), l.end()) - l.begin());
    EXPECT_EQ(smp.sample(l.data(), int(l.size())), want);
    EXPECT_EQ(argmax(l.data(), int(l.size())), want);
  }
}

TEST(Sampler, TopKNeverLeavesTheKBest) {
  auto l = random_logits(500, 1);
  const auto r = ranking(l);
  const std::vector<int> best(r.begin(), r.begin() + 5);
  Sampler smp({.temperature = 5.f, .top_k = 5, .top_p = 1.f, .min_p = 0.f, .seed = 7});
  std::vector<int> seen;
  for (int i = 0; i < 2000; ++i) {
    const int t = smp.sample(l.data(), int(l.size()));
    ASSERT_NE(std::find(best.begin(), best.end(), t), best.end()) << "token " << t;
    seen.push_back(t);
  }
  // With a high temperature all five must show up.
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(std::unique(seen.begin(), seen.end()) - seen.begin(), 5);
}

TEST(Sampler, TopPKeepsTheSmallestSetReachingP) {
  auto l = random_logits(200, 3);
  const float T = 1.f, P = 0.6f;
  // Independent softmax in double.
  const float mx = *std::max_element(l.begin(), l.end());
  std::vector<double> p(l.size());
  double z = 0;
  for (size_t i = 0; i < l.size(); ++i) z += (p[i] = std::exp(double(l[i] - mx) / T));
  for (auto& x : p) x /= z;
  const auto r = ranking(l);
  size_t keep = 0;
  double mass = 0;
  while (mass < P) mass += p[size_t(r[keep++])];
  Sampler smp({.temperature = T, .top_k = 0, .top_p = P, .min_p = 0.f, .seed = 11});
  smp.sample(l.data(), int(l.size()));
  const auto& c = smp.last_candidates();
  ASSERT_EQ(c.size(), keep);
  double kept_mass = 0;
  for (size_t i = 0; i < keep; ++i) {
    EXPECT_EQ(c[i].first, r[i]);
    kept_mass += p[size_t(r[i])];
  }
  for (size_t i = 0; i < keep; ++i) EXPECT_NEAR(c[i].second, p[size_t(r[i])] / kept_mass, 1e-5);
  EXPECT_GE(kept_mass, P - 1e-6);
  EXPECT_LT(kept_mass - p[size_t(r[keep - 1])], P);
}

TEST(Sampler, MinPDropsUnlikelyTokens) {
  std::vector<float> l = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  Sampler smp({.temperature = 1.f, .top_k = 0, .top_p = 1.f, .min_p = 0.2f, .seed = 1});
  for (int i = 0; i < 500; ++i) ASSERT_NE(smp.sample(l.data(), 4), 3);  // 0.05 < 0.2 * 0.5
  EXPECT_EQ(smp.last_candidates().size(), 3u);
}

TEST(Sampler, FrequenciesFollowTheSoftmax) {
  // p = (0.5, 0.3, 0.2); 20000 draws: each frequency within 5 sigma.
  std::vector<float> l = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  Sampler smp({.temperature = 1.f, .top_k = 0, .top_p = 1.f, .min_p = 0.f, .seed = 123});
  const int N = 20000;
  int count[3] = {0, 0, 0};
  for (int i = 0; i < N; ++i) ++count[smp.sample(l.data(), 3)];
  const double p[3] = {0.5, 0.3, 0.2};
  for (int k = 0; k < 3; ++k) {
    const double sigma = std::sqrt(p[k] * (1 - p[k]) / N);
    EXPECT_NEAR(double(count[k]) / N, p[k], 5 * sigma) << "token " << k;
  }
}

TEST(Sampler, TemperatureSharpens) {
  std::vector<float> l = {1.f, 0.f};
  Sampler cold({.temperature = 0.25f, .top_k = 0, .top_p = 1.f, .min_p = 0.f, .seed = 5});
  cold.sample(l.data(), 2);
  // softmax(4, 0)[0] = 1 / (1 + e^-4)
  EXPECT_NEAR(cold.last_candidates()[0].second, 1.0 / (1.0 + std::exp(-4.0)), 1e-6);
}

TEST(Sampler, SameSeedSameTokensDifferentSeedDiffers) {
  auto l = random_logits(300, 9);
  SamplerOptions o{.temperature = 1.5f, .top_k = 0, .top_p = 1.f, .min_p = 0.f, .seed = 77};
  Sampler a(o), b(o);
  o.seed = 78;
  Sampler c(o);
  int differ = 0;
  for (int i = 0; i < 200; ++i) {
    const int ta = a.sample(l.data(), 300);
    ASSERT_EQ(ta, b.sample(l.data(), 300));
    differ += ta != c.sample(l.data(), 300);
  }
  EXPECT_GT(differ, 0);
}

TEST(Sampler, RepetitionPenaltyLowersSeenTokens) {
  std::vector<float> l = {2.f, 1.9f, -1.f};
  Sampler smp({.temperature = 0.f, .repeat_penalty = 1.5f});
  smp.accept(0);  // 2 / 1.5 = 1.33 < 1.9
  EXPECT_EQ(smp.sample(l.data(), 3), 1);
  Sampler off({.temperature = 0.f});
  off.accept(0);
  EXPECT_EQ(off.sample(l.data(), 3), 0);  // off by default
}

TEST(Sampler, BadOptionsAreErrors) {
  EXPECT_THROW(Sampler({.top_p = 0.f}), Error);
  EXPECT_THROW(Sampler({.min_p = 1.f}), Error);
  EXPECT_THROW(Sampler({.repeat_penalty = 0.f}), Error);
}

}  // namespace
}  // namespace elutq
