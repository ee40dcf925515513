// Loading a model's small fp32 tensors; see block_vectors.h.
#include "model/block_vectors.h"

#include "model/linear.h"
#include "model/rope.h"
#include "tensor/tensor_names.h"

namespace elutq {

std::vector<float> load_vector(const ModelSource& src, const std::string& name, int64_t n) {
  const TensorInfo& t = src.get(name, {n});
  std::vector<float> v(static_cast<size_t>(n));
  load_tensor_f32(t, v.data());
  return v;
}

BlockVectors load_block_vectors(const ModelSource& src, int l) {
  const ModelConfig& c = src.config();
  const int64_t dim = c.dim, hd = c.head_dim, q_dim = int64_t(c.n_heads) * hd,
                kv_dim = int64_t(c.n_kv_heads) * hd;
  BlockVectors b;
  b.attn_norm = load_vector(src, block_tensor_name(l, "attn_norm.weight"), dim);
  b.ffn_norm = load_vector(src, block_tensor_name(l, "ffn_norm.weight"), dim);
  if (c.attn_bias) {
    b.bq = load_vector(src, block_tensor_name(l, "attn_q.bias"), q_dim);
    b.bk = load_vector(src, block_tensor_name(l, "attn_k.bias"), kv_dim);
    b.bv = load_vector(src, block_tensor_name(l, "attn_v.bias"), kv_dim);
  }
  if (c.qk_norm) {
    b.q_norm = load_vector(src, block_tensor_name(l, "attn_q_norm.weight"), hd);
    b.k_norm = load_vector(src, block_tensor_name(l, "attn_k_norm.weight"), hd);
  }
  return b;
}

void point_at(const BlockVectors& v, BlockWeights<float>* w) {
  const auto data = [](const std::vector<float>& x) { return x.empty() ? nullptr : x.data(); };
  w->attn_norm = data(v.attn_norm);
  w->ffn_norm = data(v.ffn_norm);
  w->bq = data(v.bq);
  w->bk = data(v.bk);
  w->bv = data(v.bv);
  w->q_norm = data(v.q_norm);
  w->k_norm = data(v.k_norm);
}

std::vector<float> load_rope_inv_freq(const ModelSource& src) {
  const ModelConfig& c = src.config();
  std::vector<float> rope_freqs;
  if (c.rope_scaling.type == "llama3-freqs")
    rope_freqs = load_vector(src, "rope_freqs.weight", c.head_dim / 2);
  return rope_inv_freq(c, rope_freqs.empty() ? nullptr : rope_freqs.data());
}

}  // namespace elutq
