// The element-wise pieces of a decoder block and its attention, each forward beside its backward,
// for float (the runtime and training) and double (finite-difference checks). The runtime's
// rmsnorm, rope_rotate and swiglu are the float instances of these definitions, so the block's
// training form (block_gradient.h) computes what the runtime computes.
//
// Backward functions take dL/d(output) and give dL/d(input); parameter gradients are added into
// their arrays (accumulated), input gradients are written.
#pragma once

#include <cstdint>
#include <type_traits>

#include "tensor/model_config.h"

namespace elutq {

// ---- RMSNorm over one row of n: out = w * (x * r), r = 1 / sqrt(mean(x^2) + eps) ---------------

// r for x (n), the sum of squares in double (as transformers' LlamaRMSNorm).
template <class T>
T rms_inverse(const T* x, int n, float eps);

// out (n) = the normed x; returns r. out may equal x.
template <class T>
T rmsnorm_forward(const T* x, const T* w, int n, float eps, T* out);

// dx (n) from dy (n) for the forward of x with r = rms_inverse(x); dw (n) += dy * x * r when not
// null. dx may equal dy.
template <class T>
void rmsnorm_backward(const T* x, const T* w, int n, T inv_rms, const T* dy, T* dx,
                      std::type_identity_t<T>* dw);

// ---- RoPE on one head vector (head_dim), angles from rope_cos_sin (rope.h, kept in float) ------

// Rotates v in place by the angles (pairs per style: RopeStyle).
template <class T>
void rope_forward(T* v, int head_dim, const float* cos_t, const float* sin_t, RopeStyle style);

// The transpose: rotates dv in place by the negative angles (dL/d(input) from dL/d(output)).
template <class T>
void rope_backward(T* dv, int head_dim, const float* cos_t, const float* sin_t, RopeStyle style);

// ---- SwiGLU: act = silu(gate) * up, silu(g) = g / (1 + exp(-g)) ---------------------------------

// act (n) from gate, up (n); act may equal gate or up.
template <class T>
void swiglu_forward(const T* gate, const T* up, int64_t n, T* act);

// dgate, dup (n) from dact (n); dgate may equal dact.
template <class T>
void swiglu_backward(const T* gate, const T* up, const T* dact, int64_t n, T* dgate, T* dup);

// ---- causal grouped-query attention over one sequence -------------------------------------------
// q (seq_len, q_dim), k and v (seq_len, kv_dim), out (seq_len, q_dim), heads side by side in each
// row; query head h reads key/value head h / (n_heads / n_kv_heads). Token p attends to positions
// max(0, p - window + 1)..p (window > 0) or 0..p, with softmax(q k^T / sqrt(head_dim)). Rows are
// taken a block at a time through BLAS (scores of a block only, never seq_len x seq_len), and the
// backward recomputes the probabilities from the saved log-sum-exp of every row.

struct AttentionDims {
  int seq_len = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0;
  int window = 0;  // > 0: sliding window of that many positions
  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
};

// Elements of scratch one head's forward or backward needs (each concurrent call its own).
int64_t attention_head_scratch(const AttentionDims& d);

// Head h: out's columns of head h and lse (seq_len, n_heads) column h (log-sum-exp of the scaled
// scores of each row).
template <class T>
void attention_head_forward(const AttentionDims& d, int h, const T* q, const T* k, const T* v,
                            T* out, T* lse, T* scratch);

// Head h's backward from dout (seq_len, q_dim): writes dq's columns of head h, and head h's share
// of the gradients of its key and value head into columns of head h of dk_h and dv_h
// (seq_len, q_dim) each; attention_fold_kv sums the shares of a group.
template <class T>
void attention_head_backward(const AttentionDims& d, int h, const T* q, const T* k, const T* v,
                             const T* lse, const T* dout, T* dq, T* dk_h, T* dv_h, T* scratch);

// dk, dv (rows, kv_dim) = the per-query-head shares dk_h, dv_h (rows, q_dim) summed over each
// group of query heads.
template <class T>
void attention_fold_kv(const AttentionDims& d, const T* dk_h, const T* dv_h, int64_t rows, T* dk,
                       T* dv);

// The whole sequence, head after head (the block threads the heads itself). scratch holds
// attention_head_scratch(d) elements; the backward's attention_backward_scratch(d).
template <class T>
void attention_forward(const AttentionDims& d, const T* q, const T* k, const T* v, T* out, T* lse,
                       T* scratch);
int64_t attention_backward_scratch(const AttentionDims& d);
template <class T>
void attention_backward(const AttentionDims& d, const T* q, const T* k, const T* v, const T* lse,
                        const T* dout, T* dq, T* dk, T* dv, T* scratch);

// ---- cross-entropy of logit rows against target ids ---------------------------------------------

// Returns the SUM over the n rows of -log softmax(logits[r])[targets[r]] (nats, computed stably in
// double); logits (n, vocab), 0 <= targets[r] < vocab. When dlogits (n, vocab) is not null it is
// written with scale * d(sum)/d(logits) = scale * (softmax(row) - onehot(target)): pass
// scale = 1 / total rows for the gradient of a mean over rows that are scored a few at a time.
// dlogits may equal logits. Single-threaded: threads take disjoint row ranges.
template <class T>
double cross_entropy(const T* logits, int64_t n, int64_t vocab, const int* targets,
                     std::type_identity_t<T>* dlogits, double scale);

}  // namespace elutq
