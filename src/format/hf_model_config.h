// config.json of a Hugging Face LLaMA-family model -> ModelConfig.
#pragma once

#include <string>

#include "tensor/model_config.h"

namespace elutq {

// Reads config.json. The architecture comes from model_type (or architectures[0]): llama,
// mistral, qwen2, qwen3, phi3. hidden_size, intermediate_size, num_hidden_layers, num_attention_heads and
// vocab_size are required; other keys take the defaults of the transformers config class of that
// architecture. Throws Error naming the key and the file on anything missing, mistyped or not
// supported (other architectures, rope scaling kinds other than linear / llama3 such as Phi-3's
// longrope, partial rotary embeddings, per-layer sliding windows, biases other than Qwen2's q/k/v
// ones).
ModelConfig read_hf_config(const std::string& config_path);

}  // namespace elutq
