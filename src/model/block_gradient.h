// The decoder block in training form: a forward pass over whole calibration sequences (each one
// starting at position 0, causal) that keeps what its backward pass needs, and that backward pass.
// Same math as DecoderBlock::forward (decoder_block.h), in batched form: the projections and the
// attention run as matrix products (BLAS), and every element-wise piece (RMSNorm, RoPE, q/k norm,
// SwiGLU) calls the one definition of its forward in block_ops.h, beside its backward.
//
// T is float for training and double for finite-difference checks of the gradients.
//
// The projections enter as their *effective* weights (what the forward multiplies by: a dense
// matrix, or a quantized one dequantized); backward returns dL/d(effective weight), and the caller
// maps it onto what it trains (train/quantized_linear_param.h: latent weights through the
// straight-through estimator, HLQ scales and zeros exactly).
#pragma once

#include <cstdint>
#include <vector>

#include "core/thread_pool.h"
#include "tensor/model_config.h"
#include "tensor/tensor_names.h"

namespace elutq {

// Views of one block's parameters, row-major, owned by the caller.
template <class T>
struct BlockWeights {
  const T* attn_norm = nullptr;             // (dim)
  const T* ffn_norm = nullptr;              // (dim)
  const T* w[kLinearSlots] = {};            // per LinearSlot: (out, in), linear_shape(cfg, slot)
  const T* bq = nullptr;                    // (q_dim)  attn_bias models only
  const T* bk = nullptr;                    // (kv_dim)
  const T* bv = nullptr;                    // (kv_dim)
  const T* q_norm = nullptr;                // (head_dim) qk_norm models only
  const T* k_norm = nullptr;                // (head_dim)
};

// Gradients of a loss with respect to a block's parameters; block_backward adds into them.
template <class T>
struct BlockGradients {
  std::vector<T> w[kLinearSlots];           // dL/dW per slot, (out, in)
  std::vector<T> attn_norm, ffn_norm;       // (dim)
  std::vector<T> bq, bk, bv;                // empty unless cfg.attn_bias
  std::vector<T> q_norm, k_norm;            // empty unless cfg.qk_norm
  // Sizes every array for cfg and fills it with zeros.
  void resize(const ModelConfig& cfg);
  void zero();
};

// What one training forward keeps for the backward: n_seq sequences of seq_len tokens, every
// array (n_seq * seq_len, width) row-major. Reused across calls (resized, not reallocated).
template <class T>
struct BlockTape {
  int n_seq = 0, seq_len = 0;
  std::vector<T> x;             // block input (dim)
  std::vector<T> inv_rms1;      // 1 / rms of x per token (1)
  std::vector<T> xn1;           // attention norm output (dim)
  std::vector<T> q_lin, k_lin;  // q, k after projection (+ bias), before q/k norm and RoPE
  std::vector<T> q, k, v;       // q, k after (q/k norm and) RoPE; v (+ bias): (q_dim), (kv_dim)
  std::vector<T> att;           // attention output, o's input (q_dim)
  std::vector<T> h;             // x + att Wo^T (dim)
  std::vector<T> inv_rms2;      // (1)
  std::vector<T> xn2;           // ffn norm output (dim)
  std::vector<T> gate, up;      // gate and up projections (hidden)
  std::vector<T> act;           // silu(gate) * up, down's input (hidden)
  std::vector<T> lse;           // log-sum-exp of every attention row, (n_seq * seq_len, n_heads)
  std::vector<float> rope_cos, rope_sin;  // (seq_len, head_dim / 2) angles of positions 0..
  // Working memory of both passes (attention scratch, the backward's activation gradients), kept
  // between calls so that neither allocates once sizes are steady.
  mutable std::vector<T> work;
};

// y (n_seq * seq_len, dim) = the block applied to x (same shape), sequences independent, token t
// of each at position t. inv_freq (head_dim / 2) as rope_inv_freq gives it. With a tape, keeps
// what block_backward needs (y may then alias nothing in the tape; x and y may not overlap);
// without one (null) it works in a tape of its own kept per calling thread.
template <class T>
void block_forward(const ModelConfig& cfg, const float* inv_freq, const BlockWeights<T>& w,
                   const T* x, int n_seq, int seq_len, T* y, BlockTape<T>* tape,
                   ThreadPool& pool);

// Given dy = dL/dy (n_seq * seq_len, dim) for the forward recorded in tape (with the same
// weights): dx = dL/dx (same shape; may be null when not needed) and the parameter gradients
// added into g (sized by g.resize(cfg)). dy and dx may be the same array.
template <class T>
void block_backward(const ModelConfig& cfg, const float* inv_freq, const BlockWeights<T>& w,
                    const BlockTape<T>& tape, const T* dy, T* dx, BlockGradients<T>& g,
                    ThreadPool& pool);

}  // namespace elutq
