// The quantized model as E2E-QP (e2e_qp.h) sees it: every block projection as its codes (frozen)
// and its per-group parameters (trained), everything else fp32 and frozen; and the one thing it
// computes, the mean next-token cross-entropy of a batch of sequences with its gradient with
// respect to every parameter of every projection.
//
// Memory: resident are the codes of all projections, packed (PackedCodes: 2 bits a weight at
// w2, 4 at w3 and w4), their parameters and gradients, the frozen fp32 vectors and the
// checkpoints of one batch (n_layers block inputs). Effective weights exist for one block at a
// time: a block's projections become QuantizedLinearParam (codes + parameters -> effective fp32
// weights) only while the block runs, and are dropped before the next block is built. The output
// head stays in its stored type in the mapped file and is dequantized a tile of vocabulary rows at
// a time on each thread, twice a chunk (logits, then their gradient); the logits are formed in
// chunks of rows, so neither (vocab, dim) nor (tokens, vocab) ever exists whole in fp32.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "core/thread_pool.h"
#include "model/block_gradient.h"
#include "model/block_vectors.h"
#include "tensor/model_source.h"
#include "tensor/packed_codes.h"
#include "tensor/qformat.h"
#include "tensor/tensor_names.h"
#include "train/quantized_linear_param.h"

namespace elutq {

class E2eQpModel {
 public:
  // Reads src, an elutq quantized model file: every block projection must be stored quantized
  // (HLQ, HLQC or uniform); throws Error naming the tensor otherwise. src and pool must outlive the
  // model (embedding rows are read from src as tokens need them).
  E2eQpModel(const ModelSource& src, ThreadPool& pool);
  ~E2eQpModel();

  const ModelConfig& config() const { return cfg_; }

  // The trainable parameters of the projection (layer, slot) (QuantizedMatrix::params order) and
  // their gradient (same length), which loss_and_grad adds into.
  std::vector<float>& params(int layer, LinearSlot s) { return proj(layer, s).params; }
  std::vector<float>& grad(int layer, LinearSlot s) { return proj(layer, s).grad; }
  // The projection as it stands: its frozen codes with the current parameters.
  QuantizedMatrix projection(int layer, LinearSlot s) const;
  void zero_grads();
  int64_t param_count() const;  // parameters of all projections

  // Bytes this model holds while it trains on batches of `tokens` tokens, with `threads` pool
  // threads: everything above, the optimizer's state (AdamW's two moments, the fp16 best copy;
  // e2e_qp.h) and the mapped head and embedding pages it touches, with the projections of src
  // stored as spec_of(layer, slot) says: what --mem-budget is checked against before anything is
  // loaded (a quantize job does so with the formats it is about to write, before its first stage).
  static uint64_t estimate_bytes(const ModelSource& src,
                                 const std::function<QuantSpec(int, LinearSlot)>& spec_of,
                                 int64_t tokens, int threads);
  // The same with the formats src stores (throws Error, as the constructor does, on a projection
  // E2E-QP cannot train).
  static uint64_t estimate_bytes(const ModelSource& src, int64_t tokens, int threads);

  // Mean cross-entropy (nats) of predicting tokens 1..T-1 of every sequence from tokens 0..T-2;
  // the sequences all have the same length T >= 2.
  double loss(std::span<const std::vector<int>* const> seqs);
  // The same, and adds its gradient with respect to every projection's parameters into grad().
  double loss_and_grad(std::span<const std::vector<int>* const> seqs);

 private:
  struct Projection {
    QuantSpec spec;
    int64_t rows = 0, cols = 0;      // linear_shape(cfg, slot)
    PackedCodes codes;               // (rows * cols), frozen
    std::vector<float> params, grad;  // trainable_params' layout (HLQC: s_0 and m per group)
    std::vector<uint8_t> ratio_codes;  // HLQC only, frozen (QuantizedMatrix's fields)
    std::vector<float> ratio_codebook;
  };
  struct Block {
    BlockVectors vectors;  // norms, biases, q/k norms (frozen)
    std::array<Projection, kLinearSlots> proj;
  };
  Projection& proj(int layer, LinearSlot s) { return blocks_[size_t(layer)].proj[int(s)]; }

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
  const TensorInfo* head_ = nullptr;   // (vocab, dim) in its stored type, frozen
  std::vector<Block> blocks_;

  // One block's effective weights at a time (block live_layer_), built from the parameters
  // when a block runs and dropped at the end of each loss; parameters must not change meanwhile.
  std::array<std::optional<QuantizedLinearParam>, kLinearSlots> live_;
  int live_layer_ = -1;
  // Working memory of a batch of n tokens, resized per batch.
  std::vector<float> x_, y_;        // (n, dim) residual stream
  std::vector<float> checkpoints_;  // (n_layers, n, dim) each block's input
  std::vector<float> hn_, logits_;  // (chunk, dim), (chunk, vocab) of the head
  std::vector<float> head_tiles_;   // (threads, tile rows, dim) dequantized head rows
  std::vector<float> dhn_parts_;    // (threads, chunk, dim) partial sums of dL/d(normed h)
  BlockTape<float> tape_;
  BlockGradients<float> block_grads_;
};

}  // namespace elutq
