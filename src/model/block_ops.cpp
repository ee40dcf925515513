// The block's element-wise pieces and its attention, forward and backward; see block_ops.h.
#include "model/block_ops.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "model/gemm.h"

namespace elutq {

// ---- RMSNorm ------------------------------------------------------------------------------------

template <class T>
T rms_inverse(const T* x, int n, float eps) {
  double ss = 0.0;
  for (int i = 0; i < n; ++i) ss += double(x[i]) * x[i];
  return T(1.0 / std::sqrt(ss / n + eps));
}

template <class T>
T rmsnorm_forward(const T* x, const T* w, int n, float eps, T* out) {
  const T r = rms_inverse(x, n, eps);
  for (int i = 0; i < n; ++i) out[i] = w[i] * (x[i] * r);
  return r;
}

// y_i = w_i x_i r with dr/dx_j = -r^3 x_j / n, so dx_j = r w_j dy_j - x_j r^3 (sum_i dy_i w_i x_i)
// / n.
template <class T>
void rmsnorm_backward(const T* x, const T* w, int n, T inv_rms, const T* dy, T* dx,
                      std::type_identity_t<T>* dw) {
  double s = 0.0;
  for (int i = 0; i < n; ++i) s += double(dy[i]) * w[i] * x[i];
  const double r = inv_rms;
  const T c = T(r * r * r * s / n);
  if (dw)  // before dx is written: dx may be dy
    for (int i = 0; i < n; ++i) dw[i] += dy[i] * x[i] * inv_rms;
  for (int i = 0; i < n; ++i) dx[i] = dy[i] * w[i] * inv_rms - x[i] * c;
}

// ---- RoPE ---------------------------------------------------------------------------------------

namespace {
// HalfSplit pairs i with i + half; Interleaved pairs 2i with 2i + 1.
inline int rope_first(int i, RopeStyle s) { return s == RopeStyle::HalfSplit ? i : 2 * i; }
inline int rope_second(int i, int half, RopeStyle s) {
  return s == RopeStyle::HalfSplit ? i + half : 2 * i + 1;
}
}  // namespace

template <class T>
void rope_forward(T* v, int head_dim, const float* cos_t, const float* sin_t, RopeStyle style) {
  const int half = head_dim / 2;
  for (int i = 0; i < half; ++i) {
    const int a = rope_first(i, style), b = rope_second(i, half, style);
    const T x0 = v[a], x1 = v[b];
    v[a] = x0 * cos_t[i] - x1 * sin_t[i];
    v[b] = x1 * cos_t[i] + x0 * sin_t[i];
  }
}

template <class T>
void rope_backward(T* dv, int head_dim, const float* cos_t, const float* sin_t, RopeStyle style) {
  const int half = head_dim / 2;
  for (int i = 0; i < half; ++i) {
    const int a = rope_first(i, style), b = rope_second(i, half, style);
    const T g0 = dv[a], g1 = dv[b];
    dv[a] = g0 * cos_t[i] + g1 * sin_t[i];
    dv[b] = g1 * cos_t[i] - g0 * sin_t[i];
  }
}

// ---- SwiGLU -------------------------------------------------------------------------------------

template <class T>
void swiglu_forward(const T* gate, const T* up, int64_t n, T* act) {
  for (int64_t j = 0; j < n; ++j) act[j] = gate[j] / (T(1) + std::exp(-gate[j])) * up[j];
}

// d silu(g) / dg = s (1 + g (1 - s)), s = sigmoid(g).
template <class T>
void swiglu_backward(const T* gate, const T* up, const T* dact, int64_t n, T* dgate, T* dup) {
  for (int64_t j = 0; j < n; ++j) {
    const T g = gate[j], s = T(1) / (T(1) + std::exp(-g)), da = dact[j];
    dup[j] = da * g * s;
    dgate[j] = da * up[j] * s * (T(1) + g * (T(1) - s));
  }
}

// ---- attention ----------------------------------------------------------------------------------

namespace {
constexpr int kRowBlock = 64;  // query rows whose scores are formed at once

int row_block(const AttentionDims& d) { return std::min(kRowBlock, d.seq_len); }
int first_visible(const AttentionDims& d, int p) {
  return d.window > 0 ? std::max(0, p - d.window + 1) : 0;
}
int kv_head(const AttentionDims& d, int h) { return h / (d.n_heads / d.n_kv_heads); }

// s (r1 - r0, r1 - c0) = the scaled scores of query rows [r0, r1) of head h against key rows
// [c0, r1) of its key head.
template <class T>
void head_scores(const AttentionDims& d, int h, const T* q, const T* k, int r0, int r1, int c0,
                 T* s) {
  const int hd = d.head_dim, qd = d.q_dim(), kvd = d.kv_dim();
  const T scale = T(1) / std::sqrt(T(hd));
  gemm<T>(false, true, r1 - r0, r1 - c0, hd, scale, q + int64_t(r0) * qd + h * hd, qd,
          k + int64_t(c0) * kvd + kv_head(d, h) * hd, kvd, T(0), s, r1 - c0);
}
}  // namespace

int64_t attention_head_scratch(const AttentionDims& d) {
  return 2 * int64_t(row_block(d)) * d.seq_len;
}

template <class T>
void attention_head_forward(const AttentionDims& d, int h, const T* q, const T* k, const T* v,
                            T* out, T* lse, T* scratch) {
  const int L = d.seq_len, hd = d.head_dim, qd = d.q_dim(), kvd = d.kv_dim(), rb = row_block(d);
  const T* vh = v + kv_head(d, h) * hd;
  for (int r0 = 0; r0 < L; r0 += rb) {
    const int r1 = std::min(L, r0 + rb), c0 = first_visible(d, r0), w = r1 - c0;
    T* p = scratch;  // (r1 - r0, w) scores, then probabilities
    head_scores(d, h, q, k, r0, r1, c0, p);
    for (int i = r0; i < r1; ++i) {
      T* row = p + int64_t(i - r0) * w;
      const int lo = first_visible(d, i) - c0, hi = i - c0;  // visible columns, inclusive
      T mx = -std::numeric_limits<T>::infinity();
      for (int j = lo; j <= hi; ++j) mx = std::max(mx, row[j]);
      T sum = 0;
      for (int j = lo; j <= hi; ++j) {
        row[j] = std::exp(row[j] - mx);
        sum += row[j];
      }
      const T inv = T(1) / sum;
      for (int j = lo; j <= hi; ++j) row[j] *= inv;
      std::fill(row, row + lo, T(0));
      std::fill(row + hi + 1, row + w, T(0));
      lse[int64_t(i) * d.n_heads + h] = mx + std::log(sum);
    }
    gemm<T>(false, false, r1 - r0, hd, w, T(1), p, w, vh + int64_t(c0) * kvd, kvd, T(0),
            out + int64_t(r0) * qd + h * hd, qd);
  }
}

// With P the probabilities and dP = dout V^T: dS = P * (dP - rowsum(P * dP)), dq = scale dS K,
// dk = scale dS^T q, dv = P^T dout.
template <class T>
void attention_head_backward(const AttentionDims& d, int h, const T* q, const T* k, const T* v,
                             const T* lse, const T* dout, T* dq, T* dk_h, T* dv_h, T* scratch) {
  const int L = d.seq_len, hd = d.head_dim, qd = d.q_dim(), kvd = d.kv_dim(), rb = row_block(d);
  const int kvh = kv_head(d, h);
  const T scale = T(1) / std::sqrt(T(hd));
  for (int i = 0; i < L; ++i) {
    std::fill_n(dk_h + int64_t(i) * qd + h * hd, hd, T(0));
    std::fill_n(dv_h + int64_t(i) * qd + h * hd, hd, T(0));
  }
  for (int r0 = 0; r0 < L; r0 += rb) {
    const int r1 = std::min(L, r0 + rb), c0 = first_visible(d, r0), w = r1 - c0, nb = r1 - r0;
    T* p = scratch;                     // (nb, w) probabilities
    T* ds = scratch + int64_t(rb) * L;  // (nb, w) dP, then dS
    head_scores(d, h, q, k, r0, r1, c0, p);
    for (int i = r0; i < r1; ++i) {
      T* row = p + int64_t(i - r0) * w;
      const int lo = first_visible(d, i) - c0, hi = i - c0;
      const T l = lse[int64_t(i) * d.n_heads + h];
      for (int j = lo; j <= hi; ++j) row[j] = std::exp(row[j] - l);
      std::fill(row, row + lo, T(0));
      std::fill(row + hi + 1, row + w, T(0));
    }
    const T* dout_b = dout + int64_t(r0) * qd + h * hd;
    gemm<T>(false, true, nb, w, hd, T(1), dout_b, qd, v + int64_t(c0) * kvd + kvh * hd, kvd, T(0),
            ds, w);
    for (int i = 0; i < nb; ++i) {
      const T* pr = p + int64_t(i) * w;
      T* dr = ds + int64_t(i) * w;
      double dot = 0.0;
      for (int j = 0; j < w; ++j) dot += double(pr[j]) * dr[j];
      const T D = T(dot);
      for (int j = 0; j < w; ++j) dr[j] = pr[j] * (dr[j] - D);
    }
    gemm<T>(false, false, nb, hd, w, scale, ds, w, k + int64_t(c0) * kvd + kvh * hd, kvd, T(0),
            dq + int64_t(r0) * qd + h * hd, qd);
    gemm<T>(true, false, w, hd, nb, scale, ds, w, q + int64_t(r0) * qd + h * hd, qd, T(1),
            dk_h + int64_t(c0) * qd + h * hd, qd);
    gemm<T>(true, false, w, hd, nb, T(1), p, w, dout_b, qd, T(1), dv_h + int64_t(c0) * qd + h * hd,
            qd);
  }
}

template <class T>
void attention_fold_kv(const AttentionDims& d, const T* dk_h, const T* dv_h, int64_t rows, T* dk,
                       T* dv) {
  const int hd = d.head_dim, qd = d.q_dim(), kvd = d.kv_dim(), group = d.n_heads / d.n_kv_heads;
  for (int64_t r = 0; r < rows; ++r)
    for (int kh = 0; kh < d.n_kv_heads; ++kh) {
      T* ok = dk + r * kvd + kh * hd;
      T* ov = dv + r * kvd + kh * hd;
      std::fill_n(ok, hd, T(0));
      std::fill_n(ov, hd, T(0));
      for (int g = 0; g < group; ++g) {
        const int64_t at = r * qd + int64_t(kh * group + g) * hd;
        for (int i = 0; i < hd; ++i) {
          ok[i] += dk_h[at + i];
          ov[i] += dv_h[at + i];
        }
      }
    }
}

template <class T>
void attention_forward(const AttentionDims& d, const T* q, const T* k, const T* v, T* out, T* lse,
                       T* scratch) {
  for (int h = 0; h < d.n_heads; ++h) attention_head_forward(d, h, q, k, v, out, lse, scratch);
}

int64_t attention_backward_scratch(const AttentionDims& d) {
  return attention_head_scratch(d) + 2 * int64_t(d.seq_len) * d.q_dim();
}

template <class T>
void attention_backward(const AttentionDims& d, const T* q, const T* k, const T* v, const T* lse,
                        const T* dout, T* dq, T* dk, T* dv, T* scratch) {
  T* dk_h = scratch + attention_head_scratch(d);
  T* dv_h = dk_h + int64_t(d.seq_len) * d.q_dim();
  for (int h = 0; h < d.n_heads; ++h)
    attention_head_backward(d, h, q, k, v, lse, dout, dq, dk_h, dv_h, scratch);
  attention_fold_kv(d, dk_h, dv_h, d.seq_len, dk, dv);
}

// ---- cross-entropy ------------------------------------------------------------------------------

template <class T>
double cross_entropy(const T* logits, int64_t n, int64_t vocab, const int* targets,
                     std::type_identity_t<T>* dlogits, double scale) {
  double total = 0.0;
  for (int64_t r = 0; r < n; ++r) {
    const T* row = logits + r * vocab;
    const int t = targets[r];
    require(t >= 0 && t < vocab, "cross_entropy: target ", t, " of row ", r, " is outside [0, ",
            vocab, ")");
    const double target_logit = row[t];
    double mx = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < vocab; ++j) mx = std::max(mx, double(row[j]));
    double sum = 0.0;
    if (dlogits) {
      T* d = dlogits + r * vocab;  // exp(row - mx) first, normalised below
      for (int64_t j = 0; j < vocab; ++j) {
        const double e = std::exp(double(row[j]) - mx);
        d[j] = T(e);
        sum += e;
      }
      const double f = scale / sum;
      for (int64_t j = 0; j < vocab; ++j) d[j] = T(double(d[j]) * f);
      d[t] = T(double(d[t]) - scale);
    } else {
      for (int64_t j = 0; j < vocab; ++j) sum += std::exp(double(row[j]) - mx);
    }
    total += mx + std::log(sum) - target_logit;
  }
  return total;
}

#define ELUTQ_BLOCK_OPS(T)                                                                         \
  template T rms_inverse<T>(const T*, int, float);                                                 \
  template T rmsnorm_forward<T>(const T*, const T*, int, float, T*);                               \
  template void rmsnorm_backward<T>(const T*, const T*, int, T, const T*, T*, T*);                 \
  template void rope_forward<T>(T*, int, const float*, const float*, RopeStyle);                   \
  template void rope_backward<T>(T*, int, const float*, const float*, RopeStyle);                  \
  template void swiglu_forward<T>(const T*, const T*, int64_t, T*);                                \
  template void swiglu_backward<T>(const T*, const T*, const T*, int64_t, T*, T*);                 \
  template void attention_head_forward<T>(const AttentionDims&, int, const T*, const T*, const T*, \
                                          T*, T*, T*);                                             \
  template void attention_head_backward<T>(const AttentionDims&, int, const T*, const T*,          \
                                           const T*, const T*, const T*, T*, T*, T*, T*);          \
  template void attention_fold_kv<T>(const AttentionDims&, const T*, const T*, int64_t, T*, T*);   \
  template void attention_forward<T>(const AttentionDims&, const T*, const T*, const T*, T*, T*,   \
                                     T*);                                                          \
  template void attention_backward<T>(const AttentionDims&, const T*, const T*, const T*,          \
                                      const T*, const T*, T*, T*, T*, T*);                         \
  template double cross_entropy<T>(const T*, int64_t, int64_t, const int*, T*, double);

ELUTQ_BLOCK_OPS(float)
ELUTQ_BLOCK_OPS(double)
#undef ELUTQ_BLOCK_OPS

}  // namespace elutq
