// Synthetic LLaMA-architecture GGUF models with random weights at any size: for testing and
// measuring what depends only on shapes (streaming quantization of models larger than memory,
// speed), where a real checkpoint of that size is not at hand. The weights are deterministic in
// the seed, uniform with the standard deviation of the usual 1/sqrt(fan_in) initialisation, and
// stored F16 (norms F32, near 1). The file carries a minimal valid SentencePiece-style tokenizer
// (<unk>, <s>, </s>, the 256 byte-fallback tokens, then short ASCII pieces up to the vocabulary
// size) so it opens, tokenizes any text (via byte fallback) and runs like a real model.
#pragma once

#include <cstdint>
#include <string>

namespace elutq {

struct SyntheticModelOptions {
  int dim = 256;
  int n_layers = 2;
  int hidden_dim = 704;  // a multiple of 32, as check_options requires
  int vocab_size = 512;  // at least 259 + 1 (specials and byte tokens)
  int n_heads = 0;       // 0: dim / 64 (at least 1)
  int n_kv_heads = 0;    // 0: n_heads
  int context = 2048;
  bool tied_embeddings = false;  // no output.weight
  uint64_t seed = 1;
};

// Bytes of the tensor data the options produce (what the file will be, give or take metadata).
uint64_t synthetic_model_bytes(const SyntheticModelOptions& opt);

// Writes the model to path (temporary name, then rename), one tensor at a time in chunks, so
// memory use stays small whatever the size. Throws Error on bad options or I/O failure.
void write_synthetic_model(const std::string& path, const SyntheticModelOptions& opt);

}  // namespace elutq
