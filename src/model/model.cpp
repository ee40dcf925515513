// The fp32 decoder: embedding -> DecoderBlock per layer (decoder_block.h) -> final RMSNorm ->
// output head; see model.h.
#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "format/dequant.h"
#include "kernels/gemv.h"
#include "model/block_vectors.h"
#include "model/dense_linear.h"
#include "model/rope.h"
#include "tensor/model_source.h"
#include "tensor/tensor_names.h"

namespace elutq {

Model::Model(const ModelSource& src, const ModelOptions& opt) : cfg_(src.config()) {
  validate_config(cfg_);
  const ModelConfig& c = cfg_;
  const int64_t dim = c.dim, vocab = c.vocab_size;
  require(opt.max_ctx >= 0 && opt.max_batch > 0, "max_ctx must be >= 0 and max_batch > 0");
  max_ctx_ = opt.max_ctx > 0 ? opt.max_ctx : std::min(c.max_seq_len, 4096);
  max_batch_ = std::min(opt.max_batch, max_ctx_);
  pool_ = std::make_unique<ThreadPool>(opt.n_threads);
  const LinearFactory factory = opt.linear_factory ? opt.linear_factory : make_dense_linear;

  const TensorInfo& emb = src.get(kTokenEmbdName, {vocab, dim});
  if (opt.lazy_blocks || opt.linear_factory) {
    // Embedding rows come from the source on demand, in their stored type: a factory's layers may
    // view the source's mapping, so it outlives the model anyway (ModelOptions), and a widened
    // copy of a GGUF model's embedding is often the largest thing in memory.
    src_ = &src;
    factory_ = factory;
  } else {
    token_embd_ = std::make_shared<std::vector<float>>(size_t(vocab * dim));
    load_tensor_f32(emb, token_embd_->data());
  }
  output_norm_ = load_vector(src, kOutputNormName, dim);
  if (opt.lazy_blocks) {
    // built by ensure_output() on the first logits() call
  } else if (!c.tied_embeddings) {
    output_ = factory(src, src.get(kOutputName, {vocab, dim}));
  } else if (opt.linear_factory) {
    output_ = factory(src, emb);
  } else {
    output_ = std::make_unique<DenseLinear>(token_embd_, vocab, dim);  // shares the embedding
  }

  inv_freq_ = load_rope_inv_freq(src);

  for (int l = 0; l < c.n_layers; ++l) {
    auto L = std::make_unique<DecoderBlock>(cfg_, inv_freq_);
    BlockVectors v = load_block_vectors(src, l);
    L->attn_norm = std::move(v.attn_norm);
    L->ffn_norm = std::move(v.ffn_norm);
    L->bq = std::move(v.bq);
    L->bk = std::move(v.bk);
    L->bv = std::move(v.bv);
    L->q_norm = std::move(v.q_norm);
    L->k_norm = std::move(v.k_norm);
    for (LinearSlot s : kAllLinearSlots) {
      const auto [rows, cols] = linear_shape(c, s);
      // checked even when loaded later
      const TensorInfo& w = src.get(linear_weight_name(l, s), {rows, cols});
      if (!opt.lazy_blocks) L->lin[int(s)] = factory(src, w);
    }
    if (!opt.lazy_blocks) clear_kv_cache(*L);
    layers_.push_back(std::move(L));
  }

  s_ = std::make_unique<BlockScratch>(c, max_batch_, max_ctx_, pool_->size());
  x_.resize(size_t(max_batch_) * dim);
  last_.resize(size_t(dim));
  logits_.resize(size_t(vocab));
}

Model::~Model() = default;

DecoderBlock& Model::loaded_layer(int layer) {
  require(layer >= 0 && layer < cfg_.n_layers, "layer ", layer, " out of range");
  DecoderBlock& L = *layers_[layer];
  require(L.lin[0] != nullptr, "block ", layer,
          " is not loaded (a lazy-block model needs load_block(", layer, ") first)");
  return L;
}

bool Model::block_loaded(int layer) const {
  require(layer >= 0 && layer < cfg_.n_layers, "layer ", layer, " out of range");
  return layers_[layer]->lin[0] != nullptr;
}

void Model::load_block(int layer) {
  if (block_loaded(layer)) return;
  load_weights(layer);
  clear_kv_cache(*layers_[layer]);
}

void Model::clear_kv_cache(DecoderBlock& L) const {
  const size_t kv = size_t(max_ctx_) * cfg_.n_kv_heads * cfg_.head_dim;
  L.k_cache.assign(kv, 0.0f);
  L.v_cache.assign(kv, 0.0f);
}

void Model::release_block(int layer) {
  require(layer >= 0 && layer < cfg_.n_layers, "layer ", layer, " out of range");
  release_weights(layer);
  DecoderBlock& L = *layers_[layer];
  std::vector<float>().swap(L.k_cache);
  std::vector<float>().swap(L.v_cache);
}

void Model::load_weights(int layer) {
  require(src_ != nullptr, "block ", layer, " was released and this model cannot reload it "
          "(only lazy-block models keep their source)");
  DecoderBlock& L = *layers_[layer];
  for (LinearSlot s : kAllLinearSlots) {
    const auto [rows, cols] = linear_shape(cfg_, s);
    L.lin[int(s)] = factory_(*src_, src_->get(linear_weight_name(layer, s), {rows, cols}));
  }
}

void Model::release_weights(int layer) {
  DecoderBlock& L = *layers_[layer];
  for (auto& lin : L.lin) lin.reset();
  if (src_) {
    for (const std::string& name : src_->tensor_names()) {
      if (block_index(name) != layer) continue;
      if (const TensorInfo* t = src_->find(name)) src_->release_pages(*t);
    }
  }
}

const Linear& Model::output() const {
  require(output_ != nullptr, "the output head of a lazy-block model is built by its first logits() call");
  return *output_;
}

void Model::ensure_output() {
  if (output_) return;
  const ModelConfig& c = cfg_;
  const std::string name = c.tied_embeddings ? kTokenEmbdName : kOutputName;
  output_ = factory_(*src_, src_->get(name, {c.vocab_size, c.dim}));
}

Linear& Model::linear(int layer, LinearSlot slot) {
  return *loaded_layer(layer).lin[int(slot)];
}

void Model::set_linear(int layer, LinearSlot slot, std::unique_ptr<Linear> lin) {
  Linear& old = linear(layer, slot);
  require(lin && lin->in_features() == old.in_features() && lin->out_features() == old.out_features(),
          "set_linear: replacement for ", linear_weight_name(layer, slot), " must be ",
          old.out_features(), "x", old.in_features());
  layers_[layer]->lin[int(slot)] = std::move(lin);
}

void Model::set_output(std::unique_ptr<Linear> lin) {
  ensure_output();
  require(lin && lin->in_features() == cfg_.dim && lin->out_features() == cfg_.vocab_size,
          "set_output: replacement must be ", cfg_.vocab_size, "x", cfg_.dim);
  output_ = std::move(lin);
}

std::vector<float>& Model::attn_norm(int layer) { return layers_.at(layer)->attn_norm; }
std::vector<float>& Model::ffn_norm(int layer) { return layers_.at(layer)->ffn_norm; }

void Model::embed(const int* tokens, int n, float* x) const {
  const int dim = cfg_.dim;
  for (int i = 0; i < n; ++i) {
    require(tokens[i] >= 0 && tokens[i] < cfg_.vocab_size, "token id ", tokens[i],
            " is outside the vocabulary [0, ", cfg_.vocab_size, ")");
    if (!token_embd_) {  // lazy: one row from the source
      tensor_rows_to_f32(*src_->find(kTokenEmbdName), tokens[i], tokens[i] + 1,
                         x + int64_t(i) * dim);
      continue;
    }
    std::memcpy(x + int64_t(i) * dim, token_embd_->data() + int64_t(tokens[i]) * dim,
                sizeof(float) * dim);
  }
}

void Model::final_norm(float* x, int n) const {
  for (int i = 0; i < n; ++i) {
    float* row = x + int64_t(i) * cfg_.dim;
    rmsnorm(row, output_norm_.data(), cfg_.dim, cfg_.norm_eps, row);
  }
}

void Model::place_sequence(int n, int pos) {
  require(n > 0 && n <= max_batch_, "forward_block: ", n, " tokens; 1..", max_batch_, " allowed");
  require(pos >= 0 && pos + n <= max_ctx_, "positions ", pos, "..", pos + n - 1,
          " exceed the context of ", max_ctx_, " tokens (raise --ctx / max_ctx)");
  for (int i = 0; i < n; ++i) {
    s_->tok_pos[size_t(i)] = pos + i;
    s_->tok_row0[size_t(i)] = 0;
  }
}

void Model::forward_block(int layer, float* x, int n, int pos, const BlockObserver& observe) {
  DecoderBlock& L = loaded_layer(layer);
  place_sequence(n, pos);
  L.forward(x, n, *s_, *pool_, observe);
}

const float* Model::attention_half(int layer, const float* x, int n, int pos,
                                   const BlockObserver& observe) {
  DecoderBlock& L = loaded_layer(layer);
  place_sequence(n, pos);
  L.attention_half(x, n, *s_, *pool_, observe);
  return s_->att.data();
}

void Model::ffn_half(int layer, float* x, const float* att, int n, const BlockObserver& observe,
                     std::optional<BlockTap> stop_after) {
  DecoderBlock& L = loaded_layer(layer);
  require(n > 0 && n <= max_batch_, "ffn_half: ", n, " tokens; 1..", max_batch_, " allowed");
  L.ffn_half(x, att, n, *s_, *pool_, observe, stop_after);
}

void Model::add_down(int layer, const float* down_in, int n, float* x) {
  require(n > 0 && n <= max_batch_, "add_down: ", n, " tokens; 1..", max_batch_, " allowed");
  loaded_layer(layer).add_down(down_in, n, x, *s_, *pool_);
}

void Model::decode_sequences(const int* tokens, const int* pos, int n, int slot_len,
                             float* logits) {
  require(n > 0 && n <= max_batch_, "decode_sequences: ", n, " sequences; 1..", max_batch_,
          " allowed");
  require(slot_len > 0 && int64_t(n) * slot_len <= max_ctx_, "decode_sequences: ", n,
          " sequences of ", slot_len, " tokens do not fit the KV cache of ", max_ctx_,
          " tokens (raise max_ctx)");
  for (int i = 0; i < n; ++i) {
    require(pos[i] >= 0 && pos[i] < slot_len, "decode_sequences: position ", pos[i],
            " of sequence ", i, " is outside its ", slot_len, " cache rows");
    s_->tok_pos[size_t(i)] = pos[i];
    s_->tok_row0[size_t(i)] = i * slot_len;
  }
  float* x = x_.data();
  embed(tokens, n, x);
  for (int l = 0; l < cfg_.n_layers; ++l) {
    // A lazy model's unloaded block is streamed: its weights come in for this step only, its KV
    // cache (made on first use) stays for the next steps. So sampling needs one block's weights
    // in memory at a time, at the price of reading every block's weights every step.
    const bool streamed = src_ != nullptr && !block_loaded(l);
    if (streamed) {
      load_weights(l);
      if (layers_[l]->k_cache.empty()) clear_kv_cache(*layers_[l]);
    }
    loaded_layer(l).forward(x, n, *s_, *pool_);
    if (streamed) release_weights(l);
  }
  final_norm(x, n);
  logits_of(x, n, logits);
}

void Model::forward_batch(const int* tokens, const int* pos, const int* row0, int n,
                          const int* out_rows, int n_out, float* logits) {
  require(n > 0 && n <= max_batch_, "forward_batch: ", n, " tokens; 1..", max_batch_, " allowed");
  for (int i = 0; i < n; ++i) {
    require(pos[i] >= 0 && row0[i] >= 0 && int64_t(row0[i]) + pos[i] < max_ctx_,
            "forward_batch: token ", i, " at position ", pos[i], " of the sequence at row ",
            row0[i], " is outside the KV cache of ", max_ctx_, " rows");
    s_->tok_pos[size_t(i)] = pos[i];
    s_->tok_row0[size_t(i)] = row0[i];
  }
  for (int r = 0; r < n_out; ++r)
    require(out_rows[r] >= 0 && out_rows[r] < n && (r == 0 || out_rows[r] > out_rows[r - 1]),
            "forward_batch: output rows must be ascending rows of the batch");
  float* x = x_.data();
  embed(tokens, n, x);
  for (int l = 0; l < cfg_.n_layers; ++l) loaded_layer(l).forward(x, n, *s_, *pool_);
  if (n_out == 0) return;
  // The rows asked for, gathered (in place: out_rows ascending never reads a row it overwrote).
  const int dim = cfg_.dim;
  for (int r = 0; r < n_out; ++r) {
    if (out_rows[r] != r)
      std::memcpy(x + int64_t(r) * dim, x + int64_t(out_rows[r]) * dim, sizeof(float) * dim);
  }
  final_norm(x, n_out);
  logits_of(x, n_out, logits);
}

void Model::forward(const int* tokens, int n, int pos, float* hidden) {
  require(n > 0, "forward: no tokens");
  const int dim = cfg_.dim;
  for (int c0 = 0; c0 < n; c0 += max_batch_) {
    const int m = std::min(max_batch_, n - c0);
    float* x = x_.data();
    embed(tokens + c0, m, x);
    for (int l = 0; l < cfg_.n_layers; ++l) forward_block(l, x, m, pos + c0);
    final_norm(x, m);
    if (hidden) std::memcpy(hidden + int64_t(c0) * dim, x, sizeof(float) * m * dim);
    if (c0 + m == n) std::memcpy(last_.data(), x + int64_t(m - 1) * dim, sizeof(float) * dim);
  }
}

void Model::logits(const float* hidden, int n, float* out) {
  require(n > 0, "logits: no rows");
  logits_of(hidden, n, out);
}

void Model::logits_of(const float* hidden, int n, float* out) {
  ensure_output();
  output_->forward(hidden, n, out, *pool_);
}

const float* Model::prefill_logits(const int* tokens, int n, int pos) {
  forward(tokens, n, pos, nullptr);
  ensure_output();
  output_->forward(last_.data(), 1, logits_.data(), *pool_);
  return logits_.data();
}

}  // namespace elutq
