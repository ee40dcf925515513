// The small fp32 tensors of a model as stored: one vector by name, a decoder block's norms and
// biases, the RoPE frequencies. One loader for the runtime model and the training forms
// (E2E-QP, the loss gradients of bit allocation).
#pragma once

#include <string>
#include <vector>

#include "model/block_gradient.h"
#include "tensor/model_source.h"

namespace elutq {

// The 1-D tensor `name` as fp32; throws Error if it is absent or not n long.
std::vector<float> load_vector(const ModelSource& src, const std::string& name, int64_t n);

// Block `layer`'s norms, and its q/k/v biases (attn_bias) and q/k norms (qk_norm); the others
// stay empty.
struct BlockVectors {
  std::vector<float> attn_norm, ffn_norm;  // (dim) each
  std::vector<float> bq, bk, bv;           // (q_dim), (kv_dim), (kv_dim)
  std::vector<float> q_norm, k_norm;       // (head_dim) each
};
BlockVectors load_block_vectors(const ModelSource& src, int layer);
// Points w's norms, biases and q/k norms at v's (null where v's are empty), as block_forward
// (block_gradient.h) takes them; v must outlive w's use.
void point_at(const BlockVectors& v, BlockWeights<float>* w);

// The model's RoPE inverse frequencies (rope.h), with rope_freqs.weight where its scaling has one.
std::vector<float> load_rope_inv_freq(const ModelSource& src);

}  // namespace elutq
