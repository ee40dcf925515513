// The fp32 LLaMA-family decoder: weights loaded once from a ModelSource, every buffer (KV cache,
// activations, attention scratch) sized at load time from the config and the options, nothing
// allocated in the forward pass.
//
// Typical use:
//   auto src = open_model(path);
//   Model m(*src, {.n_threads = 2});
//   const float* logits = m.prefill_logits(ids.data(), n, 0);   // (vocab) of the last token
//   logits = m.decode_logits(next, n);                          // one token at position n
//
// Positions: every call names the position of its first token; the KV cache keeps positions
// [0, pos) of earlier calls, so a caller rewinds or starts a new sequence just by passing a
// smaller pos. Positions must stay below max_ctx().
//
// Block by block (calibration, quantization): embed() -> forward_block(l, ...) for each layer ->
// final_norm() -> logits(); replace a projection with set_linear().
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "model/decoder_block.h"
#include "model/linear.h"
#include "tensor/model_config.h"
#include "tensor/tensor_names.h"

namespace elutq {

class ModelSource;

struct ModelOptions {
  int n_threads = 0;   // <= 0: one per hardware core
  int max_ctx = 0;     // KV cache length in tokens; 0: the config's max_seq_len, capped at 4096
  int max_batch = 256; // tokens per batched pass; longer prefills are split into chunks of this
  // Empty: make_dense_linear (fp32). Otherwise the source must outlive the model (the layers it
  // makes may view the source's mapping) and the embedding's rows are read from it on demand.
  LinearFactory linear_factory;
  // Streaming (quantizing models larger than memory): no block's projections or KV cache are
  // loaded at construction; load_block(l) / release_block(l) bring one block in and out, the
  // embedding rows are read from the source on demand and the output head is built on the first
  // logits() call. The source must then outlive the model. Norms (dim floats) are always loaded.
  bool lazy_blocks = false;
};

class Model {
 public:
  Model(const ModelSource& source, const ModelOptions& options = {});
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const { return cfg_; }
  int max_ctx() const { return max_ctx_; }
  int max_batch() const { return max_batch_; }
  ThreadPool& pool() { return *pool_; }

  // Runs tokens[0..n) at positions pos..pos+n-1 through every block (batched, in chunks of
  // max_batch) and writes the final-normed hidden states to hidden (n, dim) if not null.
  void forward(const int* tokens, int n, int pos, float* hidden);

  // Logits (n, vocab) for n rows of final-normed hidden states (n, dim). Callers scoring long
  // sequences call it in chunks of rows so (n, vocab) stays small.
  void logits(const float* hidden, int n, float* out);

  // Convenience for generation: forward() then logits of the last token. The returned (vocab)
  // buffer is owned by the model and valid until the next call.
  const float* prefill_logits(const int* tokens, int n, int pos);
  const float* decode_logits(int token, int pos) { return prefill_logits(&token, 1, pos); }

  // One decoding step of n independent sequences at once (batched sampling: each weight is read
  // once for all of them): token i continues sequence i at position pos[i]. Sequence i keeps its
  // KV cache in rows [i * slot_len, (i + 1) * slot_len) of the cache, so n * slot_len <=
  // max_ctx(), n <= max_batch() and 0 <= pos[i] < slot_len; a sequence restarts by passing a
  // smaller position, like the single-sequence calls. Writes logits (n, vocab) to logits.
  // In a lazy model, blocks not loaded are streamed: each step loads a block's weights, runs it
  // and releases them again, keeping only its KV cache (memory: one block's weights at a time).
  void decode_sequences(const int* tokens, const int* pos, int n, int slot_len, float* logits);

  // One pass over tokens of several sequences at once (continuous batching: decoding steps of
  // some and a chunk of another's prompt share each weight read). Token i sits at position
  // pos[i] of the sequence whose KV cache rows start at row0[i] (row0[i] + pos[i] < max_ctx());
  // a sequence's tokens come in position order, and each sees its own earlier positions only.
  // n <= max_batch(). Logits of the n_out rows listed in out_rows go to logits (n_out, vocab).
  void forward_batch(const int* tokens, const int* pos, const int* row0, int n,
                     const int* out_rows, int n_out, float* logits);

  // --- block-level access --------------------------------------------------------------------
  // x (n, dim) = embedding rows of tokens.
  void embed(const int* tokens, int n, float* x) const;
  // One decoder block in place on x (n, dim) at positions pos..pos+n-1, n <= max_batch; reads
  // and extends layer's KV cache. observe sees the inputs of its sub-layers (decoder_block.h).
  void forward_block(int layer, float* x, int n, int pos, const BlockObserver& observe = {});
  // The block's two halves, for passes that record one sub-layer's inputs without running the
  // rest: attention_half returns att (n, q_dim), valid until the next call, and leaves x as it
  // is; ffn_half then finishes the block in place on x (DecoderBlock::ffn_half).
  const float* attention_half(int layer, const float* x, int n, int pos,
                              const BlockObserver& observe = {});
  void ffn_half(int layer, float* x, const float* att, int n, const BlockObserver& observe = {},
                std::optional<BlockTap> stop_after = std::nullopt);
  // x (n, dim) += down_in (n, hidden) Wdown^T: the end of ffn_half, for a pass that kept down's
  // inputs from ffn_half(..., BlockTap::DownIn) (DecoderBlock::add_down).
  void add_down(int layer, const float* down_in, int n, float* x);
  // The loaded block itself (weights, KV cache).
  DecoderBlock& block(int layer) { return loaded_layer(layer); }
  // RMSNorm with the output norm, in place on x (n, dim).
  void final_norm(float* x, int n) const;

  // Lazy models (ModelOptions::lazy_blocks): builds block l's projections with the factory and
  // allocates its KV cache (no-op if loaded); release_block frees them and lets the OS drop the
  // block's tensor bytes from the mapped source file (ModelSource::release_pages). Eager models
  // have every block loaded; release_block works on them too.
  void load_block(int layer);
  void release_block(int layer);
  bool block_loaded(int layer) const;

  Linear& linear(int layer, LinearSlot slot);
  void set_linear(int layer, LinearSlot slot, std::unique_ptr<Linear> lin);
  // The output head; in a lazy model it exists after the first logits() call.
  const Linear& output() const;
  void set_output(std::unique_ptr<Linear> lin);
  // Norm weights, (dim) each; for folding (AWQ) or inspection.
  std::vector<float>& attn_norm(int layer);
  std::vector<float>& ffn_norm(int layer);

 private:
  // Places tokens 0..n) of one sequence at positions pos.. (BlockScratch::tok_pos, tok_row0).
  void place_sequence(int n, int pos);
  void load_weights(int layer);     // a lazy model's block projections, from the source
  void release_weights(int layer);  // and away again (the KV cache stays)
  void clear_kv_cache(DecoderBlock& L) const;  // (max_ctx) zeroed rows of k and v
  void logits_of(const float* hidden, int n, float* out);
  DecoderBlock& loaded_layer(int layer);
  void ensure_output();

  ModelConfig cfg_;
  int max_ctx_ = 0;
  int max_batch_ = 0;
  std::unique_ptr<ThreadPool> pool_;
  const ModelSource* src_ = nullptr;  // lazy models and models with a linear factory
  LinearFactory factory_;             // lazy models only
  std::shared_ptr<std::vector<float>> token_embd_;  // (vocab, dim); only without src_
  std::vector<float> output_norm_;                  // (dim)
  std::unique_ptr<Linear> output_;                  // (vocab, dim)
  std::vector<float> inv_freq_;                     // (head_dim / 2)
  std::vector<std::unique_ptr<DecoderBlock>> layers_;
  std::unique_ptr<BlockScratch> s_;
  std::vector<float> x_;       // (max_batch, dim) residual stream of forward()
  std::vector<float> last_;    // (dim) final hidden state of the last token
  std::vector<float> logits_;  // (vocab) logits of the last token
};

}  // namespace elutq
