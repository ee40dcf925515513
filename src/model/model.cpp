// The fp32 decoder forward pass; see model.h. Reads like the math: RMSNorm -> q/k/v (+bias,
// +per-head norm) -> RoPE -> causal GQA attention over the KV cache -> o -> residual ->
// RMSNorm -> SwiGLU -> down -> residual.
#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "format/dequant.h"
#include "kernels/gemv.h"
#include "model/dense_linear.h"
#include "model/rope.h"
#include "tensor/model_source.h"

namespace elutq {

const char* linear_slot_name(LinearSlot s) {
  static const char* names[kLinearSlots] = {"attn_q",      "attn_k",   "attn_v", "attn_output",
                                            "ffn_gate",    "ffn_up",   "ffn_down"};
  return names[int(s)];
}

struct Model::Layer {
  std::vector<float> attn_norm;  // (dim)
  std::vector<float> ffn_norm;   // (dim)
  std::unique_ptr<Linear> lin[kLinearSlots];  // q (q_dim, dim), k/v (kv_dim, dim), o (dim, q_dim),
                                              // gate/up (hidden, dim), down (dim, hidden)
  std::vector<float> bq, bk, bv;  // (q_dim), (kv_dim), (kv_dim); empty without attn_bias
  std::vector<float> q_norm, k_norm;  // (head_dim) each; empty without qk_norm
  std::vector<float> k_cache, v_cache;  // (max_ctx, kv_dim) each
};

struct Model::Scratch {
  std::vector<float> x;       // (max_batch, dim) residual stream of forward()
  std::vector<float> xn;      // (max_batch, dim) normed input of a sub-layer
  std::vector<float> q;       // (max_batch, q_dim)
  std::vector<float> k, v;    // (max_batch, kv_dim)
  std::vector<float> att;     // (max_batch, q_dim) attention output before o
  std::vector<float> proj;    // (max_batch, dim) o / down output
  std::vector<float> gate, up;  // (max_batch, hidden_dim)
  std::vector<float> cos_t, sin_t;  // (max_batch, head_dim / 2)
  std::vector<float> scores;  // (n_threads, max_ctx) one attention row per thread
  std::vector<float> last;    // (dim) final hidden state of the last token
  std::vector<float> logits;  // (vocab) logits of the last token
  // Where each token of the batch in flight sits: position tok_pos[i] (RoPE, causal extent) of a
  // sequence whose KV cache rows start at row tok_row0[i]. One sequence: pos + i and 0.
  std::vector<int> tok_pos, tok_row0;  // (max_batch) each
};

namespace {

// out (dim) = x * w / sqrt(mean(x^2) + eps), as transformers' LlamaRMSNorm (sum in double).
void rmsnorm(const float* x, const float* w, int dim, float eps, float* out) {
  double ss = 0.0;
  for (int i = 0; i < dim; ++i) ss += double(x[i]) * x[i];
  const float r = float(1.0 / std::sqrt(ss / dim + eps));
  for (int i = 0; i < dim; ++i) out[i] = w[i] * (x[i] * r);
}

std::vector<float> load_vector(const ModelSource& src, const std::string& name, int64_t n) {
  const TensorInfo& t = src.get(name, {n});
  std::vector<float> v(static_cast<size_t>(n));
  load_tensor_f32(t, v.data());
  return v;
}

std::string blk(int l, const char* what) { return "blk." + std::to_string(l) + "." + what; }

// {out, in} of a block projection.
std::pair<int64_t, int64_t> slot_shape(const ModelConfig& c, LinearSlot s) {
  const int64_t dim = c.dim, q_dim = int64_t(c.n_heads) * c.head_dim,
                kv_dim = int64_t(c.n_kv_heads) * c.head_dim, hidden = c.hidden_dim;
  switch (s) {
    case LinearSlot::Q: return {q_dim, dim};
    case LinearSlot::K:
    case LinearSlot::V: return {kv_dim, dim};
    case LinearSlot::O: return {dim, q_dim};
    case LinearSlot::Gate:
    case LinearSlot::Up: return {hidden, dim};
    case LinearSlot::Down: return {dim, hidden};
  }
  return {0, 0};
}

}  // namespace

Model::Model(const ModelSource& src, const ModelOptions& opt) : cfg_(src.config()) {
  validate_config(cfg_);
  const ModelConfig& c = cfg_;
  const int64_t dim = c.dim, hd = c.head_dim, q_dim = int64_t(c.n_heads) * hd,
                kv_dim = int64_t(c.n_kv_heads) * hd, hidden = c.hidden_dim, vocab = c.vocab_size;
  require(opt.max_ctx >= 0 && opt.max_batch > 0, "max_ctx must be >= 0 and max_batch > 0");
  max_ctx_ = opt.max_ctx > 0 ? opt.max_ctx : std::min(c.max_seq_len, 4096);
  max_batch_ = std::min(opt.max_batch, max_ctx_);
  pool_ = std::make_unique<ThreadPool>(opt.n_threads);
  const LinearFactory factory = opt.linear_factory ? opt.linear_factory : make_dense_linear;

  const TensorInfo& emb = src.get("token_embd.weight", {vocab, dim});
  if (opt.lazy_blocks) {
    src_ = &src;
    factory_ = factory;
  } else {
    token_embd_ = std::make_shared<std::vector<float>>(size_t(vocab * dim));
    load_tensor_f32(emb, token_embd_->data());
  }
  output_norm_ = load_vector(src, "output_norm.weight", dim);
  if (opt.lazy_blocks) {
    // built by ensure_output() on the first logits() call
  } else if (!c.tied_embeddings) {
    output_ = factory(src, src.get("output.weight", {vocab, dim}));
  } else if (opt.linear_factory) {
    output_ = factory(src, emb);
  } else {
    output_ = std::make_unique<DenseLinear>(token_embd_, vocab, dim);  // shares the embedding
  }

  std::vector<float> rope_freqs;
  if (c.rope_scaling.type == "llama3-freqs") rope_freqs = load_vector(src, "rope_freqs.weight", hd / 2);
  inv_freq_ = rope_inv_freq(c, rope_freqs.empty() ? nullptr : rope_freqs.data());

  for (int l = 0; l < c.n_layers; ++l) {
    auto L = std::make_unique<Layer>();
    L->attn_norm = load_vector(src, blk(l, "attn_norm.weight"), dim);
    L->ffn_norm = load_vector(src, blk(l, "ffn_norm.weight"), dim);
    for (int s = 0; s < kLinearSlots; ++s) {
      const std::string name = blk(l, linear_slot_name(LinearSlot(s))) + ".weight";
      const auto [rows, cols] = slot_shape(c, LinearSlot(s));
      const TensorInfo& w = src.get(name, {rows, cols});  // checked even when loaded later
      if (!opt.lazy_blocks) L->lin[s] = factory(src, w);
    }
    if (c.attn_bias) {
      L->bq = load_vector(src, blk(l, "attn_q.bias"), q_dim);
      L->bk = load_vector(src, blk(l, "attn_k.bias"), kv_dim);
      L->bv = load_vector(src, blk(l, "attn_v.bias"), kv_dim);
    }
    if (c.qk_norm) {
      L->q_norm = load_vector(src, blk(l, "attn_q_norm.weight"), hd);
      L->k_norm = load_vector(src, blk(l, "attn_k_norm.weight"), hd);
    }
    if (!opt.lazy_blocks) clear_kv_cache(*L);
    layers_.push_back(std::move(L));
  }

  s_ = std::make_unique<Scratch>();
  const size_t B = size_t(max_batch_);
  s_->x.resize(B * dim);
  s_->xn.resize(B * dim);
  s_->q.resize(B * q_dim);
  s_->k.resize(B * kv_dim);
  s_->v.resize(B * kv_dim);
  s_->att.resize(B * q_dim);
  s_->proj.resize(B * dim);
  s_->gate.resize(B * hidden);
  s_->up.resize(B * hidden);
  s_->cos_t.resize(B * (hd / 2));
  s_->sin_t.resize(B * (hd / 2));
  s_->scores.resize(size_t(pool_->size()) * max_ctx_);
  s_->last.resize(dim);
  s_->logits.resize(vocab);
  s_->tok_pos.resize(B);
  s_->tok_row0.resize(B);
}

Model::~Model() = default;

Model::Layer& Model::loaded_layer(int layer) {
  require(layer >= 0 && layer < cfg_.n_layers, "layer ", layer, " out of range");
  Layer& L = *layers_[layer];
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

void Model::clear_kv_cache(Layer& L) const {
  const size_t kv = size_t(max_ctx_) * cfg_.n_kv_heads * cfg_.head_dim;
  L.k_cache.assign(kv, 0.0f);
  L.v_cache.assign(kv, 0.0f);
}

void Model::release_block(int layer) {
  require(layer >= 0 && layer < cfg_.n_layers, "layer ", layer, " out of range");
  release_weights(layer);
  Layer& L = *layers_[layer];
  std::vector<float>().swap(L.k_cache);
  std::vector<float>().swap(L.v_cache);
}

void Model::load_weights(int layer) {
  require(src_ != nullptr, "block ", layer, " was released and this model cannot reload it "
          "(only lazy-block models keep their source)");
  Layer& L = *layers_[layer];
  for (int s = 0; s < kLinearSlots; ++s) {
    const std::string name = blk(layer, linear_slot_name(LinearSlot(s))) + ".weight";
    const auto [rows, cols] = slot_shape(cfg_, LinearSlot(s));
    L.lin[s] = factory_(*src_, src_->get(name, {rows, cols}));
  }
}

void Model::release_weights(int layer) {
  Layer& L = *layers_[layer];
  for (auto& lin : L.lin) lin.reset();
  if (src_) {
    const std::string prefix = "blk." + std::to_string(layer) + ".";
    for (const std::string& name : src_->tensor_names()) {
      if (name.rfind(prefix, 0) != 0) continue;
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
  const std::string name = c.tied_embeddings ? "token_embd.weight" : "output.weight";
  output_ = factory_(*src_, src_->get(name, {c.vocab_size, c.dim}));
}

Linear& Model::linear(int layer, LinearSlot slot) {
  return *loaded_layer(layer).lin[int(slot)];
}

void Model::set_linear(int layer, LinearSlot slot, std::unique_ptr<Linear> lin) {
  Linear& old = linear(layer, slot);
  require(lin && lin->in_features() == old.in_features() && lin->out_features() == old.out_features(),
          "set_linear: replacement for blk.", layer, ".", linear_slot_name(slot), " must be ",
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
      tensor_rows_to_f32(*src_->find("token_embd.weight"), tokens[i], tokens[i] + 1,
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

void Model::forward_block(int layer, float* x, int n, int pos) {
  require(layer >= 0 && layer < cfg_.n_layers, "layer ", layer, " out of range");
  require(n > 0 && n <= max_batch_, "forward_block: ", n, " tokens; 1..", max_batch_, " allowed");
  require(pos >= 0 && pos + n <= max_ctx_, "positions ", pos, "..", pos + n - 1,
          " exceed the context of ", max_ctx_, " tokens (raise --ctx / max_ctx)");
  for (int i = 0; i < n; ++i) {
    s_->tok_pos[size_t(i)] = pos + i;
    s_->tok_row0[size_t(i)] = 0;
  }
  run_block(layer, x, n);
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
  float* x = s_->x.data();
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
    run_block(l, x, n);
    if (streamed) release_weights(l);
  }
  final_norm(x, n);
  logits_of(x, n, logits);
}

void Model::run_block(int layer, float* x, int n) {
  const ModelConfig& c = cfg_;
  Layer& L = loaded_layer(layer);
  Scratch& s = *s_;
  ThreadPool& pool = *pool_;
  const int dim = c.dim, hd = c.head_dim, half = hd / 2, q_dim = c.n_heads * hd,
            kv_dim = c.n_kv_heads * hd, hidden = c.hidden_dim;

  // Attention sub-layer.
  for (int i = 0; i < n; ++i)
    rmsnorm(x + int64_t(i) * dim, L.attn_norm.data(), dim, c.norm_eps, s.xn.data() + int64_t(i) * dim);
  {
    const Linear* qkv[] = {L.lin[int(LinearSlot::Q)].get(), L.lin[int(LinearSlot::K)].get(),
                           L.lin[int(LinearSlot::V)].get()};
    float* out[] = {s.q.data(), s.k.data(), s.v.data()};
    forward_same_input(qkv, s.xn.data(), n, out, pool);
  }
  for (int i = 0; i < n; ++i) {
    float* q = s.q.data() + int64_t(i) * q_dim;
    float* k = s.k.data() + int64_t(i) * kv_dim;
    float* v = s.v.data() + int64_t(i) * kv_dim;
    if (c.attn_bias) {
      for (int j = 0; j < q_dim; ++j) q[j] += L.bq[j];
      for (int j = 0; j < kv_dim; ++j) k[j] += L.bk[j];
      for (int j = 0; j < kv_dim; ++j) v[j] += L.bv[j];
    }
    if (c.qk_norm) {  // Qwen3: RMSNorm over each head, before RoPE
      for (int h = 0; h < c.n_heads; ++h) rmsnorm(q + h * hd, L.q_norm.data(), hd, c.norm_eps, q + h * hd);
      for (int h = 0; h < c.n_kv_heads; ++h) rmsnorm(k + h * hd, L.k_norm.data(), hd, c.norm_eps, k + h * hd);
    }
    float* cs = s.cos_t.data() + int64_t(i) * half;
    float* sn = s.sin_t.data() + int64_t(i) * half;
    const int p = s.tok_pos[size_t(i)];
    const int64_t row = int64_t(s.tok_row0[size_t(i)]) + p;
    rope_cos_sin(p, inv_freq_.data(), half, cs, sn);
    for (int h = 0; h < c.n_heads; ++h) rope_rotate(q + h * hd, hd, cs, sn, c.rope_style);
    for (int h = 0; h < c.n_kv_heads; ++h) rope_rotate(k + h * hd, hd, cs, sn, c.rope_style);
    std::memcpy(L.k_cache.data() + row * kv_dim, k, sizeof(float) * kv_dim);
    std::memcpy(L.v_cache.data() + row * kv_dim, v, sizeof(float) * kv_dim);
  }
  attention(layer, n);
  L.lin[int(LinearSlot::O)]->forward(s.att.data(), n, s.proj.data(), pool);
  for (int64_t j = 0; j < int64_t(n) * dim; ++j) x[j] += s.proj[j];

  // Feed-forward sub-layer: down(silu(gate(x)) * up(x)).
  for (int i = 0; i < n; ++i)
    rmsnorm(x + int64_t(i) * dim, L.ffn_norm.data(), dim, c.norm_eps, s.xn.data() + int64_t(i) * dim);
  {
    const Linear* gate_up[] = {L.lin[int(LinearSlot::Gate)].get(),
                               L.lin[int(LinearSlot::Up)].get()};
    float* out[] = {s.gate.data(), s.up.data()};
    forward_same_input(gate_up, s.xn.data(), n, out, pool);
  }
  for (int64_t j = 0; j < int64_t(n) * hidden; ++j) {
    const float g = s.gate[j];
    s.gate[j] = g / (1.0f + std::exp(-g)) * s.up[j];
  }
  L.lin[int(LinearSlot::Down)]->forward(s.gate.data(), n, s.proj.data(), pool);
  for (int64_t j = 0; j < int64_t(n) * dim; ++j) x[j] += s.proj[j];
}

// att (n, q_dim): for each token i and head h, softmax(q k^T / sqrt(hd)) v over the cached
// positions of its sequence it may see (causal, and within the sliding window if the model has
// one).
void Model::attention(int layer, int n) {
  const ModelConfig& c = cfg_;
  Layer& L = *layers_[layer];
  Scratch& s = *s_;
  const int hd = c.head_dim, q_dim = c.n_heads * hd, kv_dim = c.n_kv_heads * hd;
  const int group = c.n_heads / c.n_kv_heads;
  const float scale = 1.0f / std::sqrt(float(hd));
  pool_->run(int64_t(n) * c.n_heads, [&](int t, int64_t b, int64_t e) {
    float* sc = s.scores.data() + int64_t(t) * max_ctx_;
    for (int64_t item = b; item < e; ++item) {
      const int i = int(item / c.n_heads), h = int(item % c.n_heads), kvh = h / group;
      const int p = s.tok_pos[size_t(i)];
      const int start = c.sliding_window > 0 ? std::max(0, p - c.sliding_window + 1) : 0;
      const float* q = s.q.data() + int64_t(i) * q_dim + h * hd;
      // The sequence's cache rows; j below counts positions within them.
      const int64_t row0 = s.tok_row0[size_t(i)];
      const float* kc = L.k_cache.data() + row0 * kv_dim + kvh * hd;
      const float* vc = L.v_cache.data() + row0 * kv_dim + kvh * hd;
      float mx = -INFINITY;
      for (int j = start; j <= p; ++j) {
        sc[j] = dot_f32(q, kc + int64_t(j) * kv_dim, hd) * scale;
        mx = std::max(mx, sc[j]);
      }
      float sum = 0.0f;
      for (int j = start; j <= p; ++j) {
        sc[j] = std::exp(sc[j] - mx);
        sum += sc[j];
      }
      const float inv = 1.0f / sum;
      float* out = s.att.data() + int64_t(i) * q_dim + h * hd;
      std::fill(out, out + hd, 0.0f);
      for (int j = start; j <= p; ++j) {
        const float w = sc[j] * inv;
        const float* v = vc + int64_t(j) * kv_dim;
        for (int d = 0; d < hd; ++d) out[d] += w * v[d];
      }
    }
  });
}

void Model::forward(const int* tokens, int n, int pos, float* hidden) {
  require(n > 0, "forward: no tokens");
  const int dim = cfg_.dim;
  for (int c0 = 0; c0 < n; c0 += max_batch_) {
    const int m = std::min(max_batch_, n - c0);
    float* x = s_->x.data();
    embed(tokens + c0, m, x);
    for (int l = 0; l < cfg_.n_layers; ++l) forward_block(l, x, m, pos + c0);
    final_norm(x, m);
    if (hidden) std::memcpy(hidden + int64_t(c0) * dim, x, sizeof(float) * m * dim);
    if (c0 + m == n) std::memcpy(s_->last.data(), x + int64_t(m - 1) * dim, sizeof(float) * dim);
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
  output_->forward(s_->last.data(), 1, s_->logits.data(), *pool_);
  return s_->logits.data();
}

}  // namespace elutq
