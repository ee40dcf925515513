// SyntheticSource; see synthetic_source.h.
#include "format/synthetic_source.h"

#include <cstring>
#include <random>

#include "core/error.h"
#include "core/fp16.h"
#include "tensor/tensor_names.h"

namespace elutq {
namespace {

std::vector<uint8_t> filled_f32(int64_t n, float v) {
  std::vector<uint8_t> b(size_t(n) * 4);
  for (int64_t i = 0; i < n; ++i) std::memcpy(b.data() + i * 4, &v, 4);
  return b;
}

}  // namespace

SyntheticSource::SyntheticSource(const ModelConfig& cfg, uint64_t seed) : cfg_(cfg) {
  validate_config(cfg_);
  const int64_t d = cfg.dim, hd = cfg.head_dim, q = int64_t(cfg.n_heads) * hd,
                kv = int64_t(cfg.n_kv_heads) * hd, v = cfg.vocab_size;
  // Embedding rows of unit scale, so activations have realistic magnitudes.
  std::vector<uint8_t> emb(size_t(v * d) * 2);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int64_t i = 0; i < v * d; ++i) {
    const uint16_t x = f32_to_fp16(nd(rng));
    std::memcpy(emb.data() + i * 2, &x, 2);
  }
  add(kTokenEmbdName, {v, d}, DType::F16, std::move(emb));
  for (int l = 0; l < cfg.n_layers; ++l) {
    add(block_tensor_name(l, "attn_norm.weight"), {d}, DType::F32, filled_f32(d, 1.0f));
    for (LinearSlot s : kAllLinearSlots) {
      const auto [rows, cols] = linear_shape(cfg, s);
      add(linear_weight_name(l, s), {rows, cols}, DType::F32, {});
    }
    if (cfg.attn_bias) {
      add(block_tensor_name(l, "attn_q.bias"), {q}, DType::F32, filled_f32(q, 0.0f));
      add(block_tensor_name(l, "attn_k.bias"), {kv}, DType::F32, filled_f32(kv, 0.0f));
      add(block_tensor_name(l, "attn_v.bias"), {kv}, DType::F32, filled_f32(kv, 0.0f));
    }
    if (cfg.qk_norm) {
      add(block_tensor_name(l, "attn_q_norm.weight"), {hd}, DType::F32, filled_f32(hd, 1.0f));
      add(block_tensor_name(l, "attn_k_norm.weight"), {hd}, DType::F32, filled_f32(hd, 1.0f));
    }
    add(block_tensor_name(l, "ffn_norm.weight"), {d}, DType::F32, filled_f32(d, 1.0f));
  }
  add(kOutputNormName, {d}, DType::F32, filled_f32(d, 1.0f));
  if (!cfg.tied_embeddings) add(kOutputName, {v, d}, DType::F32, {});
}

void SyntheticSource::add(const std::string& name, std::vector<int64_t> shape, DType dtype,
                          std::vector<uint8_t> bytes) {
  TensorInfo t;
  t.name = name;
  t.shape = std::move(shape);
  t.dtype = dtype;
  if (!bytes.empty()) {
    std::vector<uint8_t>& kept = bytes_[name];
    kept = std::move(bytes);
    t.data = kept.data();
    t.nbytes = kept.size();
  }
  names_.push_back(name);
  tensors_[name] = std::move(t);
}

const TensorInfo* SyntheticSource::find(const std::string& name) const {
  const auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

}  // namespace elutq
