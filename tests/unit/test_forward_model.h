// A random tiny model held in memory (MemorySource) for forward-pass and perplexity tests.
#pragma once

#include <map>
#include <random>
#include <string>
#include <vector>

#include "tensor/model_source.h"

namespace elutq::test {

// A ModelSource whose fp32 tensors live in memory, filled with seeded random values.
class MemorySource : public ModelSource {
 public:
  explicit MemorySource(const ModelConfig& c, uint32_t seed = 1) : cfg_(c), rng_(seed) {
    const int64_t d = c.dim, hd = c.head_dim, q = int64_t(c.n_heads) * hd,
                  kv = int64_t(c.n_kv_heads) * hd, h = c.hidden_dim, v = c.vocab_size;
    add("token_embd.weight", {v, d}, 1.0f);
    add("output_norm.weight", {d}, 0.2f, 1.0f);
    if (!c.tied_embeddings) add("output.weight", {v, d}, 0.3f);
    for (int l = 0; l < c.n_layers; ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      add(p + "attn_norm.weight", {d}, 0.2f, 1.0f);
      add(p + "ffn_norm.weight", {d}, 0.2f, 1.0f);
      add(p + "attn_q.weight", {q, d}, 0.3f);
      add(p + "attn_k.weight", {kv, d}, 0.3f);
      add(p + "attn_v.weight", {kv, d}, 0.3f);
      add(p + "attn_output.weight", {d, q}, 0.3f);
      add(p + "ffn_gate.weight", {h, d}, 0.3f);
      add(p + "ffn_up.weight", {h, d}, 0.3f);
      add(p + "ffn_down.weight", {d, h}, 0.3f);
      if (c.attn_bias) {
        add(p + "attn_q.bias", {q}, 0.5f);
        add(p + "attn_k.bias", {kv}, 0.5f);
        add(p + "attn_v.bias", {kv}, 0.5f);
      }
      if (c.qk_norm) {
        add(p + "attn_q_norm.weight", {hd}, 0.2f, 1.0f);
        add(p + "attn_k_norm.weight", {hd}, 0.2f, 1.0f);
      }
    }
    if (c.rope_scaling.type == "llama3-freqs") {
      add("rope_freqs.weight", {hd / 2}, 0.0f, 1.0f);
      float* f = data_["rope_freqs.weight"].data();
      for (int64_t i = 0; i < hd / 2; ++i) f[i] = 1.0f + float(i % 4);  // divisors 1..4
    }
  }
  const ModelConfig& config() const override { return cfg_; }
  const TokenizerSpec& tokenizer() const override { return tok_; }
  std::vector<std::string> tensor_names() const override {
    std::vector<std::string> n;
    for (const auto& [k, v] : info_) n.push_back(k);
    return n;
  }
  const TensorInfo* find(const std::string& name) const override {
    auto it = info_.find(name);
    return it == info_.end() ? nullptr : &it->second;
  }
  std::string format_name() const override { return "memory"; }
  // Weights as plain float arrays for the naive reference.
  const float* w(const std::string& name) const { return data_.at(name).data(); }
  std::vector<float>& mutable_w(const std::string& name) { return data_.at(name); }

 private:
  // Values uniform in [center - scale, center + scale].
  void add(const std::string& name, std::vector<int64_t> shape, float scale, float center = 0.0f) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    std::vector<float>& d = data_[name];
    d.resize(size_t(n));
    std::uniform_real_distribution<float> u(-scale, scale);
    for (float& x : d) x = center + u(rng_);
    TensorInfo t;
    t.name = name;
    t.shape = std::move(shape);
    t.dtype = DType::F32;
    t.data = reinterpret_cast<const uint8_t*>(d.data());
    t.nbytes = uint64_t(n) * 4;
    info_[name] = t;
  }
  ModelConfig cfg_;
  TokenizerSpec tok_;
  std::mt19937 rng_;
  std::map<std::string, std::vector<float>> data_;
  std::map<std::string, TensorInfo> info_;
};

inline ModelConfig tiny(const std::string& arch) {
  ModelConfig c;
  c.arch = arch;
  c.n_layers = 2;
  c.dim = 32;
  c.hidden_dim = 48;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 8;
  c.vocab_size = 40;
  c.max_seq_len = 64;
  c.norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  return c;
}

}  // namespace elutq::test
