// Hyper-parameters of a LLaMA-family decoder, in one struct whatever file they came from.
// Adding a family means filling this from its config (format/*) and, only if its forward pass
// differs, a flag here that model/forward honours.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "tensor/tensor_names.h"

namespace elutq {

// How RoPE pairs the dimensions of a head. HF checkpoints (and GGUF qwen2/qwen3) rotate dimension
// i with i + head_dim/2; Meta/llama2.c checkpoints and GGUF llama rotate 2i with 2i+1.
enum class RopeStyle { HalfSplit, Interleaved };

struct RopeScaling {
  // "none", "linear", "llama3", or "llama3-freqs": a GGUF (Llama-3.1 style) that stores the llama3
  // per-frequency divisors as the tensor rope_freqs.weight (head_dim/2); the inverse frequencies
  // are divided by it and the other llama3 fields are unused.
  std::string type = "none";
  float factor = 1.0f;
  float low_freq_factor = 1.0f;   // llama3 only
  float high_freq_factor = 4.0f;  // llama3 only
  int original_max_position = 8192;  // llama3 only
};

struct ModelConfig {
  std::string arch;  // "llama", "mistral", "qwen2", "qwen3" or "phi3"
  int n_layers = 0;
  int dim = 0;         // hidden size
  int hidden_dim = 0;  // feed-forward (intermediate) size
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;    // usually dim / n_heads; Qwen3 may differ
  int vocab_size = 0;
  int max_seq_len = 0;  // context length the model was trained for
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeScaling rope_scaling;
  RopeStyle rope_style = RopeStyle::HalfSplit;
  bool attn_bias = false;        // biases on q/k/v projections (Qwen2)
  bool qk_norm = false;          // RMSNorm on each q and k head (Qwen3)
  bool tied_embeddings = false;  // output projection shares token_embd
  int sliding_window = 0;        // 0: full attention
};

// Names of the supported architectures, for error messages: "llama, mistral, qwen2, qwen3, phi3".
const char* supported_architectures();

// Throws Error naming the offending field if the config is not self-consistent.
void validate_config(const ModelConfig& c);

// Weights in one decoder block's seven projections: q, k, v, o, gate, up, down.
int64_t block_weight_count(const ModelConfig& c);

// {out, in} of a block projection: q (q_dim, dim), k/v (kv_dim, dim), o (dim, q_dim),
// gate/up (hidden, dim), down (dim, hidden).
std::pair<int64_t, int64_t> linear_shape(const ModelConfig& c, LinearSlot s);

}  // namespace elutq
