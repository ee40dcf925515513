// Tokenizer descriptions stored in their own files (as opposed to inside a GGUF file).
#pragma once

#include <string>

#include "tensor/tokenizer_spec.h"

namespace elutq {

// tokenizer.json (+ tokenizer_config.json if present) in a Hugging Face model folder.
TokenizerSpec load_hf_tokenizer(const std::string& folder);

// A SentencePiece tokenizer.model (protobuf ModelProto).
TokenizerSpec load_sentencepiece_model(const std::string& path);

}  // namespace elutq
