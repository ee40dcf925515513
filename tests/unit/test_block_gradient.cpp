// The decoder block's training form: every op's backward and the whole block's gradients against
// central finite differences in double, and the float training forward against the runtime's
// DecoderBlock::forward on each LLaMA-family variant.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/block_gradient.h"
#include "model/block_ops.h"
#include "model/model.h"
#include "model/rope.h"
#include "test_forward_model.h"

namespace elutq {
namespace {

// Analytic gradients in double agree with central differences to a few 1e-9 (relative to the
// largest sampled entry); one entry off by 1e-3 of itself is caught with a wide margin.
constexpr double kGradTolerance = 1e-6;

std::vector<double> random_vec(size_t n, std::mt19937& rng, double scale = 1.0,
                               double center = 0.0) {
  std::uniform_real_distribution<double> u(-scale, scale);
  std::vector<double> v(n);
  for (double& x : v) x = center + u(rng);
  return v;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Largest |analytic - numeric| over (up to `samples`) entries of params, relative to the largest
// |numeric| among them; numeric = central differences of loss() in each entry.
double fd_error(std::vector<double>& params, const std::vector<double>& analytic,
                const std::function<double()>& loss, size_t samples, std::mt19937& rng,
                double eps = 1e-5) {
  EXPECT_EQ(params.size(), analytic.size());
  std::vector<size_t> idx(params.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  if (idx.size() > samples) {
    std::shuffle(idx.begin(), idx.end(), rng);
    idx.resize(samples);
  }
  double max_err = 0, max_num = 0;
  for (size_t i : idx) {
    const double keep = params[i];
    params[i] = keep + eps;
    const double up = loss();
    params[i] = keep - eps;
    const double down = loss();
    params[i] = keep;
    const double num = (up - down) / (2 * eps);
    max_err = std::max(max_err, std::abs(num - analytic[i]));
    max_num = std::max(max_num, std::abs(num));
  }
  return max_num > 0 ? max_err / max_num : max_err;
}

// ---- single ops ---------------------------------------------------------------------------------

TEST(BlockOps, RmsNormBackwardMatchesFiniteDifferences) {
  std::mt19937 rng(1);
  const int n = 12;
  const float eps = 1e-5f;
  std::vector<double> x = random_vec(n, rng), w = random_vec(n, rng, 0.3, 1.0),
                      r = random_vec(n, rng), out(n);
  auto loss = [&] {
    rmsnorm_forward(x.data(), w.data(), n, eps, out.data());
    return dot(out, r);
  };
  const double inv = rmsnorm_forward(x.data(), w.data(), n, eps, out.data());
  EXPECT_NEAR(inv, rms_inverse(x.data(), n, eps), 0.0);
  std::vector<double> dx(n), dw(n, 0.5);  // dw accumulates onto what is there
  rmsnorm_backward(x.data(), w.data(), n, inv, r.data(), dx.data(), dw.data());
  for (double& v : dw) v -= 0.5;
  EXPECT_LT(fd_error(x, dx, loss, n, rng), kGradTolerance);
  EXPECT_LT(fd_error(w, dw, loss, n, rng), kGradTolerance);

  // dx may be dy.
  std::vector<double> inplace = r;
  rmsnorm_backward(x.data(), w.data(), n, inv, inplace.data(), inplace.data(), nullptr);
  EXPECT_EQ(inplace, dx);
}

TEST(BlockOps, GradientCheckCatchesAWrongGradient) {
  std::mt19937 rng(2);
  const int n = 10;
  std::vector<double> x = random_vec(n, rng), w = random_vec(n, rng, 0.3, 1.0),
                      r = random_vec(n, rng), out(n), dx(n), dw(n, 0.0);
  auto loss = [&] {
    rmsnorm_forward(x.data(), w.data(), n, 1e-5f, out.data());
    return dot(out, r);
  };
  const double inv = rmsnorm_forward(x.data(), w.data(), n, 1e-5f, out.data());
  rmsnorm_backward(x.data(), w.data(), n, inv, r.data(), dx.data(), dw.data());
  dw[3] *= 1.0 + 1e-3;
  EXPECT_GT(fd_error(w, dw, loss, n, rng), 10 * kGradTolerance);
}

TEST(BlockOps, RopeBackwardIsTheTransposeInBothPairings) {
  std::mt19937 rng(3);
  ModelConfig c = test::tiny("llama");
  c.head_dim = 8;
  const std::vector<float> inv_freq = rope_inv_freq(c, nullptr);
  std::vector<float> cs(4), sn(4);
  rope_cos_sin(5, inv_freq.data(), 4, cs.data(), sn.data());
  for (RopeStyle style : {RopeStyle::HalfSplit, RopeStyle::Interleaved}) {
    std::vector<double> v = random_vec(8, rng), r = random_vec(8, rng);
    auto loss = [&] {
      std::vector<double> o = v;
      rope_forward(o.data(), 8, cs.data(), sn.data(), style);
      return dot(o, r);
    };
    std::vector<double> dv = r;
    rope_backward(dv.data(), 8, cs.data(), sn.data(), style);
    EXPECT_LT(fd_error(v, dv, loss, 8, rng), kGradTolerance);
    // Forward then backward is the identity (a rotation).
    std::vector<double> round = v;
    rope_forward(round.data(), 8, cs.data(), sn.data(), style);
    rope_backward(round.data(), 8, cs.data(), sn.data(), style);
    for (int i = 0; i < 8; ++i) EXPECT_NEAR(round[i], v[i], 1e-7);  // float angles
  }
}

TEST(BlockOps, RopeFloatIsTheRuntimeRotation) {
  std::mt19937 rng(4);
  ModelConfig c = test::tiny("llama");
  const std::vector<float> inv_freq = rope_inv_freq(c, nullptr);
  std::vector<float> cs(4), sn(4);
  rope_cos_sin(7, inv_freq.data(), 4, cs.data(), sn.data());
  for (RopeStyle style : {RopeStyle::HalfSplit, RopeStyle::Interleaved}) {
    std::vector<float> a(8), b;
    for (float& x : a) x = float(std::uniform_real_distribution<double>(-1, 1)(rng));
    b = a;
    rope_rotate(a.data(), 8, cs.data(), sn.data(), style);
    rope_forward(b.data(), 8, cs.data(), sn.data(), style);
    EXPECT_EQ(a, b);
  }
}

TEST(BlockOps, SwigluBackwardMatchesFiniteDifferences) {
  std::mt19937 rng(5);
  const int n = 20;
  std::vector<double> gate = random_vec(n, rng, 3.0), up = random_vec(n, rng),
                      r = random_vec(n, rng), act(n);
  auto loss = [&] {
    swiglu_forward(gate.data(), up.data(), n, act.data());
    return dot(act, r);
  };
  std::vector<double> dgate(n), dup(n);
  swiglu_backward(gate.data(), up.data(), r.data(), n, dgate.data(), dup.data());
  EXPECT_LT(fd_error(gate, dgate, loss, n, rng), kGradTolerance);
  EXPECT_LT(fd_error(up, dup, loss, n, rng), kGradTolerance);
}

// Straight from the definition: scores, softmax over the visible positions, weighted values.
std::vector<double> naive_attention(const AttentionDims& d, const std::vector<double>& q,
                                    const std::vector<double>& k, const std::vector<double>& v) {
  const int hd = d.head_dim, group = d.n_heads / d.n_kv_heads;
  std::vector<double> out(size_t(d.seq_len) * d.q_dim(), 0.0);
  for (int h = 0; h < d.n_heads; ++h)
    for (int p = 0; p < d.seq_len; ++p) {
      const int lo = d.window > 0 ? std::max(0, p - d.window + 1) : 0;
      std::vector<double> s(size_t(p + 1), 0.0);
      double mx = -1e300, sum = 0;
      for (int j = lo; j <= p; ++j) {
        for (int i = 0; i < hd; ++i)
          s[j] += q[size_t(p) * d.q_dim() + h * hd + i] *
                  k[size_t(j) * d.kv_dim() + h / group * hd + i];
        s[j] /= std::sqrt(double(hd));
        mx = std::max(mx, s[j]);
      }
      for (int j = lo; j <= p; ++j) sum += std::exp(s[j] - mx);
      for (int j = lo; j <= p; ++j)
        for (int i = 0; i < hd; ++i)
          out[size_t(p) * d.q_dim() + h * hd + i] +=
              std::exp(s[j] - mx) / sum * v[size_t(j) * d.kv_dim() + h / group * hd + i];
    }
  return out;
}

void check_attention(const AttentionDims& d, size_t samples, uint32_t seed) {
  std::mt19937 rng(seed);
  const size_t L = size_t(d.seq_len);
  std::vector<double> q = random_vec(L * d.q_dim(), rng), k = random_vec(L * d.kv_dim(), rng),
                      v = random_vec(L * d.kv_dim(), rng), r = random_vec(L * d.q_dim(), rng);
  std::vector<double> out(L * d.q_dim()), lse(L * d.n_heads);
  std::vector<double> scratch(size_t(attention_backward_scratch(d)));
  auto loss = [&] {
    attention_forward(d, q.data(), k.data(), v.data(), out.data(), lse.data(), scratch.data());
    return dot(out, r);
  };
  loss();
  const std::vector<double> ref = naive_attention(d, q, k, v);
  double fwd_err = 0;
  for (size_t i = 0; i < out.size(); ++i) fwd_err = std::max(fwd_err, std::abs(out[i] - ref[i]));
  EXPECT_LT(fwd_err, 1e-12) << "window " << d.window;

  std::vector<double> dq(q.size()), dk(k.size()), dv(v.size());
  attention_backward(d, q.data(), k.data(), v.data(), lse.data(), r.data(), dq.data(), dk.data(),
                     dv.data(), scratch.data());
  EXPECT_LT(fd_error(q, dq, loss, samples, rng), kGradTolerance) << "window " << d.window;
  EXPECT_LT(fd_error(k, dk, loss, samples, rng), kGradTolerance) << "window " << d.window;
  EXPECT_LT(fd_error(v, dv, loss, samples, rng), kGradTolerance) << "window " << d.window;
}

TEST(BlockOps, AttentionWithGqaMatchesDefinitionAndFiniteDifferences) {
  AttentionDims d;
  d.seq_len = 7;
  d.n_heads = 4;
  d.n_kv_heads = 2;
  d.head_dim = 4;
  check_attention(d, 1000, 6);  // every entry
  d.n_kv_heads = 1;
  check_attention(d, 1000, 7);
}

TEST(BlockOps, AttentionWithSlidingWindowMatchesDefinitionAndFiniteDifferences) {
  AttentionDims d;
  d.seq_len = 7;
  d.n_heads = 4;
  d.n_kv_heads = 2;
  d.head_dim = 4;
  d.window = 3;
  check_attention(d, 1000, 8);
}

TEST(BlockOps, AttentionOverSeveralRowBlocks) {
  // Longer than one block of query rows, with and without a window.
  AttentionDims d;
  d.seq_len = 150;
  d.n_heads = 2;
  d.n_kv_heads = 1;
  d.head_dim = 4;
  check_attention(d, 40, 9);
  d.window = 70;
  check_attention(d, 40, 10);
}

TEST(BlockOps, CrossEntropyGradientAndStability) {
  std::mt19937 rng(11);
  const int n = 3, vocab = 11;
  std::vector<double> logits = random_vec(n * vocab, rng, 3.0);
  const std::vector<int> targets = {4, 0, 10};
  std::vector<double> d(logits.size());
  const double sum = cross_entropy(logits.data(), n, vocab, targets.data(), d.data(), 1.0);
  auto loss = [&] { return cross_entropy(logits.data(), n, vocab, targets.data(), nullptr, 1.0); };
  EXPECT_NEAR(sum, loss(), 1e-15);
  // By definition, row by row.
  double want = 0;
  for (int r = 0; r < n; ++r) {
    double z = 0;
    for (int j = 0; j < vocab; ++j) z += std::exp(logits[r * vocab + j]);
    want += std::log(z) - logits[r * vocab + targets[r]];
  }
  EXPECT_NEAR(sum, want, 1e-12);
  EXPECT_LT(fd_error(logits, d, loss, 100, rng), kGradTolerance);

  // scale multiplies the gradient only.
  std::vector<double> half(logits.size());
  EXPECT_EQ(cross_entropy(logits.data(), n, vocab, targets.data(), half.data(), 0.5), sum);
  for (size_t i = 0; i < d.size(); ++i) EXPECT_NEAR(half[i], 0.5 * d[i], 1e-15);

  // Shifting a row changes nothing, even far beyond exp's range; in float too.
  std::vector<float> f(vocab), g(vocab), fs(vocab), gs(vocab);
  for (int j = 0; j < vocab; ++j) f[j] = float(logits[j]), fs[j] = f[j] + 1e4f;
  const double a = cross_entropy(f.data(), 1, vocab, targets.data(), g.data(), 1.0);
  const double b = cross_entropy(fs.data(), 1, vocab, targets.data(), gs.data(), 1.0);
  EXPECT_TRUE(std::isfinite(b));
  EXPECT_NEAR(a, b, 1e-3);
  for (int j = 0; j < vocab; ++j) EXPECT_NEAR(g[j], gs[j], 1e-3);

  const int bad = vocab;
  EXPECT_THROW(cross_entropy(f.data(), 1, vocab, &bad, nullptr, 1.0), Error);
}

// ---- the whole block ----------------------------------------------------------------------------

// A block's parameters in double, random, with the views block_forward takes.
struct DoubleBlock {
  explicit DoubleBlock(const ModelConfig& c, uint32_t seed) : cfg(c) {
    std::mt19937 rng(seed);
    attn_norm = random_vec(size_t(c.dim), rng, 0.2, 1.0);
    ffn_norm = random_vec(size_t(c.dim), rng, 0.2, 1.0);
    for (LinearSlot s : kAllLinearSlots) {
      const auto [out, in] = linear_shape(c, s);
      w[int(s)] = random_vec(size_t(out * in), rng, 1.0 / std::sqrt(double(in)));
    }
    const size_t q_dim = size_t(c.n_heads) * c.head_dim, kv_dim = size_t(c.n_kv_heads) * c.head_dim;
    if (c.attn_bias) {
      bq = random_vec(q_dim, rng, 0.5);
      bk = random_vec(kv_dim, rng, 0.5);
      bv = random_vec(kv_dim, rng, 0.5);
    }
    if (c.qk_norm) {
      q_norm = random_vec(size_t(c.head_dim), rng, 0.2, 1.0);
      k_norm = random_vec(size_t(c.head_dim), rng, 0.2, 1.0);
    }
  }
  BlockWeights<double> view() const {
    BlockWeights<double> v;
    v.attn_norm = attn_norm.data();
    v.ffn_norm = ffn_norm.data();
    for (int s = 0; s < kLinearSlots; ++s) v.w[s] = w[s].data();
    if (cfg.attn_bias) v.bq = bq.data(), v.bk = bk.data(), v.bv = bv.data();
    if (cfg.qk_norm) v.q_norm = q_norm.data(), v.k_norm = k_norm.data();
    return v;
  }
  ModelConfig cfg;
  std::vector<double> attn_norm, ffn_norm, w[kLinearSlots], bq, bk, bv, q_norm, k_norm;
};

ModelConfig block_config(const std::string& variant) {
  ModelConfig c = test::tiny(variant == "qwen3" ? "qwen3" : variant == "qwen2" ? "qwen2" : "llama");
  c.dim = 16;
  c.hidden_dim = 24;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 4;
  if (variant == "llama") c.rope_style = RopeStyle::Interleaved;
  if (variant == "qwen2") {
    c.attn_bias = true;
    c.sliding_window = 3;
  }
  if (variant == "qwen3") {
    c.qk_norm = true;
    c.head_dim = 6;  // q_dim 24 != dim, as Qwen3 allows
  }
  return c;
}

TEST(BlockGradient, WholeBlockMatchesFiniteDifferences) {
  ThreadPool pool(2);
  for (const std::string variant : {"llama", "qwen2", "qwen3"}) {
    SCOPED_TRACE(variant);
    const ModelConfig c = block_config(variant);
    const std::vector<float> inv_freq = rope_inv_freq(c, nullptr);
    DoubleBlock b(c, 21);
    const int n_seq = 3, seq_len = 6;
    const size_t rows = size_t(n_seq) * seq_len;
    std::mt19937 rng(22);
    std::vector<double> x = random_vec(rows * c.dim, rng), r = random_vec(rows * c.dim, rng);
    std::vector<double> y(x.size());
    auto loss = [&] {
      block_forward(c, inv_freq.data(), b.view(), x.data(), n_seq, seq_len, y.data(),
                    (BlockTape<double>*)nullptr, pool);
      return dot(y, r);
    };
    BlockTape<double> tape;
    block_forward(c, inv_freq.data(), b.view(), x.data(), n_seq, seq_len, y.data(), &tape, pool);
    EXPECT_EQ(dot(y, r), loss()) << "the tape changes the forward";
    BlockGradients<double> g;
    g.resize(c);
    std::vector<double> dx(x.size());
    block_backward(c, inv_freq.data(), b.view(), tape, r.data(), dx.data(), g, pool);

    const size_t samples = 12;
    EXPECT_LT(fd_error(x, dx, loss, samples, rng), kGradTolerance) << "dx";
    EXPECT_LT(fd_error(b.attn_norm, g.attn_norm, loss, samples, rng), kGradTolerance);
    EXPECT_LT(fd_error(b.ffn_norm, g.ffn_norm, loss, samples, rng), kGradTolerance);
    for (LinearSlot s : kAllLinearSlots)
      EXPECT_LT(fd_error(b.w[int(s)], g.w[int(s)], loss, samples, rng), kGradTolerance)
          << linear_slot_name(s);
    EXPECT_EQ(g.bq.empty(), !c.attn_bias);
    EXPECT_EQ(g.q_norm.empty(), !c.qk_norm);
    if (c.attn_bias) {
      EXPECT_LT(fd_error(b.bq, g.bq, loss, samples, rng), kGradTolerance) << "bq";
      EXPECT_LT(fd_error(b.bk, g.bk, loss, samples, rng), kGradTolerance) << "bk";
      EXPECT_LT(fd_error(b.bv, g.bv, loss, samples, rng), kGradTolerance) << "bv";
    }
    if (c.qk_norm) {
      EXPECT_LT(fd_error(b.q_norm, g.q_norm, loss, samples, rng), kGradTolerance) << "q_norm";
      EXPECT_LT(fd_error(b.k_norm, g.k_norm, loss, samples, rng), kGradTolerance) << "k_norm";
    }
  }
}

TEST(BlockGradient, BackwardAccumulatesAndDxMayBeDy) {
  ThreadPool pool(2);
  const ModelConfig c = block_config("qwen3");
  const std::vector<float> inv_freq = rope_inv_freq(c, nullptr);
  DoubleBlock b(c, 31);
  std::mt19937 rng(32);
  const int n_seq = 2, seq_len = 5;
  std::vector<double> x = random_vec(size_t(n_seq) * seq_len * c.dim, rng), y(x.size());
  const std::vector<double> r = random_vec(x.size(), rng);
  BlockTape<double> tape;
  block_forward(c, inv_freq.data(), b.view(), x.data(), n_seq, seq_len, y.data(), &tape, pool);
  BlockGradients<double> once, twice;
  once.resize(c);
  twice.resize(c);
  std::vector<double> dx(x.size()), dy = r;
  block_backward(c, inv_freq.data(), b.view(), tape, r.data(), dx.data(), once, pool);
  block_backward(c, inv_freq.data(), b.view(), tape, r.data(), (double*)nullptr, twice, pool);
  block_backward(c, inv_freq.data(), b.view(), tape, dy.data(), dy.data(), twice, pool);
  EXPECT_EQ(dy, dx);
  for (int s = 0; s < kLinearSlots; ++s)
    for (size_t i = 0; i < once.w[s].size(); ++i)
      ASSERT_NEAR(twice.w[s][i], 2 * once.w[s][i], 1e-12 * (1 + std::abs(once.w[s][i])));
  for (size_t i = 0; i < once.q_norm.size(); ++i)
    EXPECT_NEAR(twice.q_norm[i], 2 * once.q_norm[i], 1e-12 * (1 + std::abs(once.q_norm[i])));
  twice.zero();
  for (double v : twice.w[0]) ASSERT_EQ(v, 0.0);
  for (double v : twice.k_norm) ASSERT_EQ(v, 0.0);
}

// ---- float training forward == the runtime block ------------------------------------------------

TEST(BlockGradient, FloatForwardEqualsTheRuntimeBlock) {
  ThreadPool pool(2);
  struct Variant {
    const char* name;
    const char* arch;
    RopeStyle style;
    bool bias, qk_norm;
    int window;
  };
  const Variant variants[] = {{"llama", "llama", RopeStyle::HalfSplit, false, false, 0},
                              {"llama2c", "llama", RopeStyle::Interleaved, false, false, 0},
                              {"qwen2", "qwen2", RopeStyle::HalfSplit, true, false, 0},
                              {"qwen3", "qwen3", RopeStyle::HalfSplit, false, true, 0},
                              {"mistral", "mistral", RopeStyle::HalfSplit, false, false, 3}};
  for (const Variant& v : variants) {
    SCOPED_TRACE(v.name);
    ModelConfig c = test::tiny(v.arch);
    c.rope_style = v.style;
    c.attn_bias = v.bias;
    c.qk_norm = v.qk_norm;
    c.sliding_window = v.window;
    test::MemorySource src(c, 41);
    ModelOptions opt;
    opt.n_threads = 2;
    opt.max_ctx = 32;
    Model model(src, opt);
    const int layer = 1, n_seq = 3, seq_len = 7;
    auto w = [&](const std::string& what) { return src.w(block_tensor_name(layer, what)); };
    BlockWeights<float> bw;
    bw.attn_norm = w("attn_norm.weight");
    bw.ffn_norm = w("ffn_norm.weight");
    for (LinearSlot s : kAllLinearSlots) bw.w[int(s)] = src.w(linear_weight_name(layer, s));
    if (c.attn_bias) bw.bq = w("attn_q.bias"), bw.bk = w("attn_k.bias"), bw.bv = w("attn_v.bias");
    if (c.qk_norm) bw.q_norm = w("attn_q_norm.weight"), bw.k_norm = w("attn_k_norm.weight");

    std::mt19937 rng(42);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> x(size_t(n_seq) * seq_len * c.dim), y(x.size());
    for (float& e : x) e = nd(rng);
    const std::vector<float> inv_freq = rope_inv_freq(c, nullptr);
    block_forward(c, inv_freq.data(), bw, x.data(), n_seq, seq_len, y.data(),
                  (BlockTape<float>*)nullptr, pool);

    std::vector<float> want = x;
    for (int s = 0; s < n_seq; ++s)
      model.forward_block(layer, want.data() + size_t(s) * seq_len * c.dim, seq_len, 0);
    double max_diff = 0, max_abs = 0;
    for (size_t i = 0; i < y.size(); ++i) {
      max_diff = std::max(max_diff, double(std::abs(y[i] - want[i])));
      max_abs = std::max(max_abs, double(std::abs(want[i])));
    }
    EXPECT_GT(max_abs, 0.5);
    EXPECT_LT(max_diff, 2e-6 * max_abs);
  }
}

}  // namespace
}  // namespace elutq
