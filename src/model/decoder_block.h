// One LLaMA-family decoder block: its weights, its KV cache and its forward pass — the only
// forward pass of a block in elutq. The runtime (Model) runs it whole; the quantizer runs its two
// halves separately and records the inputs of its sub-layers through an observer; training adds
// the backward pass beside it.
//
//   attention half:     xn = rmsnorm(x, attn_norm)                       -> tap AttnIn (q/k/v input)
//                       q, k, v = xn W^T (+ bias), per-head q/k norm, RoPE, append k, v to the cache
//                       att = causal GQA softmax(q k^T / sqrt(hd)) v      -> tap OIn (o's input)
//   feed-forward half:  x += att Wo^T
//                       xn = rmsnorm(x, ffn_norm)                         -> tap FfnIn (gate/up input)
//                       a = silu(xn Wg^T) * (xn Wu^T)                     -> tap DownIn (down's input)
//                       x += a Wd^T
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "core/thread_pool.h"
#include "tensor/model_config.h"
#include "model/linear.h"

namespace elutq {

// The sub-layer inputs an observer sees.
enum class BlockTap { AttnIn, OIn, FfnIn, DownIn };

// Called with the rows (n, width) entering a sub-layer, in forward order, once per batch.
using BlockObserver =
    std::function<void(BlockTap tap, const float* rows, int64_t n, int64_t width)>;

// out (dim) = x * w / sqrt(mean(x^2) + eps), as transformers' LlamaRMSNorm (sum in double):
// rmsnorm_forward<float> of block_ops.h. out may equal x.
void rmsnorm(const float* x, const float* w, int dim, float eps, float* out);

// g (n, hidden) = silu(xn Wg^T) * (xn Wu^T) (swiglu_forward of block_ops.h); u (n, hidden) is
// scratch.
void swiglu(const Linear& gate, const Linear& up, const float* xn, int64_t n, float* g, float* u,
            ThreadPool& pool);

// Attention runs on tiles of up to this many consecutive tokens of one sequence, reading the
// shared key and value rows kAttentionKeyBlock at a time for all of them (DecoderBlock::attention).
constexpr int kAttentionTile = 8;
constexpr int kAttentionKeyBlock = 64;  // a multiple of 4: the scores kernels' row groups

// Working memory of a block's forward pass, sized once for batches of up to max_batch tokens and
// a KV cache of max_ctx rows, shared by all blocks of a model.
struct BlockScratch {
  BlockScratch(const ModelConfig& c, int max_batch, int max_ctx, int n_threads);
  int max_batch, max_ctx;
  std::vector<float> xn;           // (max_batch, dim) normed input of a sub-layer
  std::vector<float> q;            // (max_batch, q_dim)
  std::vector<float> k, v;         // (max_batch, kv_dim)
  std::vector<float> att;          // (max_batch, q_dim) attention output before o
  std::vector<float> proj;         // (max_batch, dim) o / down output
  std::vector<float> gate, up;     // (max_batch, hidden_dim)
  std::vector<float> cos_t, sin_t; // (max_batch, head_dim / 2)
  std::vector<float> scores;       // (n_threads, kAttentionTile, max_ctx) a tile's rows per thread
  std::vector<int> tiles;          // (max_batch + 1) first token of each attention tile
  // Where each token of the batch sits: position tok_pos[i] (RoPE, causal extent) of a sequence
  // whose KV cache rows start at row tok_row0[i]. One sequence at pos: pos + i and 0.
  std::vector<int> tok_pos, tok_row0;  // (max_batch) each
};

class DecoderBlock {
 public:
  // cfg and inv_freq ((head_dim / 2) RoPE inverse frequencies) must outlive the block.
  DecoderBlock(const ModelConfig& cfg, const std::vector<float>& inv_freq)
      : cfg_(&cfg), inv_freq_(&inv_freq) {}

  // Weights. Projections: q (q_dim, dim), k/v (kv_dim, dim), o (dim, q_dim),
  // gate/up (hidden, dim), down (dim, hidden); lin[0] null while the block is not loaded.
  std::vector<float> attn_norm, ffn_norm;  // (dim) each
  std::unique_ptr<Linear> lin[kLinearSlots];
  std::vector<float> bq, bk, bv;           // (q_dim), (kv_dim), (kv_dim); empty without attn_bias
  std::vector<float> q_norm, k_norm;       // (head_dim) each; empty without qk_norm
  std::vector<float> k_cache, v_cache;     // (max_ctx, kv_dim) each

  const Linear& linear(LinearSlot s) const { return *lin[int(s)]; }
  const ModelConfig& config() const { return *cfg_; }
  const std::vector<float>& inv_freq() const { return *inv_freq_; }  // (head_dim / 2)

  // The whole block in place on x (n, dim), n <= s.max_batch, tokens placed by s.tok_pos /
  // s.tok_row0; extends the KV cache.
  void forward(float* x, int n, BlockScratch& s, ThreadPool& pool,
               const BlockObserver& observe = {});

  // The attention half: s.att (n, q_dim) from x (n, dim); x is unchanged, the KV cache extended.
  void attention_half(const float* x, int n, BlockScratch& s, ThreadPool& pool,
                      const BlockObserver& observe = {});

  // The feed-forward half in place on x (n, dim), from att (n, q_dim). With stop_after FfnIn or
  // DownIn it returns after that tap (x then holds x + att Wo^T), for passes that only record.
  void ffn_half(float* x, const float* att, int n, BlockScratch& s, ThreadPool& pool,
                const BlockObserver& observe = {},
                std::optional<BlockTap> stop_after = std::nullopt);
  // The feed-forward half's last step: x (n, dim) += down_in (n, hidden) Wdown^T. ffn_half ends
  // with it; a pass that kept down's inputs (stop_after DownIn) finishes the block with it.
  void add_down(const float* down_in, int n, float* x, BlockScratch& s, ThreadPool& pool) const;

  // xn (n, dim) = the attention half's input norm of x (n, dim), the AttnIn rows.
  void attn_input(const float* x, int64_t n, float* xn) const;

 private:
  void attention(int n, BlockScratch& s, ThreadPool& pool);

  const ModelConfig* cfg_;
  const std::vector<float>* inv_freq_;
};

}  // namespace elutq
