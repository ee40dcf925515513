// fp32 forward pass: batched prefill == token-by-token decode for every architecture variant on
// random tiny models built in memory, and equality with a naive plain-loop reference written
// separately from src/model (no shared code beyond reading the same weights).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>

#include "core/error.h"
#include "kernels/gemv.h"
#include "kernels/gemv_kernels.h"
#include "model/dense_linear.h"
#include "model/model.h"
#include "tensor/model_source.h"
#include "test_forward_model.h"

namespace elutq {
namespace {

using test::MemorySource;
using test::tiny;

std::map<std::string, ModelConfig> variants() {
  std::map<std::string, ModelConfig> v;
  v["llama_gqa_untied"] = tiny("llama");
  ModelConfig c = tiny("llama");
  c.rope_scaling = {"llama3", 8.0f, 1.0f, 4.0f, 16};
  c.rope_theta = 500000.0f;
  c.tied_embeddings = true;
  v["llama3_scaling_tied"] = c;
  c = tiny("llama");
  c.rope_style = RopeStyle::Interleaved;
  c.n_kv_heads = 4;  // plain multi-head attention
  c.rope_scaling.type = "linear";
  c.rope_scaling.factor = 2.0f;
  v["llama_interleaved_mha_linear"] = c;
  c = tiny("llama");
  c.rope_style = RopeStyle::Interleaved;
  c.rope_scaling.type = "llama3-freqs";
  v["llama31_gguf_rope_freqs"] = c;
  c = tiny("qwen2");
  c.attn_bias = true;
  c.tied_embeddings = true;
  v["qwen2_bias"] = c;
  c = tiny("qwen3");
  c.qk_norm = true;
  c.head_dim = 16;  // differs from dim / n_heads, as in Qwen3
  c.n_kv_heads = 1;
  v["qwen3_qknorm"] = c;
  c = tiny("mistral");
  c.sliding_window = 5;
  v["mistral_sliding_window"] = c;
  return v;
}

ModelOptions opts(int threads, int max_ctx) {
  ModelOptions o;
  o.n_threads = threads;
  o.max_ctx = max_ctx;
  return o;
}

std::vector<int> random_ids(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int> ids(n);
  for (int& t : ids) t = int(rng() % uint32_t(vocab));
  return ids;
}

// Logits (n, vocab) of one batched prefill, in chunks of max_batch.
std::vector<float> prefill_all(Model& m, const std::vector<int>& ids) {
  const int n = int(ids.size()), V = m.config().vocab_size;
  std::vector<float> hidden(size_t(n) * m.config().dim), out(size_t(n) * V);
  m.forward(ids.data(), n, 0, hidden.data());
  m.logits(hidden.data(), n, out.data());
  return out;
}

std::vector<float> decode_all(Model& m, const std::vector<int>& ids) {
  const int V = m.config().vocab_size;
  std::vector<float> out;
  for (size_t i = 0; i < ids.size(); ++i) {
    const float* l = m.decode_logits(ids[i], int(i));
    out.insert(out.end(), l, l + V);
  }
  return out;
}

// max |a - b| / max |b|
double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, double(std::fabs(a[i] - b[i])));
    den = std::max(den, double(std::fabs(b[i])));
  }
  return num / den;
}

TEST(Forward, PrefillEqualsTokenByTokenDecodeForEveryVariant) {
  for (const auto& [name, cfg] : variants()) {
    SCOPED_TRACE(name);
    MemorySource src(cfg, 7);
    ModelOptions opt;
    opt.n_threads = 2;
    opt.max_ctx = 32;
    opt.max_batch = 5;  // forces the 13-token prefill into chunks
    Model m(src, opt);
    const auto ids = random_ids(13, cfg.vocab_size, 3);
    const auto pre = prefill_all(m, ids);
    const auto dec = decode_all(m, ids);
    EXPECT_LT(rel_err(pre, dec), 2e-6);
  }
}

// Sequences decoded side by side (decode_sequences) give each sequence's logits as decoding it
// alone does: its own KV rows, positions and causal extent (sliding window included). Sequence 2
// restarts after three steps of other tokens, so per-sequence positions differ within a step.
TEST(Forward, SequencesDecodedSideBySideEqualEachDecodedAlone) {
  for (const auto& [name, cfg] : variants()) {
    SCOPED_TRACE(name);
    MemorySource src(cfg, 7);
    const int steps = 12, slot = 12, V = cfg.vocab_size;
    const std::vector<std::vector<int>> seqs = {random_ids(steps, V, 11), random_ids(steps, V, 12),
                                                random_ids(steps - 3, V, 13)};
    const std::vector<int> junk = random_ids(3, V, 14);
    Model side(src, opts(2, 3 * slot));
    std::vector<std::vector<float>> got(3);
    std::vector<float> logits(size_t(3) * V);
    for (int t = 0; t < steps; ++t) {
      const int tokens[3] = {seqs[0][t], seqs[1][t], t < 3 ? junk[t] : seqs[2][t - 3]};
      const int pos[3] = {t, t, t < 3 ? t : t - 3};
      side.decode_sequences(tokens, pos, 3, slot, logits.data());
      for (int i = 0; i < 3; ++i)
        if (i < 2 || t >= 3)
          got[i].insert(got[i].end(), logits.begin() + i * V, logits.begin() + (i + 1) * V);
    }
    for (int i = 0; i < 3; ++i) {
      Model alone(src, opts(2, slot));
      EXPECT_LT(rel_err(got[i], decode_all(alone, seqs[i])), 2e-6) << "sequence " << i;
    }
  }
}

// Continuous batching (forward_batch): one sequence's prompt goes in chunks beside another's
// decoding steps, in slots at arbitrary cache rows; every logit row equals the sequence run alone.
TEST(Forward, MixedBatchesOfPromptChunksAndDecodeStepsEqualEachSequenceAlone) {
  for (const auto& [name, cfg] : variants()) {
    SCOPED_TRACE(name);
    MemorySource src(cfg, 7);
    const int slot = 16, V = cfg.vocab_size;
    const std::vector<int> a = random_ids(12, V, 21), b = random_ids(10, V, 22);
    Model both(src, opts(2, 3 * slot));
    // a lives in slot 2, b in slot 0. Step 1: a's first 5 tokens (prompt chunk). Step 2: a's
    // tokens 5..7 and b's first 4. Then one token each per step.
    std::vector<float> got_a, got_b;
    int pa = 0, pb = 0;
    const auto step = [&](int na, int nb) {
      std::vector<int> tok, pos, row0, out;
      for (int i = 0; i < na; ++i, ++pa) tok.push_back(a[size_t(pa)]), pos.push_back(pa), row0.push_back(2 * slot);
      if (na > 0) out.push_back(int(tok.size()) - 1);
      for (int i = 0; i < nb; ++i, ++pb) tok.push_back(b[size_t(pb)]), pos.push_back(pb), row0.push_back(0);
      if (nb > 0) out.push_back(int(tok.size()) - 1);
      std::vector<float> logits(out.size() * size_t(V));
      both.forward_batch(tok.data(), pos.data(), row0.data(), int(tok.size()), out.data(),
                         int(out.size()), logits.data());
      if (na > 0) got_a.insert(got_a.end(), logits.begin(), logits.begin() + V);
      if (nb > 0) got_b.insert(got_b.end(), logits.end() - V, logits.end());
    };
    step(5, 0);
    step(3, 4);
    while (pa < 12 || pb < 10) step(pa < 12 ? 1 : 0, pb < 10 ? 1 : 0);
    // Alone: the logits after the same prefixes.
    const auto alone = [&](const std::vector<int>& ids, std::vector<int> ends) {
      Model m(src, opts(2, slot));
      std::vector<float> out;
      for (int e : ends) {
        const float* l = m.prefill_logits(ids.data(), e, 0);
        out.insert(out.end(), l, l + V);
      }
      return out;
    };
    EXPECT_LT(rel_err(got_a, alone(a, {5, 8, 9, 10, 11, 12})), 2e-6);
    EXPECT_LT(rel_err(got_b, alone(b, {4, 5, 6, 7, 8, 9, 10})), 2e-6);
  }
}

// A lazy model streams its unloaded blocks through decode_sequences (weights in for one step, the
// KV cache kept) and gives the eager model's logits exactly, leaving those blocks unloaded.
TEST(Forward, LazyModelStreamsBlocksThroughSideBySideDecoding) {
  for (const auto& [name, cfg] : variants()) {
    SCOPED_TRACE(name);
    MemorySource src(cfg, 7);
    ModelOptions lazy_opt = opts(2, 20);
    lazy_opt.lazy_blocks = true;
    Model eager(src, opts(2, 20)), lazy(src, lazy_opt);
    lazy.load_block(0);  // a block kept loaded runs as loaded; the others stream
    const int V = cfg.vocab_size;
    const auto a = random_ids(10, V, 21), b = random_ids(10, V, 22);
    std::vector<float> le(size_t(2) * V), ll(size_t(2) * V);
    for (int t = 0; t < 10; ++t) {
      const int tokens[2] = {a[t], b[t]}, pos[2] = {t, t};
      eager.decode_sequences(tokens, pos, 2, 10, le.data());
      lazy.decode_sequences(tokens, pos, 2, 10, ll.data());
      ASSERT_EQ(ll, le) << "step " << t;
    }
    EXPECT_TRUE(lazy.block_loaded(0));
    for (int l = 1; l < cfg.n_layers; ++l) EXPECT_FALSE(lazy.block_loaded(l));
  }
}

TEST(Forward, SequencesThatDoNotFitTheCacheGiveErrors) {
  MemorySource src(tiny("llama"));
  Model m(src, opts(1, 8));
  std::vector<float> logits(size_t(3) * 40);
  const int tokens[3] = {1, 2, 3}, pos[3] = {0, 0, 0}, late[3] = {0, 4, 0};
  EXPECT_THROW(m.decode_sequences(tokens, pos, 3, 4, logits.data()), Error);  // 3 x 4 > 8
  EXPECT_THROW(m.decode_sequences(tokens, late, 2, 4, logits.data()), Error);  // 4 >= slot of 4
  EXPECT_THROW(m.decode_sequences(tokens, pos, 0, 4, logits.data()), Error);
  EXPECT_NO_THROW(m.decode_sequences(tokens, pos, 2, 4, logits.data()));
}

// ---- naive reference: plain loops over the whole sequence, no KV cache ---------------------------

void naive_rmsnorm(const float* x, const float* w, int n, float eps, float* out) {
  float ss = 0;
  for (int i = 0; i < n; ++i) ss += x[i] * x[i];
  const float r = 1.0f / std::sqrt(ss / n + eps);
  for (int i = 0; i < n; ++i) out[i] = x[i] * r * w[i];
}

// y (out) = W (out, in) x (in)
void naive_matvec(const float* W, const float* x, int out, int in, float* y) {
  for (int o = 0; o < out; ++o) {
    double s = 0;
    for (int i = 0; i < in; ++i) s += double(W[o * in + i]) * x[i];
    y[o] = float(s);
  }
}

// The frequency of pair i, following the transformers formulas for default/linear/llama3.
double naive_freq(const ModelConfig& c, int i, const float* rope_freqs) {
  double f = std::pow(double(c.rope_theta), -double(2 * i) / c.head_dim);
  const RopeScaling& s = c.rope_scaling;
  if (s.type == "linear") return f / s.factor;
  if (s.type == "llama3-freqs") return f / rope_freqs[i];
  if (s.type != "llama3") return f;
  const double wl = 2 * M_PI / f;
  const double lo = s.original_max_position / s.low_freq_factor;
  const double hi = s.original_max_position / s.high_freq_factor;
  if (wl < hi) return f;
  if (wl > lo) return f / s.factor;
  const double t = (s.original_max_position / wl - s.low_freq_factor) /
                   (s.high_freq_factor - s.low_freq_factor);
  return (1 - t) * f / s.factor + t * f;
}

void naive_rope(const ModelConfig& c, float* v, int pos, const float* rope_freqs) {
  const int hd = c.head_dim;
  std::vector<float> r(v, v + hd);
  for (int i = 0; i < hd / 2; ++i) {
    const double a = pos * naive_freq(c, i, rope_freqs);
    const int j0 = c.rope_style == RopeStyle::HalfSplit ? i : 2 * i;
    const int j1 = c.rope_style == RopeStyle::HalfSplit ? i + hd / 2 : 2 * i + 1;
    r[j0] = float(v[j0] * std::cos(a) - v[j1] * std::sin(a));
    r[j1] = float(v[j1] * std::cos(a) + v[j0] * std::sin(a));
  }
  std::copy(r.begin(), r.end(), v);
}

std::vector<float> naive_logits(const MemorySource& src, const std::vector<int>& ids) {
  const ModelConfig& c = src.config();
  const int T = int(ids.size()), D = c.dim, hd = c.head_dim, H = c.n_heads, KV = c.n_kv_heads;
  const int Q = H * hd, K = KV * hd, F = c.hidden_dim, V = c.vocab_size;
  const float* rf = c.rope_scaling.type == "llama3-freqs" ? src.w("rope_freqs.weight") : nullptr;
  std::vector<std::vector<float>> x(T, std::vector<float>(D));
  for (int t = 0; t < T; ++t)
    for (int d = 0; d < D; ++d) x[t][d] = src.w("token_embd.weight")[ids[t] * D + d];
  for (int l = 0; l < c.n_layers; ++l) {
    auto w = [&](const char* n) { return src.w("blk." + std::to_string(l) + "." + n); };
    std::vector<std::vector<float>> q(T, std::vector<float>(Q)), k(T, std::vector<float>(K)),
        v(T, std::vector<float>(K));
    std::vector<float> xn(D);
    for (int t = 0; t < T; ++t) {
      naive_rmsnorm(x[t].data(), w("attn_norm.weight"), D, c.norm_eps, xn.data());
      naive_matvec(w("attn_q.weight"), xn.data(), Q, D, q[t].data());
      naive_matvec(w("attn_k.weight"), xn.data(), K, D, k[t].data());
      naive_matvec(w("attn_v.weight"), xn.data(), K, D, v[t].data());
      if (c.attn_bias) {
        for (int i = 0; i < Q; ++i) q[t][i] += w("attn_q.bias")[i];
        for (int i = 0; i < K; ++i) k[t][i] += w("attn_k.bias")[i];
        for (int i = 0; i < K; ++i) v[t][i] += w("attn_v.bias")[i];
      }
      for (int h = 0; h < H; ++h) {
        if (c.qk_norm) naive_rmsnorm(&q[t][h * hd], w("attn_q_norm.weight"), hd, c.norm_eps, &q[t][h * hd]);
        naive_rope(c, &q[t][h * hd], t, rf);
      }
      for (int h = 0; h < KV; ++h) {
        if (c.qk_norm) naive_rmsnorm(&k[t][h * hd], w("attn_k_norm.weight"), hd, c.norm_eps, &k[t][h * hd]);
        naive_rope(c, &k[t][h * hd], t, rf);
      }
    }
    for (int t = 0; t < T; ++t) {
      std::vector<float> att(Q, 0.0f), o(D);
      for (int h = 0; h < H; ++h) {
        const int g = h / (H / KV);
        std::vector<double> p(T, 0.0);
        double mx = -1e300, sum = 0;
        for (int j = 0; j <= t; ++j) {
          if (c.sliding_window > 0 && t - j >= c.sliding_window) continue;
          double s = 0;
          for (int d = 0; d < hd; ++d) s += double(q[t][h * hd + d]) * k[j][g * hd + d];
          p[j] = s / std::sqrt(double(hd));
          mx = std::max(mx, p[j]);
        }
        for (int j = 0; j <= t; ++j) {
          if (c.sliding_window > 0 && t - j >= c.sliding_window) { p[j] = 0; continue; }
          p[j] = std::exp(p[j] - mx);
          sum += p[j];
        }
        for (int j = 0; j <= t; ++j)
          for (int d = 0; d < hd; ++d) att[h * hd + d] += float(p[j] / sum * v[j][g * hd + d]);
      }
      naive_matvec(w("attn_output.weight"), att.data(), D, Q, o.data());
      for (int d = 0; d < D; ++d) x[t][d] += o[d];
      std::vector<float> g(F), u(F), dn(D);
      naive_rmsnorm(x[t].data(), w("ffn_norm.weight"), D, c.norm_eps, xn.data());
      naive_matvec(w("ffn_gate.weight"), xn.data(), F, D, g.data());
      naive_matvec(w("ffn_up.weight"), xn.data(), F, D, u.data());
      for (int i = 0; i < F; ++i) g[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
      naive_matvec(w("ffn_down.weight"), g.data(), D, F, dn.data());
      for (int d = 0; d < D; ++d) x[t][d] += dn[d];
    }
  }
  const float* out = src.w(c.tied_embeddings ? "token_embd.weight" : "output.weight");
  std::vector<float> logits(size_t(T) * V), xn(D);
  for (int t = 0; t < T; ++t) {
    naive_rmsnorm(x[t].data(), src.w("output_norm.weight"), D, c.norm_eps, xn.data());
    naive_matvec(out, xn.data(), V, D, logits.data() + t * V);
  }
  return logits;
}

TEST(Forward, MatchesNaiveReferenceForEveryVariant) {
  for (const auto& [name, cfg] : variants()) {
    SCOPED_TRACE(name);
    MemorySource src(cfg, 11);
    ModelOptions opt;
    opt.n_threads = 2;
    opt.max_ctx = 32;
    Model m(src, opt);
    const auto ids = random_ids(12, cfg.vocab_size, 5);
    EXPECT_LT(rel_err(prefill_all(m, ids), naive_logits(src, ids)), 1e-5);
  }
}

TEST(Forward, ReferenceDetectsAWrongRopePairing) {
  // The comparison above could pass vacuously if RoPE did nothing; swapping the pairing of one
  // side must make the models disagree.
  ModelConfig c = tiny("llama");
  MemorySource src(c, 11);
  ModelConfig c2 = c;
  c2.rope_style = RopeStyle::Interleaved;
  MemorySource src2(c2, 11);  // same weights, other pairing
  Model m(src2, opts(1, 32));
  const auto ids = random_ids(12, c.vocab_size, 5);
  EXPECT_GT(rel_err(prefill_all(m, ids), naive_logits(src, ids)), 1e-3);
}

TEST(DenseLinear, GemvAndSgemmPathsMatchPlainLoops) {
  // Odd sizes exercise the SIMD tails and the 16-row sgemm slices.
  const int out = 37, in = 75;
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> u(-1, 1);
  auto w = std::make_shared<std::vector<float>>(out * in);
  for (float& x : *w) x = u(rng);
  std::vector<float> x(12 * in);
  for (float& v : x) v = u(rng);
  DenseLinear lin(w, out, in);
  ThreadPool pool(2);
  for (int n : {1, 5, 8, 9, 12}) {  // one token, the few-token GEMV (odd, even), sgemm
    std::vector<float> y(n * out);
    lin.forward(x.data(), n, y.data(), pool);
    for (int r = 0; r < n; ++r)
      for (int o = 0; o < out; ++o) {
        double s = 0;
        for (int i = 0; i < in; ++i) s += double((*w)[o * in + i]) * x[r * in + i];
        EXPECT_NEAR(y[r * out + o], s, 1e-5 * (1 + std::fabs(s))) << "n=" << n;
      }
  }
  // Up to 8 tokens, each token's output is the one-token GEMV's bit for bit (so sequences decoded
  // side by side do not depend on each other).
  for (int n = 2; n <= 8; ++n) {
    std::vector<float> y(n * out), y1(out);
    lin.forward(x.data(), n, y.data(), pool);
    for (int t = 0; t < n; ++t) {
      lin.forward(x.data() + t * in, 1, y1.data(), pool);
      for (int o = 0; o < out; ++o) ASSERT_EQ(y[t * out + o], y1[o]) << "n=" << n << " t=" << t;
    }
  }
  // The SIMD dot product (if this CPU has one) equals the scalar reference.
  for (int n : {0, 1, 7, 8, 31, 32, 33, 75}) {
    const float ref = kern::dot_f32_scalar(x.data(), w->data(), n);
    EXPECT_NEAR(dot_f32(x.data(), w->data(), n), ref, 1e-5f * (1 + std::fabs(ref))) << n;
  }
}

TEST(Forward, BadTokenAndPositionGiveErrors) {
  MemorySource src(tiny("llama"));
  Model m(src, opts(1, 8));
  EXPECT_THROW(m.decode_logits(40, 0), Error);   // vocab is 40
  EXPECT_THROW(m.decode_logits(-1, 0), Error);
  EXPECT_THROW(m.decode_logits(1, 8), Error);    // past max_ctx
  std::vector<int> ids(9, 1);
  EXPECT_THROW(m.forward(ids.data(), 9, 0, nullptr), Error);
}

TEST(Forward, MissingTensorNamesIt) {
  ModelConfig c = tiny("qwen2");  // the tensors are built without biases,
  c.attn_bias = true;              // but the config claims them
  struct Lying : MemorySource {
    ModelConfig c2;
    Lying(const ModelConfig& a, const ModelConfig& b) : MemorySource(a), c2(b) {}
    const ModelConfig& config() const override { return c2; }
  } lying(tiny("qwen2"), c);
  try {
    Model m(lying, opts(1, 8));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("blk.0.attn_q.bias"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace elutq
