// block_output_gradients against central finite differences of the loss: the residual stream at
// a block's input is pushed along a random direction, the runtime's blocks (Model::forward_block)
// carry it to the end, and a naive head (RMSNorm, logits, mean cross-entropy) scores it.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "model/model.h"
#include "quant/loss_gradients.h"
#include "test_forward_model.h"

namespace elutq {
namespace {

// Mean next-token cross-entropy of the sequences when the residual stream entering block `from`
// is h (one (T, dim) slab per sequence) and blocks from..L-1 and the head follow.
double loss_from(Model& m, const test::MemorySource& src, int from, std::vector<float> h,
                 const std::vector<std::vector<int>>& seqs) {
  const ModelConfig& c = m.config();
  const int T = int(seqs[0].size()), d = c.dim, V = c.vocab_size;
  const float* head = src.w(c.tied_embeddings ? "token_embd.weight" : "output.weight");
  const float* norm = src.w("output_norm.weight");
  double sum = 0;
  int64_t n = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    float* x = h.data() + s * size_t(T) * d;
    for (int l = from; l < c.n_layers; ++l) m.forward_block(l, x, T, 0);
    for (int t = 0; t + 1 < T; ++t) {
      const float* row = x + int64_t(t) * d;
      double ss = 0;
      for (int i = 0; i < d; ++i) ss += double(row[i]) * row[i];
      const double r = 1.0 / std::sqrt(ss / d + c.norm_eps);
      std::vector<double> logits(static_cast<size_t>(V));
      double mx = -1e300;
      for (int v = 0; v < V; ++v) {
        double z = 0;
        for (int i = 0; i < d; ++i) z += double(row[i]) * r * norm[i] * head[int64_t(v) * d + i];
        logits[size_t(v)] = z;
        mx = std::max(mx, z);
      }
      double se = 0;
      for (double z : logits) se += std::exp(z - mx);
      sum += std::log(se) + mx - logits[size_t(seqs[s][size_t(t) + 1])];
      ++n;
    }
  }
  return sum / double(n);
}

TEST(LossGradients, MatchFiniteDifferencesAtEveryBlock) {
  for (const char* arch : {"llama", "qwen2"}) {
    SCOPED_TRACE(arch);
    test::MemorySource src(test::tiny(arch), 5);
    const ModelConfig& c = src.config();
    const std::vector<std::vector<int>> seqs = {{1, 7, 3, 22, 9, 14}, {5, 5, 30, 2, 17, 8}};
    const int T = 6, d = c.dim;
    ThreadPool pool(1);
    const std::vector<std::vector<float>> g = block_output_gradients(src, seqs, pool);
    ASSERT_EQ(int(g.size()), c.n_layers);
    ModelOptions mo;
    mo.n_threads = 1;
    mo.max_ctx = T;
    Model m(src, mo);
    // The residual stream entering each block, per sequence.
    std::vector<std::vector<float>> x(size_t(c.n_layers) + 1,
                                      std::vector<float>(seqs.size() * size_t(T) * d));
    for (size_t s = 0; s < seqs.size(); ++s) {
      float* slab = x[0].data() + s * size_t(T) * d;
      m.embed(seqs[s].data(), T, slab);
      for (int l = 0; l < c.n_layers; ++l) {
        float* out = x[size_t(l) + 1].data() + s * size_t(T) * d;
        std::copy(slab, slab + int64_t(T) * d, out);
        m.forward_block(l, out, T, 0);
        slab = out;
      }
    }
    std::mt19937 rng(3);
    std::normal_distribution<float> nd;
    // g[l] is the gradient at block l's output = the input of block l + 1 (or of the head).
    for (int l = 0; l < c.n_layers; ++l) {
      std::vector<float> v(x[0].size());
      for (float& e : v) e = nd(rng);
      double analytic = 0;
      for (size_t i = 0; i < v.size(); ++i) analytic += double(g[size_t(l)][i]) * v[i];
      const float eps = 1e-2f;
      std::vector<float> plus = x[size_t(l) + 1], minus = plus;
      for (size_t i = 0; i < v.size(); ++i) {
        plus[i] += eps * v[i];
        minus[i] -= eps * v[i];
      }
      const double numeric = (loss_from(m, src, l + 1, plus, seqs) -
                              loss_from(m, src, l + 1, minus, seqs)) / (2.0 * eps);
      EXPECT_NEAR(analytic, numeric, 2e-3 * std::max(1.0, std::fabs(numeric)))
          << "block " << l;
    }
  }
}

}  // namespace
}  // namespace elutq
