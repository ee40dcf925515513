// An opened model file or folder: its config, tokenizer and stored tensors. Every loader
// (GGUF, HF safetensors folder, llama2.c checkpoint, our own quantized file) produces one.
//
// Tensors use canonical names, the ones GGUF uses for LLaMA-family models:
//   token_embd.weight            (vocab, dim)
//   output_norm.weight           (dim)
//   output.weight                (vocab, dim)       absent when embeddings are tied
//   blk.N.attn_norm.weight       (dim)
//   blk.N.attn_q.weight          (n_heads * head_dim, dim)      .bias (n_heads*head_dim) if attn_bias
//   blk.N.attn_k.weight          (n_kv_heads * head_dim, dim)   .bias if attn_bias
//   blk.N.attn_v.weight          (n_kv_heads * head_dim, dim)   .bias if attn_bias
//   blk.N.attn_output.weight     (dim, n_heads * head_dim)
//   blk.N.attn_q_norm.weight     (head_dim)         qk_norm only
//   blk.N.attn_k_norm.weight     (head_dim)         qk_norm only
//   blk.N.ffn_norm.weight        (dim)
//   blk.N.ffn_gate.weight        (hidden_dim, dim)
//   blk.N.ffn_up.weight          (hidden_dim, dim)
//   blk.N.ffn_down.weight        (dim, hidden_dim)
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tensor/model_config.h"
#include "tensor/tensor_info.h"
#include "tensor/tokenizer_spec.h"

namespace elutq {

class ModelSource {
 public:
  virtual ~ModelSource() = default;
  virtual const ModelConfig& config() const = 0;
  virtual const TokenizerSpec& tokenizer() const = 0;
  // Canonical names of every tensor, in file order.
  virtual std::vector<std::string> tensor_names() const = 0;
  // nullptr if the tensor is absent.
  virtual const TensorInfo* find(const std::string& canonical_name) const = 0;
  // "gguf", "safetensors", "llama2.c", ...
  virtual std::string format_name() const = 0;
  // Lets the OS drop the tensor's bytes from this process's resident memory when they lie in a
  // file mapping (they are read back from the file if touched again); a no-op for sources that
  // hold tensors in ordinary memory. Streaming quantization calls it for finished blocks. t may
  // also be a slice of a tensor (data and nbytes narrowed to a sub-range).
  virtual void release_pages(const TensorInfo& t) const {}

  // Like find(), but throws Error naming the tensor and the file if it is absent or its shape
  // differs from the expected one.
  const TensorInfo& get(const std::string& name, const std::vector<int64_t>& shape) const;
};

}  // namespace elutq
