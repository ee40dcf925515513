// Rotary position embedding: the per-frequency inverse wavelengths (with linear / llama3 /
// llama3-freqs scaling, computed as Hugging Face transformers does) and the rotation itself in
// both pairings (RopeStyle).
#pragma once

#include <vector>

#include "tensor/model_config.h"

namespace elutq {

// inv_freq[i] for i in [0, head_dim/2): theta^(-2i/head_dim), then scaled per c.rope_scaling.
// rope_freqs (head_dim/2 divisors, "llama3-freqs" only; else nullptr) divides each frequency.
std::vector<float> rope_inv_freq(const ModelConfig& c, const float* rope_freqs);

// cos/sin (head_dim/2 each) of the angles pos * inv_freq[i], shared by every head of a token.
void rope_cos_sin(int pos, const float* inv_freq, int half, float* cos_out, float* sin_out);

// Rotates one head vector v (head_dim) in place with the angles from rope_cos_sin
// (rope_forward<float> of block_ops.h, whose rope_backward is its transpose).
void rope_rotate(float* v, int head_dim, const float* cos_t, const float* sin_t, RopeStyle style);

}  // namespace elutq
