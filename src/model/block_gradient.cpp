// The decoder block's training forward and backward (block_gradient.h). Projections are BLAS
// matrix products with the output features (forward, weight gradients) or input features (input
// gradients) split across the pool, one single-threaded BLAS call per thread; element-wise work is
// split by tokens, attention by (sequence, head).
#include "model/block_gradient.h"

#include <algorithm>
#include <initializer_list>

#include "core/error.h"
#include "model/block_ops.h"
#include "model/gemm.h"
#include "model/rope.h"

namespace elutq {

namespace {

// Feature slices handed to threads are multiples of this many rows or columns.
constexpr int64_t kSliceAlign = 16;

// Runs fn(begin, end) on each thread's share of [0, n), cut at multiples of kSliceAlign.
template <class Fn>
void split_features(int64_t n, ThreadPool& pool, const Fn& fn) {
  pool.run((n + kSliceAlign - 1) / kSliceAlign, [&](int, int64_t b0, int64_t b1) {
    const int64_t f0 = b0 * kSliceAlign, f1 = std::min(n, b1 * kSliceAlign);
    if (f0 < f1) fn(f0, f1);
  });
}

// Y (n, out) = X (n, in) W^T + beta Y.
template <class T>
void project(const T* X, int64_t n, const T* W, int64_t out, int64_t in, T beta, T* Y,
             ThreadPool& pool) {
  split_features(out, pool, [&](int64_t r0, int64_t r1) {
    gemm<T>(false, true, int(n), int(r1 - r0), int(in), T(1), X, int(in), W + r0 * in, int(in),
            beta, Y + r0, int(out));
  });
}

// dW (out, in) += dY (n, out)^T X (n, in).
template <class T>
void weight_grad(const T* dY, int64_t n, int64_t out, const T* X, int64_t in, T* dW,
                 ThreadPool& pool) {
  split_features(out, pool, [&](int64_t r0, int64_t r1) {
    gemm<T>(true, false, int(r1 - r0), int(in), int(n), T(1), dY + r0, int(out), X, int(in), T(1),
            dW + r0 * in, int(in));
  });
}

// One term dY (n, out) W (out, in) of an input gradient.
template <class T>
struct InputGradTerm {
  const T* dY;
  const T* W;
  int64_t out;
};

// dX (n, in) = the sum of the terms.
template <class T>
void input_grad(std::initializer_list<InputGradTerm<T>> terms, int64_t n, int64_t in, T* dX,
                ThreadPool& pool) {
  split_features(in, pool, [&](int64_t c0, int64_t c1) {
    T beta = 0;
    for (const InputGradTerm<T>& t : terms) {
      gemm<T>(false, false, int(n), int(c1 - c0), int(t.out), T(1), t.dY, int(t.out), t.W + c0,
              int(in), beta, dX + c0, int(in));
      beta = 1;
    }
  });
}

// Runs fn(slot, i) for every token i in [0, n), tokens split across the pool.
template <class Fn>
void for_tokens(int64_t n, ThreadPool& pool, const Fn& fn) {
  pool.run(n, [&](int slot, int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) fn(slot, i);
  });
}

template <class T>
void resize_to(std::vector<T>& v, size_t n) {
  if (v.size() != n) v.resize(n);
}

struct Shape {
  explicit Shape(const ModelConfig& c)
      : dim(c.dim),
        hidden(c.hidden_dim),
        hd(c.head_dim),
        half(c.head_dim / 2),
        q_dim(c.n_heads * c.head_dim),
        kv_dim(c.n_kv_heads * c.head_dim) {}
  int64_t dim, hidden, hd, half, q_dim, kv_dim;
};

AttentionDims attention_dims(const ModelConfig& c, int seq_len) {
  AttentionDims d;
  d.seq_len = seq_len;
  d.n_heads = c.n_heads;
  d.n_kv_heads = c.n_kv_heads;
  d.head_dim = c.head_dim;
  d.window = c.sliding_window;
  return d;
}

template <class T>
void check_weights(const ModelConfig& c, const BlockWeights<T>& w) {
  require(w.attn_norm && w.ffn_norm, "block weights: the norms are missing");
  for (LinearSlot s : kAllLinearSlots)
    require(w.w[int(s)] != nullptr, "block weights: projection ", linear_slot_name(s),
            " is missing");
  require(!c.attn_bias || (w.bq && w.bk && w.bv), "block weights: the q/k/v biases are missing");
  require(!c.qk_norm || (w.q_norm && w.k_norm), "block weights: the q/k norms are missing");
}

}  // namespace

template <class T>
void BlockGradients<T>::resize(const ModelConfig& cfg) {
  for (LinearSlot s : kAllLinearSlots) {
    const auto [out, in] = linear_shape(cfg, s);
    w[int(s)].assign(size_t(out * in), T(0));
  }
  attn_norm.assign(size_t(cfg.dim), T(0));
  ffn_norm.assign(size_t(cfg.dim), T(0));
  const size_t q_dim = size_t(cfg.n_heads) * cfg.head_dim,
               kv_dim = size_t(cfg.n_kv_heads) * cfg.head_dim;
  bq.assign(cfg.attn_bias ? q_dim : 0, T(0));
  bk.assign(cfg.attn_bias ? kv_dim : 0, T(0));
  bv.assign(cfg.attn_bias ? kv_dim : 0, T(0));
  q_norm.assign(cfg.qk_norm ? size_t(cfg.head_dim) : 0, T(0));
  k_norm.assign(cfg.qk_norm ? size_t(cfg.head_dim) : 0, T(0));
}

template <class T>
void BlockGradients<T>::zero() {
  for (std::vector<T>& v : w) std::fill(v.begin(), v.end(), T(0));
  for (std::vector<T>* v : {&attn_norm, &ffn_norm, &bq, &bk, &bv, &q_norm, &k_norm})
    std::fill(v->begin(), v->end(), T(0));
}

template <class T>
void block_forward(const ModelConfig& cfg, const float* inv_freq, const BlockWeights<T>& w,
                   const T* x, int n_seq, int seq_len, T* y, BlockTape<T>* tape, ThreadPool& pool) {
  require(n_seq > 0 && seq_len > 0, "block_forward: no tokens");
  check_weights(cfg, w);
  blas_single_threaded();
  thread_local BlockTape<T> own;
  BlockTape<T>& t = tape ? *tape : own;
  const Shape s(cfg);
  const int64_t N = int64_t(n_seq) * seq_len;
  const float eps = cfg.norm_eps;
  const AttentionDims ad = attention_dims(cfg, seq_len);

  t.n_seq = n_seq;
  t.seq_len = seq_len;
  resize_to(t.x, size_t(N * s.dim));
  resize_to(t.inv_rms1, size_t(N));
  resize_to(t.xn1, size_t(N * s.dim));
  resize_to(t.q_lin, size_t(N * s.q_dim));
  resize_to(t.k_lin, size_t(N * s.kv_dim));
  resize_to(t.q, size_t(N * s.q_dim));
  resize_to(t.k, size_t(N * s.kv_dim));
  resize_to(t.v, size_t(N * s.kv_dim));
  resize_to(t.att, size_t(N * s.q_dim));
  resize_to(t.h, size_t(N * s.dim));
  resize_to(t.inv_rms2, size_t(N));
  resize_to(t.xn2, size_t(N * s.dim));
  resize_to(t.gate, size_t(N * s.hidden));
  resize_to(t.up, size_t(N * s.hidden));
  resize_to(t.act, size_t(N * s.hidden));
  resize_to(t.lse, size_t(N * cfg.n_heads));
  resize_to(t.rope_cos, size_t(seq_len * s.half));
  resize_to(t.rope_sin, size_t(seq_len * s.half));
  const int64_t head_scratch = attention_head_scratch(ad);
  if (t.work.size() < size_t(pool.size() * head_scratch))
    t.work.resize(size_t(pool.size() * head_scratch));

  std::copy(x, x + N * s.dim, t.x.begin());
  for (int p = 0; p < seq_len; ++p)
    rope_cos_sin(p, inv_freq, int(s.half), t.rope_cos.data() + p * s.half,
                 t.rope_sin.data() + p * s.half);

  // Attention half.
  for_tokens(N, pool, [&](int, int64_t i) {
    t.inv_rms1[i] =
        rmsnorm_forward(x + i * s.dim, w.attn_norm, int(s.dim), eps, t.xn1.data() + i * s.dim);
  });
  project(t.xn1.data(), N, w.w[int(LinearSlot::Q)], s.q_dim, s.dim, T(0), t.q_lin.data(), pool);
  project(t.xn1.data(), N, w.w[int(LinearSlot::K)], s.kv_dim, s.dim, T(0), t.k_lin.data(), pool);
  project(t.xn1.data(), N, w.w[int(LinearSlot::V)], s.kv_dim, s.dim, T(0), t.v.data(), pool);
  for_tokens(N, pool, [&](int, int64_t i) {
    T* ql = t.q_lin.data() + i * s.q_dim;
    T* kl = t.k_lin.data() + i * s.kv_dim;
    if (cfg.attn_bias) {
      T* v = t.v.data() + i * s.kv_dim;
      for (int64_t j = 0; j < s.q_dim; ++j) ql[j] += w.bq[j];
      for (int64_t j = 0; j < s.kv_dim; ++j) kl[j] += w.bk[j];
      for (int64_t j = 0; j < s.kv_dim; ++j) v[j] += w.bv[j];
    }
    const int64_t pos = i % seq_len;
    const float* cs = t.rope_cos.data() + pos * s.half;
    const float* sn = t.rope_sin.data() + pos * s.half;
    // Per head: (q/k norm, Qwen3) then RoPE.
    auto finish = [&](const T* lin, int64_t width, const T* norm, T* out) {
      std::copy(lin, lin + width, out);
      for (int64_t o = 0; o < width; o += s.hd) {
        if (cfg.qk_norm) rmsnorm_forward(out + o, norm, int(s.hd), eps, out + o);
        rope_forward(out + o, int(s.hd), cs, sn, cfg.rope_style);
      }
    };
    finish(ql, s.q_dim, w.q_norm, t.q.data() + i * s.q_dim);
    finish(kl, s.kv_dim, w.k_norm, t.k.data() + i * s.kv_dim);
  });
  pool.run(int64_t(n_seq) * cfg.n_heads, [&](int slot, int64_t b, int64_t e) {
    T* scratch = t.work.data() + slot * head_scratch;
    for (int64_t item = b; item < e; ++item) {
      const int64_t q0 = item / cfg.n_heads * seq_len;  // the sequence's first row
      attention_head_forward(ad, int(item % cfg.n_heads), t.q.data() + q0 * s.q_dim,
                             t.k.data() + q0 * s.kv_dim, t.v.data() + q0 * s.kv_dim,
                             t.att.data() + q0 * s.q_dim, t.lse.data() + q0 * cfg.n_heads, scratch);
    }
  });

  // Feed-forward half.
  std::copy(x, x + N * s.dim, t.h.begin());
  project(t.att.data(), N, w.w[int(LinearSlot::O)], s.dim, s.q_dim, T(1), t.h.data(), pool);
  for_tokens(N, pool, [&](int, int64_t i) {
    t.inv_rms2[i] = rmsnorm_forward(t.h.data() + i * s.dim, w.ffn_norm, int(s.dim), eps,
                                    t.xn2.data() + i * s.dim);
  });
  project(t.xn2.data(), N, w.w[int(LinearSlot::Gate)], s.hidden, s.dim, T(0), t.gate.data(), pool);
  project(t.xn2.data(), N, w.w[int(LinearSlot::Up)], s.hidden, s.dim, T(0), t.up.data(), pool);
  pool.run(N, [&](int, int64_t b, int64_t e) {
    swiglu_forward(t.gate.data() + b * s.hidden, t.up.data() + b * s.hidden, (e - b) * s.hidden,
                   t.act.data() + b * s.hidden);
  });
  std::copy(t.h.begin(), t.h.end(), y);
  project(t.act.data(), N, w.w[int(LinearSlot::Down)], s.dim, s.hidden, T(1), y, pool);
}

template <class T>
void block_backward(const ModelConfig& cfg, const float* inv_freq, const BlockWeights<T>& w,
                    const BlockTape<T>& t, const T* dy, T* dx, BlockGradients<T>& g,
                    ThreadPool& pool) {
  (void)inv_freq;  // the tape keeps the angles of its forward
  check_weights(cfg, w);
  const Shape s(cfg);
  const int seq_len = t.seq_len;
  const int64_t N = int64_t(t.n_seq) * seq_len;
  require(N > 0 && t.x.size() == size_t(N * s.dim) && t.act.size() == size_t(N * s.hidden),
          "block_backward: the tape holds no forward of this block");
  require(g.attn_norm.size() == size_t(s.dim) &&
              g.w[int(LinearSlot::Down)].size() == size_t(s.dim * s.hidden),
          "block_backward: gradients not sized (BlockGradients::resize)");
  blas_single_threaded();
  const float eps = cfg.norm_eps;
  const AttentionDims ad = attention_dims(cfg, seq_len);
  const int threads = pool.size();
  const T* const* W = w.w;
  auto dW = [&](LinearSlot slot) { return g.w[int(slot)].data(); };

  // Working memory: the hidden-width gradients first, the attention ones later in the same place.
  const int64_t head_scratch = attention_head_scratch(ad);
  const int64_t shared = std::max(2 * N * s.hidden, 4 * N * s.q_dim + 2 * N * s.kv_dim);
  const int64_t norm_parts = 2 * s.dim + 2 * s.hd;  // per thread: attn, ffn, q, k norm weights
  const size_t need = size_t(2 * N * s.dim + shared + threads * (head_scratch + norm_parts));
  if (t.work.size() < need) t.work.resize(need);
  T* d_h = t.work.data();           // (N, dim) dL/dh
  T* d_xn = d_h + N * s.dim;        // (N, dim) dL/d(a norm's output)
  T* d_gate = d_xn + N * s.dim;     // (N, hidden)
  T* d_up = d_gate + N * s.hidden;  // (N, hidden)
  T* d_att = d_gate;                // (N, q_dim), once d_gate and d_up are spent
  T* dq = d_att + N * s.q_dim;      // (N, q_dim)
  T* dk_h = dq + N * s.q_dim;       // (N, q_dim) per-query-head shares of dk
  T* dv_h = dk_h + N * s.q_dim;     // (N, q_dim)
  T* dk = dv_h + N * s.q_dim;       // (N, kv_dim)
  T* dv = dk + N * s.kv_dim;        // (N, kv_dim)
  T* attn_scratch = d_gate + shared;
  T* parts = attn_scratch + threads * head_scratch;
  std::fill(parts, parts + threads * norm_parts, T(0));
  auto part = [&](int slot, int which) {  // 0 attn_norm, 1 ffn_norm, 2 q_norm, 3 k_norm
    T* p = parts + slot * norm_parts;
    return which < 2 ? p + which * s.dim : p + 2 * s.dim + (which - 2) * s.hd;
  };

  // Down and SwiGLU.
  weight_grad(dy, N, s.dim, t.act.data(), s.hidden, dW(LinearSlot::Down), pool);
  input_grad<T>({{dy, W[int(LinearSlot::Down)], s.dim}}, N, s.hidden, d_gate, pool);
  pool.run(N, [&](int, int64_t b, int64_t e) {
    const int64_t o = b * s.hidden;
    swiglu_backward(t.gate.data() + o, t.up.data() + o, d_gate + o, (e - b) * s.hidden, d_gate + o,
                    d_up + o);
  });
  weight_grad(d_gate, N, s.hidden, t.xn2.data(), s.dim, dW(LinearSlot::Gate), pool);
  weight_grad(d_up, N, s.hidden, t.xn2.data(), s.dim, dW(LinearSlot::Up), pool);
  input_grad<T>(
      {{d_gate, W[int(LinearSlot::Gate)], s.hidden}, {d_up, W[int(LinearSlot::Up)], s.hidden}}, N,
      s.dim, d_xn, pool);
  // FFN norm, and the residual.
  for_tokens(N, pool, [&](int slot, int64_t i) {
    T* dh = d_h + i * s.dim;
    rmsnorm_backward(t.h.data() + i * s.dim, w.ffn_norm, int(s.dim), t.inv_rms2[i],
                     d_xn + i * s.dim, dh, part(slot, 1));
    for (int64_t j = 0; j < s.dim; ++j) dh[j] += dy[i * s.dim + j];
  });

  // Output projection and attention.
  weight_grad(d_h, N, s.dim, t.att.data(), s.q_dim, dW(LinearSlot::O), pool);
  input_grad<T>({{d_h, W[int(LinearSlot::O)], s.dim}}, N, s.q_dim, d_att, pool);
  pool.run(int64_t(t.n_seq) * cfg.n_heads, [&](int slot, int64_t b, int64_t e) {
    T* scratch = attn_scratch + slot * head_scratch;
    for (int64_t item = b; item < e; ++item) {
      const int64_t q0 = item / cfg.n_heads * seq_len;
      attention_head_backward(ad, int(item % cfg.n_heads), t.q.data() + q0 * s.q_dim,
                              t.k.data() + q0 * s.kv_dim, t.v.data() + q0 * s.kv_dim,
                              t.lse.data() + q0 * cfg.n_heads, d_att + q0 * s.q_dim,
                              dq + q0 * s.q_dim, dk_h + q0 * s.q_dim, dv_h + q0 * s.q_dim, scratch);
    }
  });
  pool.run(N, [&](int, int64_t b, int64_t e) {
    attention_fold_kv(ad, dk_h + b * s.q_dim, dv_h + b * s.q_dim, e - b, dk + b * s.kv_dim,
                      dv + b * s.kv_dim);
  });

  // RoPE and q/k norm, back to the projections' outputs (in place on dq, dk).
  for_tokens(N, pool, [&](int slot, int64_t i) {
    const int64_t pos = i % seq_len;
    const float* cs = t.rope_cos.data() + pos * s.half;
    const float* sn = t.rope_sin.data() + pos * s.half;
    auto back = [&](T* d, const T* lin, int64_t width, const T* norm, T* dnorm) {
      for (int64_t o = 0; o < width; o += s.hd) {
        rope_backward(d + o, int(s.hd), cs, sn, cfg.rope_style);
        if (cfg.qk_norm)
          rmsnorm_backward(lin + o, norm, int(s.hd), rms_inverse(lin + o, int(s.hd), eps), d + o,
                           d + o, dnorm);
      }
    };
    back(dq + i * s.q_dim, t.q_lin.data() + i * s.q_dim, s.q_dim, w.q_norm, part(slot, 2));
    back(dk + i * s.kv_dim, t.k_lin.data() + i * s.kv_dim, s.kv_dim, w.k_norm, part(slot, 3));
  });
  if (cfg.attn_bias) {
    auto column_sums = [&](const T* d, int64_t width, T* out) {
      split_features(width, pool, [&](int64_t c0, int64_t c1) {
        for (int64_t i = 0; i < N; ++i)
          for (int64_t c = c0; c < c1; ++c) out[c] += d[i * width + c];
      });
    };
    column_sums(dq, s.q_dim, g.bq.data());
    column_sums(dk, s.kv_dim, g.bk.data());
    column_sums(dv, s.kv_dim, g.bv.data());
  }
  weight_grad(dq, N, s.q_dim, t.xn1.data(), s.dim, dW(LinearSlot::Q), pool);
  weight_grad(dk, N, s.kv_dim, t.xn1.data(), s.dim, dW(LinearSlot::K), pool);
  weight_grad(dv, N, s.kv_dim, t.xn1.data(), s.dim, dW(LinearSlot::V), pool);
  input_grad<T>({{dq, W[int(LinearSlot::Q)], s.q_dim},
                 {dk, W[int(LinearSlot::K)], s.kv_dim},
                 {dv, W[int(LinearSlot::V)], s.kv_dim}},
                N, s.dim, d_xn, pool);

  // Attention norm, and the residual.
  for_tokens(N, pool, [&](int slot, int64_t i) {
    T* out = dx ? dx + i * s.dim : d_xn + i * s.dim;
    rmsnorm_backward(t.x.data() + i * s.dim, w.attn_norm, int(s.dim), t.inv_rms1[i],
                     d_xn + i * s.dim, out, part(slot, 0));
    if (dx)
      for (int64_t j = 0; j < s.dim; ++j) out[j] += d_h[i * s.dim + j];
  });

  for (int slot = 0; slot < threads; ++slot) {
    auto add = [&](std::vector<T>& dst, int which) {
      const T* p = part(slot, which);
      for (size_t j = 0; j < dst.size(); ++j) dst[j] += p[j];
    };
    add(g.attn_norm, 0);
    add(g.ffn_norm, 1);
    if (cfg.qk_norm) {
      add(g.q_norm, 2);
      add(g.k_norm, 3);
    }
  }
}

template struct BlockGradients<float>;
template struct BlockGradients<double>;
template void block_forward<float>(const ModelConfig&, const float*, const BlockWeights<float>&,
                                   const float*, int, int, float*, BlockTape<float>*, ThreadPool&);
template void block_forward<double>(const ModelConfig&, const float*, const BlockWeights<double>&,
                                    const double*, int, int, double*, BlockTape<double>*,
                                    ThreadPool&);
template void block_backward<float>(const ModelConfig&, const float*, const BlockWeights<float>&,
                                    const BlockTape<float>&, const float*, float*,
                                    BlockGradients<float>&, ThreadPool&);
template void block_backward<double>(const ModelConfig&, const float*, const BlockWeights<double>&,
                                     const BlockTape<double>&, const double*, double*,
                                     BlockGradients<double>&, ThreadPool&);

}  // namespace elutq
