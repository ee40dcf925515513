// The decoder block's forward pass (see decoder_block.h); reads like the math.
#include "model/decoder_block.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/attention_kernels.h"
#include "kernels/vec_math.h"
#include "model/block_ops.h"
#include "model/rope.h"

namespace elutq {

void rmsnorm(const float* x, const float* w, int dim, float eps, float* out) {
  rmsnorm_forward(x, w, dim, eps, out);
}

void swiglu(const Linear& gate, const Linear& up, const float* xn, int64_t n, float* g, float* u,
            ThreadPool& pool) {
  const Linear* gate_up[] = {&gate, &up};
  float* out[] = {g, u};
  forward_same_input(gate_up, xn, n, out, pool);
  const int64_t m = n * gate.out_features();
  swiglu_forward(g, u, m, g);
}

BlockScratch::BlockScratch(const ModelConfig& c, int max_batch_, int max_ctx_, int n_threads)
    : max_batch(max_batch_), max_ctx(max_ctx_) {
  const size_t B = size_t(max_batch), dim = size_t(c.dim), hd = size_t(c.head_dim),
               q_dim = size_t(c.n_heads) * hd, kv_dim = size_t(c.n_kv_heads) * hd,
               hidden = size_t(c.hidden_dim);
  xn.resize(B * dim);
  q.resize(B * q_dim);
  k.resize(B * kv_dim);
  v.resize(B * kv_dim);
  att.resize(B * q_dim);
  proj.resize(B * dim);
  gate.resize(B * hidden);
  up.resize(B * hidden);
  cos_t.resize(B * (hd / 2));
  sin_t.resize(B * (hd / 2));
  scores.resize(size_t(n_threads) * kAttentionTile * size_t(max_ctx));
  tiles.resize(B + 1);
  tok_pos.resize(B);
  tok_row0.resize(B);
}

void DecoderBlock::forward(float* x, int n, BlockScratch& s, ThreadPool& pool,
                           const BlockObserver& observe) {
  attention_half(x, n, s, pool, observe);
  ffn_half(x, s.att.data(), n, s, pool, observe);
}

void DecoderBlock::attn_input(const float* x, int64_t n, float* xn) const {
  const int dim = cfg_->dim;
  for (int64_t i = 0; i < n; ++i)
    rmsnorm(x + i * dim, attn_norm.data(), dim, cfg_->norm_eps, xn + i * dim);
}

void DecoderBlock::attention_half(const float* x, int n, BlockScratch& s, ThreadPool& pool,
                                  const BlockObserver& observe) {
  const ModelConfig& c = *cfg_;
  const int hd = c.head_dim, half = hd / 2, q_dim = c.n_heads * hd, kv_dim = c.n_kv_heads * hd;
  attn_input(x, n, s.xn.data());
  if (observe) observe(BlockTap::AttnIn, s.xn.data(), n, c.dim);
  {
    const Linear* qkv[] = {lin[int(LinearSlot::Q)].get(), lin[int(LinearSlot::K)].get(),
                           lin[int(LinearSlot::V)].get()};
    float* out[] = {s.q.data(), s.k.data(), s.v.data()};
    forward_same_input(qkv, s.xn.data(), n, out, pool);
  }
  for (int i = 0; i < n; ++i) {
    float* q = s.q.data() + int64_t(i) * q_dim;
    float* k = s.k.data() + int64_t(i) * kv_dim;
    float* v = s.v.data() + int64_t(i) * kv_dim;
    if (c.attn_bias) {
      for (int j = 0; j < q_dim; ++j) q[j] += bq[j];
      for (int j = 0; j < kv_dim; ++j) k[j] += bk[j];
      for (int j = 0; j < kv_dim; ++j) v[j] += bv[j];
    }
    if (c.qk_norm) {  // Qwen3: RMSNorm over each head, before RoPE
      for (int h = 0; h < c.n_heads; ++h) rmsnorm(q + h * hd, q_norm.data(), hd, c.norm_eps, q + h * hd);
      for (int h = 0; h < c.n_kv_heads; ++h) rmsnorm(k + h * hd, k_norm.data(), hd, c.norm_eps, k + h * hd);
    }
    float* cs = s.cos_t.data() + int64_t(i) * half;
    float* sn = s.sin_t.data() + int64_t(i) * half;
    const int p = s.tok_pos[size_t(i)];
    const int64_t row = int64_t(s.tok_row0[size_t(i)]) + p;
    rope_cos_sin(p, inv_freq_->data(), half, cs, sn);
    for (int h = 0; h < c.n_heads; ++h) rope_rotate(q + h * hd, hd, cs, sn, c.rope_style);
    for (int h = 0; h < c.n_kv_heads; ++h) rope_rotate(k + h * hd, hd, cs, sn, c.rope_style);
    std::memcpy(k_cache.data() + row * kv_dim, k, sizeof(float) * kv_dim);
    std::memcpy(v_cache.data() + row * kv_dim, v, sizeof(float) * kv_dim);
  }
  attention(n, s, pool);
  if (observe) observe(BlockTap::OIn, s.att.data(), n, q_dim);
}

void DecoderBlock::ffn_half(float* x, const float* att, int n, BlockScratch& s, ThreadPool& pool,
                            const BlockObserver& observe, std::optional<BlockTap> stop_after) {
  const ModelConfig& c = *cfg_;
  const int dim = c.dim;
  lin[int(LinearSlot::O)]->forward(att, n, s.proj.data(), pool);
  for (int64_t j = 0; j < int64_t(n) * dim; ++j) x[j] += s.proj[size_t(j)];
  for (int i = 0; i < n; ++i)
    rmsnorm(x + int64_t(i) * dim, ffn_norm.data(), dim, c.norm_eps, s.xn.data() + int64_t(i) * dim);
  if (observe) observe(BlockTap::FfnIn, s.xn.data(), n, dim);
  if (stop_after == BlockTap::FfnIn) return;
  swiglu(linear(LinearSlot::Gate), linear(LinearSlot::Up), s.xn.data(), n, s.gate.data(),
         s.up.data(), pool);
  if (observe) observe(BlockTap::DownIn, s.gate.data(), n, c.hidden_dim);
  if (stop_after == BlockTap::DownIn) return;
  add_down(s.gate.data(), n, x, s, pool);
}

void DecoderBlock::add_down(const float* down_in, int n, float* x, BlockScratch& s,
                            ThreadPool& pool) const {
  lin[int(LinearSlot::Down)]->forward(down_in, n, s.proj.data(), pool);
  for (int64_t j = 0; j < int64_t(n) * cfg_->dim; ++j) x[j] += s.proj[size_t(j)];
}

// s.att (n, q_dim): for each token i and head h, softmax(q k^T / sqrt(hd)) v over the cached
// positions of its sequence it may see (causal, and within the sliding window if the model has
// one).
//
// Tokens go in tiles: runs of up to kAttentionTile consecutive tokens of one sequence (a prompt's
// tokens; each token of a decode step over several sequences is a tile of its own). A tile's
// queries take the key rows, and then the value rows, kAttentionKeyBlock at a time, each block for
// all of them while it is in L1: a 512-token prompt otherwise reads each head's cache once per
// query. Each query's arithmetic is that of one call over all its rows (blocks start at multiples
// of 4 rows from its first, as the kernels group rows; sums continue in row order), so its output
// does not depend on the tiling. Items (head, tile) go head-major, so a thread's share holds every
// tile of its heads and tokens at different positions split evenly (the pool hands out equal
// contiguous ranges).
void DecoderBlock::attention(int n, BlockScratch& s, ThreadPool& pool) {
  const ModelConfig& c = *cfg_;
  const int hd = c.head_dim, q_dim = c.n_heads * hd, kv_dim = c.n_kv_heads * hd;
  const int group = c.n_heads / c.n_kv_heads;
  const float scale = 1.0f / std::sqrt(float(hd));
  int n_tiles = 0;
  for (int i = 0; i < n; ++i)
    if (i == 0 || s.tok_row0[size_t(i)] != s.tok_row0[size_t(i - 1)] ||
        i - s.tiles[size_t(n_tiles - 1)] == kAttentionTile)
      s.tiles[size_t(n_tiles++)] = i;
  s.tiles[size_t(n_tiles)] = n;
  pool.run(int64_t(n_tiles) * c.n_heads, [&](int t, int64_t b, int64_t e) {
    float* sc = s.scores.data() + int64_t(t) * kAttentionTile * s.max_ctx;
    for (int64_t item = b; item < e; ++item) {
      const int tile = int(item % n_tiles), h = int(item / n_tiles), kvh = h / group;
      const int i0 = s.tiles[size_t(tile)], nq = s.tiles[size_t(tile) + 1] - i0;
      // The sequence's cache rows; a query's rows run from start[a] to its own position.
      const int64_t row0 = s.tok_row0[size_t(i0)];
      const float* kc = k_cache.data() + row0 * kv_dim + kvh * hd;
      const float* vc = v_cache.data() + row0 * kv_dim + kvh * hd;
      int start[kAttentionTile];
      int64_t count[kAttentionTile], most = 0;
      for (int a = 0; a < nq; ++a) {
        const int p = s.tok_pos[size_t(i0 + a)];
        start[a] = c.sliding_window > 0 ? std::max(0, p - c.sliding_window + 1) : 0;
        count[a] = p - start[a] + 1;
        most = std::max(most, count[a]);
      }
      auto query = [&](int a) { return s.q.data() + int64_t(i0 + a) * q_dim + h * hd; };
      auto out = [&](int a) { return s.att.data() + int64_t(i0 + a) * q_dim + h * hd; };
      for (int64_t j0 = 0; j0 < most; j0 += kAttentionKeyBlock)
        for (int a = 0; a < nq; ++a)
          if (j0 < count[a])
            attention_scores(query(a), kc + (start[a] + j0) * kv_dim, kv_dim,
                             std::min<int64_t>(kAttentionKeyBlock, count[a] - j0), hd, scale,
                             sc + a * int64_t(s.max_ctx) + j0);
      for (int a = 0; a < nq; ++a) {
        float* w = sc + a * int64_t(s.max_ctx);
        float mx = -INFINITY;
        for (int64_t j = 0; j < count[a]; ++j) mx = std::max(mx, w[j]);
        for (int64_t j = 0; j < count[a]; ++j) w[j] -= mx;
        exp_nonpositive_inplace(w, count[a]);
        float sum = 0.0f;
        for (int64_t j = 0; j < count[a]; ++j) sum += w[j];
        const float inv = 1.0f / sum;
        for (int64_t j = 0; j < count[a]; ++j) w[j] *= inv;
        std::fill(out(a), out(a) + hd, 0.0f);
      }
      for (int64_t j0 = 0; j0 < most; j0 += kAttentionKeyBlock)
        for (int a = 0; a < nq; ++a)
          if (j0 < count[a])
            attention_weighted_sum_add(sc + a * int64_t(s.max_ctx) + j0,
                                       vc + (start[a] + j0) * kv_dim, kv_dim,
                                       std::min<int64_t>(kAttentionKeyBlock, count[a] - j0), hd,
                                       out(a));
    }
  });
}

}  // namespace elutq
