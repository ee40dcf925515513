#include "tensor/model_config.h"

#include "core/error.h"

namespace elutq {

const char* supported_architectures() { return "llama, mistral, qwen2, qwen3, phi3"; }

int64_t block_weight_count(const ModelConfig& c) {
  const int64_t dim = c.dim, q_dim = int64_t(c.n_heads) * c.head_dim,
                kv_dim = int64_t(c.n_kv_heads) * c.head_dim;
  return dim * (q_dim + 2 * kv_dim) + q_dim * dim + 3 * dim * int64_t(c.hidden_dim);
}

std::pair<int64_t, int64_t> linear_shape(const ModelConfig& c, LinearSlot s) {
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

void validate_config(const ModelConfig& c) {
  require(c.arch == "llama" || c.arch == "mistral" || c.arch == "qwen2" || c.arch == "qwen3" ||
              c.arch == "phi3",
          "unknown architecture '", c.arch, "'; supported: ", supported_architectures());
  require(c.n_layers > 0, "config: n_layers must be positive, got ", c.n_layers);
  require(c.dim > 0, "config: hidden size must be positive, got ", c.dim);
  require(c.hidden_dim > 0, "config: intermediate size must be positive, got ", c.hidden_dim);
  require(c.n_heads > 0, "config: n_heads must be positive, got ", c.n_heads);
  require(c.n_kv_heads > 0 && c.n_heads % c.n_kv_heads == 0, "config: n_kv_heads (", c.n_kv_heads,
          ") must divide n_heads (", c.n_heads, ")");
  require(c.head_dim > 0 && c.head_dim % 2 == 0, "config: head_dim must be even and positive, got ",
          c.head_dim);
  require(c.vocab_size > 0, "config: vocab_size must be positive, got ", c.vocab_size);
  require(c.max_seq_len > 0, "config: max_seq_len must be positive, got ", c.max_seq_len);
  require(c.norm_eps > 0, "config: norm epsilon must be positive");
  require(c.rope_theta > 0, "config: rope_theta must be positive");
  require(c.rope_scaling.type == "none" || c.rope_scaling.type == "linear" ||
              c.rope_scaling.type == "llama3" || c.rope_scaling.type == "llama3-freqs",
          "config: unsupported rope scaling '", c.rope_scaling.type,
          "'; supported: none, linear, llama3, llama3-freqs");
}

}  // namespace elutq
