// The quantized model as E2E-QP (e2e_qp.h) sees it: every block projection as its codes (frozen)
// and its per-group parameters (trained), everything else fp32 and frozen; and the one thing it
// computes, the mean next-token cross-entropy of a batch of sequences with its gradient with
// respect to every parameter of every projection.
//
// Memory: resident are the codes and parameters of all projections (about one byte a weight),
// their gradients, the frozen fp32 vectors, the output head (vocab, dim) and the checkpoints of
// one batch (n_layers block inputs). Effective weights exist for one block at a time: a block's
// projections become QuantizedLinearParam (codes + parameters -> effective fp32 weights) only
// while the block runs, and are dropped before the next block is built. The logits are formed in
// chunks of rows, so (tokens, vocab) never exists whole.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "core/thread_pool.h"
#include "model/block_gradient.h"
#include "model/dense_linear.h"
#include "tensor/model_source.h"
#include "tensor/qformat.h"
#include "tensor/tensor_names.h"
#include "train/quantized_linear_param.h"

namespace elutq {

class E2eQpModel {
 public:
  // Reads src, an elutq quantized model file: every block projection must be stored quantized
  // (HLQ or uniform); throws Error naming the tensor otherwise. src and pool must outlive the
  // model (embedding rows are read from src as tokens need them).
  E2eQpModel(const ModelSource& src, ThreadPool& pool);
  ~E2eQpModel();

  const ModelConfig& config() const { return cfg_; }

  // The trainable projection of (layer, slot): codes and parameters, and the gradient of the
  // parameters (same length as its params), which loss_and_grad adds into.
  QuantizedMatrix& projection(int layer, LinearSlot s) { return blocks_[size_t(layer)].q[int(s)]; }
  std::vector<float>& grad(int layer, LinearSlot s) { return blocks_[size_t(layer)].grad[int(s)]; }
  void zero_grads();
  int64_t param_count() const;  // parameters of all projections

  // Mean cross-entropy (nats) of predicting tokens 1..T-1 of every sequence from tokens 0..T-2;
  // the sequences all have the same length T >= 2.
  double loss(std::span<const std::vector<int>* const> seqs);
  // The same, and adds its gradient with respect to every projection's parameters into grad().
  double loss_and_grad(std::span<const std::vector<int>* const> seqs);

 private:
  struct Block {
    std::vector<float> attn_norm, ffn_norm;       // (dim)
    std::vector<float> bq, bk, bv;                // (q_dim), (kv_dim), (kv_dim); attn_bias only
    std::vector<float> q_norm, k_norm;            // (head_dim); qk_norm only
    std::array<QuantizedMatrix, kLinearSlots> q;  // linear_shape(cfg, slot)
    std::array<std::vector<float>, kLinearSlots> grad;  // (q[s].params.size())
  };

  double run(std::span<const std::vector<int>* const> seqs, bool with_grad);
  // Builds layer's effective weights (live_) and returns the views block_forward takes.
  BlockWeights<float> load_block(int layer);
  // Mean cross-entropy of the final-normed logits of h (n, dim) against targets (n); with dh,
  // writes dL/dh (n, dim) of that mean.
  double head_loss(const float* h, const int* targets, int64_t n, float* dh);

  const ModelSource& src_;
  ThreadPool& pool_;
  ModelConfig cfg_;
  std::vector<float> inv_freq_;        // (head_dim / 2)
  std::vector<float> output_norm_;     // (dim)
  std::unique_ptr<DenseLinear> head_;  // (vocab, dim), fp32, frozen
  std::vector<Block> blocks_;

  // One block's effective weights at a time (block live_layer_), built from the parameters
  // when a block runs and dropped at the end of each loss; parameters must not change meanwhile.
  std::array<std::optional<QuantizedLinearParam>, kLinearSlots> live_;
  int live_layer_ = -1;
  // Working memory of a batch of n tokens, resized per batch.
  std::vector<float> x_, y_;        // (n, dim) residual stream
  std::vector<float> checkpoints_;  // (n_layers, n, dim) each block's input
  std::vector<float> hn_, logits_;  // (chunk, dim), (chunk, vocab) of the head
  BlockTape<float> tape_;
  BlockGradients<float> block_grads_;
};

}  // namespace elutq
