// A model's config and tokenizer as GGUF metadata, both ways, for elutq's own files: written as the
// standard llama-style keys ({arch}.*, tokenizer.ggml.*) that gguf_model.cpp reads, plus elutq.*
// keys for what those keys cannot say (RoPE pairing of the stored weights, llama3 rope scaling,
// the exact vocabulary size, tokenizer normalizer flags and pre-tokenizer regexes, stop ids).
// Reading a file back (gguf_model's standard mapping, then apply_elutq_model_metadata) gives the
// ModelConfig and TokenizerSpec that were written, whatever format the source model came from.
#pragma once

#include "format/gguf_file.h"
#include "format/gguf_writer.h"
#include "tensor/model_config.h"
#include "tensor/tokenizer_spec.h"

namespace elutq {

// Sets every config and tokenizer key on w (before its header is written). Throws Error on a
// config GGUF cannot carry (e.g. a merge whose first token contains a space).
void write_model_metadata(GgufWriter& w, const ModelConfig& c, const TokenizerSpec& t);

// For files written by write_model_metadata (they have elutq.format_version): overrides what the
// standard mapping derived with the elutq.* keys and validates the result. Throws Error naming the
// file and the key on a missing or bad value.
void apply_elutq_model_metadata(const GgufFile& g, ModelConfig& c, TokenizerSpec& t);

}  // namespace elutq
